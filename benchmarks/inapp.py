"""Single-prediction latency of a churn model running inside the application, vs scikit-learn.

Trains the two churn pipelines of ``examples/inapp`` from their specs (a logistic regression,
and a 300-tree HistGradientBoosting model, each behind imputation, scaling and one-hot
encoding), registers them and exports their bundles (``modelport export --format bundle``).
Then scores the registered sample one customer at a time with every embedded target:

- ``modelport.inapp`` (the compiled form, and the ONNX graph in onnxruntime), a dict per call;
- the exported Python module's ``score(dict)``, in-process;
- the exported JavaScript module's ``score(object)`` in Node;
- the exported C function ``churn_score(num, cat, out)`` (gcc -O2);
- the exported Java class's ``Churn.score(Map)``, after JIT warm-up;

against scikit-learn ``predict_proba`` on a one-row DataFrame, the call an application makes
with the pipeline it trained. Python targets are timed per call (median); Node, C and Java
per pass over all rows (median pass / rows), since a clock read costs as much as a call
there. Every target's outputs are compared with scikit-learn's on the same rows, so no
figure is quoted for wrong numbers. Prints microseconds per prediction and the ratio to
scikit-learn. Run::

    python benchmarks/inapp.py             # 20,000 training rows, 2,000 calls per target
    python benchmarks/inapp.py --quick     # 5,000 rows, 300 calls
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "inapp"
ESTIMATORS = {
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
    "hgb-300": ("sklearn.ensemble.HistGradientBoostingClassifier",
                {"max_iter": 300, "early_stopping": False, "random_state": 0}),
}
#: rows of the registered sample each target scores
ROWS = 500

NODE_BENCH = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [modulePath, rowsPath, passes] = process.argv.slice(2);
const { score } = await import(pathToFileURL(modulePath).href);
const rows = JSON.parse(readFileSync(rowsPath, "utf8"));
const outputs = rows.map((r) => score(r));
let sink = 0;
for (let i = 0; i < 20; i++) for (const r of rows) sink += score(r)[0];  // JIT warm-up
const times = [];
for (let p = 0; p < Number(passes); p++) {
  const t0 = process.hrtime.bigint();
  for (const r of rows) sink += score(r)[0];
  times.push(Number(process.hrtime.bigint() - t0) / rows.length / 1000);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ us: times[times.length >> 1], outputs, sink }));
"""

C_BENCH = r"""
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "churn.h"

/* stdin: a line "rows passes", then per row the numeric inputs one a line ("nan" for
   missing) and the categorical ones one a line (empty for missing), in churn.h order */
static int cmp(const void *a, const void *b) {
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

int main(void) {
    int rows, passes;
    char line[4096];
    if (!fgets(line, sizeof line, stdin) || sscanf(line, "%d %d", &rows, &passes) != 2) return 1;
    double *num = malloc(sizeof(double) * rows * (CHURN_N_NUMERIC + 1));
    const char **cat = malloc(sizeof(char *) * rows * (CHURN_N_CATEGORICAL + 1));
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < CHURN_N_NUMERIC; i++) {
            if (!fgets(line, sizeof line, stdin)) return 1;
            num[r * (CHURN_N_NUMERIC + 1) + i] = strtod(line, NULL);
        }
        for (int i = 0; i < CHURN_N_CATEGORICAL; i++) {
            if (!fgets(line, sizeof line, stdin)) return 1;
            line[strcspn(line, "\n")] = '\0';
            cat[r * (CHURN_N_CATEGORICAL + 1) + i] = line[0] ? strdup(line) : NULL;
        }
    }
    double out[CHURN_N_OUTPUTS], sink = 0.0, *times = malloc(sizeof(double) * passes);
    for (int w = 0; w < 20; w++)
        for (int r = 0; r < rows; r++) {
            churn_score(num + r * (CHURN_N_NUMERIC + 1), cat + r * (CHURN_N_CATEGORICAL + 1), out);
            sink += out[0];
        }
    for (int p = 0; p < passes; p++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < rows; r++) {
            churn_score(num + r * (CHURN_N_NUMERIC + 1), cat + r * (CHURN_N_CATEGORICAL + 1), out);
            sink += out[0];
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        times[p] = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / rows / 1e3;
    }
    qsort(times, passes, sizeof(double), cmp);
    printf("%.6f %g\n", times[passes / 2], sink);
    for (int r = 0; r < rows; r++) {
        churn_score(num + r * (CHURN_N_NUMERIC + 1), cat + r * (CHURN_N_CATEGORICAL + 1), out);
        for (int k = 0; k < CHURN_N_OUTPUTS; k++) printf(k ? "\t%.17g" : "%.17g", out[k]);
        printf("\n");
    }
    return 0;
}
"""

JAVA_BENCH = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

public final class BenchChurn {
    public static void main(String[] args) throws Exception {
        int passes = Integer.parseInt(args[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String[] names = in.readLine().split("\\t", -1);
        List<Map<String, Object>> rows = new ArrayList<>();
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            String[] f = line.split("\\t", -1);
            Map<String, Object> row = new HashMap<>();
            for (int i = 0; i < names.length; i++) {
                // numbers as Double, as an application holding parsed values passes them
                String v = f[i];
                Object value = v.isEmpty() ? null : v;
                try { value = v.isEmpty() ? null : (Object) Double.valueOf(v); }
                catch (NumberFormatException e) { /* a category */ }
                row.put(names[i], value);
            }
            rows.add(row);
        }
        double sink = 0;
        for (int w = 0; w < 200; w++) for (Map<String, Object> r : rows) sink += Churn.score(r)[0];
        double[] times = new double[passes];
        for (int p = 0; p < passes; p++) {
            long t0 = System.nanoTime();
            for (Map<String, Object> r : rows) sink += Churn.score(r)[0];
            times[p] = (System.nanoTime() - t0) / (double) rows.size() / 1000.0;
        }
        Arrays.sort(times);
        StringBuilder out = new StringBuilder();
        out.append(times[passes / 2]).append(' ').append(sink).append('\\n');
        for (Map<String, Object> r : rows) {
            double[] o = Churn.score(r);
            for (int k = 0; k < o.length; k++) out.append(k == 0 ? "" : "\\t").append(o[k]);
            out.append('\\n');
        }
        System.out.print(out);
    }
}
"""


@functools.cache
def _bench_compile():
    spec = importlib.util.spec_from_file_location("modelport_bench_compile",
                                                  Path(__file__).with_name("compile.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def single_row_us(fn, rows, calls: int) -> float:
    """Median microseconds of ``fn(row)``: the timing loop of ``benchmarks/compile.py``."""
    return _bench_compile().single_row_us(fn, rows, calls)


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"inapp_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(work: Path, rows: int) -> dict:
    """Train, register and bundle both models: {name: (bundle folder, fitted pipeline, sample)}."""
    from modelport.compile import export
    from modelport.datasets import churn
    from modelport.registry import Registry
    from modelport.train.oneoff import train

    example = load_example("export")
    source = work / "customers.parquet"
    churn.generate(rows, seed=7).to_parquet(source, index=False)
    out = {}
    for name, (estimator, params) in ESTIMATORS.items():
        spec = example.spec(estimator, params, source)
        version = train(spec).version
        export(version.uri, "bundle", work / name)
        reg = Registry()
        sample = reg.sample(version).head(ROWS).reset_index(drop=True)
        out[name] = (work / name, reg.load(version, format="joblib").model, sample)
    return out


def python_targets(folder: Path):
    """{target: score one dict} for the in-process Python targets."""
    from modelport import inapp

    targets = {"modelport.inapp": inapp.load(folder).predict_proba}
    try:
        targets["inapp (onnx)"] = inapp.load(folder, format="onnx").predict_proba
    except ImportError:
        print("  (onnxruntime not installed: no inapp (onnx) figure)")
    spec = importlib.util.spec_from_file_location(f"exported_{folder.name}", folder / "churn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    targets["Python (exported)"] = module.score
    return targets


def node_target(folder: Path, rows: list[dict], work: Path, passes: int):
    node = shutil.which("node")
    if node is None:
        return None
    (work / "bench.mjs").write_text(NODE_BENCH)
    (work / "rows.json").write_text(json.dumps(rows))
    proc = subprocess.run([node, str(work / "bench.mjs"), str(folder / "churn.mjs"),
                           str(work / "rows.json"), str(passes)], capture_output=True, text=True,
                          timeout=600, check=True)
    result = json.loads(proc.stdout)
    return result["us"], result["outputs"]


def c_target(folder: Path, rows: list[dict], signature: dict, work: Path, passes: int):
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    (work / "bench.c").write_text(C_BENCH)
    exe = work / "bench_c"
    subprocess.run([gcc, "-O2", "-std=c99", "-Wall", "-Werror", "-I", str(folder), "-o", str(exe),
                    str(work / "bench.c"), str(folder / "churn.c"), "-lm"],
                   check=True, timeout=600, capture_output=True)
    numeric = [c["name"] for c in signature["inputs"] if c["kind"] == "numeric"]
    categorical = [c["name"] for c in signature["inputs"] if c["kind"] == "categorical"]
    lines = [f"{len(rows)} {passes}"]
    for r in rows:
        lines += ["nan" if r[n] is None else repr(float(r[n])) for n in numeric]
        lines += ["" if r[n] is None else str(r[n]) for n in categorical]
    proc = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=600, check=True)
    first, *out = proc.stdout.splitlines()
    return float(first.split()[0]), [[float(v) for v in line.split("\t")] for line in out]


def java_target(folder: Path, rows: list[dict], work: Path, passes: int):
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        return None
    (work / "BenchChurn.java").write_text(JAVA_BENCH)
    build = work / "java"
    subprocess.run([javac, "-d", str(build), str(folder / "Churn.java"),
                    str(work / "BenchChurn.java")], check=True, timeout=600, capture_output=True)
    load_example("export").write_customers(rows, work / "customers")
    with open(work / "customers.tsv") as stdin:
        proc = subprocess.run([java, "-cp", str(build), "BenchChurn", str(passes)], stdin=stdin,
                              capture_output=True, text=True, timeout=600, check=True)
    first, *out = proc.stdout.splitlines()
    return float(first.split()[0]), [[float(v) for v in line.split("\t")] for line in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="customers to train on")
    parser.add_argument("--calls", type=int, default=2000, help="single-row calls per target")
    parser.add_argument("--quick", action="store_true", help="5,000 rows, 300 calls")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.calls = 5_000, 300
    passes = max(5, args.calls // 100)

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="modelport-bench-inapp-") as tmp:
        work = Path(tmp)
        os.environ["MODELPORT_HOME"] = str(work / "home")
        os.environ.pop("MODELPORT_REGISTRY", None)
        os.environ.pop("MODELPORT_ARTIFACTS", None)
        print(f"in-app targets vs scikit-learn predict_proba, one prediction per call; "
              f"trained on {args.rows:,} churn rows; {args.calls} calls per Python target, "
              f"{passes} passes over {ROWS} rows for Node, C and Java; "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        header = f"{'model':<10} {'target':<20} {'µs/prediction':>14} {'x faster':>9}  max diff"
        print(header)
        print("-" * len(header))
        worst = {}
        for name, (folder, model, sample) in build(work, args.rows).items():
            from modelport.kernel import Inputs

            signature = json.loads((folder / "signature.json").read_text())
            rows = [{k: (None if (v is None or v != v) else v) for k, v in r.items()}
                    for r in sample.astype(object).to_dict("records")]
            Inputs(signature).columns(rows)  # every row is one the runtime accepts
            reference = model.predict_proba(sample)
            frames = [sample.iloc[[i]] for i in range(len(sample))]
            figures = {"scikit-learn": (single_row_us(model.predict_proba, frames, args.calls),
                                        reference)}
            for target, fn in python_targets(folder).items():
                outputs = np.vstack([np.asarray(fn(r), dtype=np.float64).reshape(1, -1)
                                     for r in rows])
                figures[target] = (single_row_us(fn, rows, args.calls), outputs)
            target_dir = work / f"{name}-bench"
            target_dir.mkdir()
            for target, result in (
                    ("JavaScript (node)", node_target(folder, rows, target_dir, passes)),
                    ("C (gcc -O2)", c_target(folder, rows, signature, target_dir, passes)),
                    ("Java", java_target(folder, rows, target_dir, passes))):
                if result is None:
                    print(f"{name:<10} {target:<20} toolchain not installed")
                    continue
                figures[target] = (result[0], np.asarray(result[1], dtype=np.float64))
            base = figures["scikit-learn"][0]
            for target, (us, outputs) in figures.items():
                diff = float(np.abs(outputs - reference).max())
                ratio = base / us
                if target != "scikit-learn":
                    worst[target] = min(worst.get(target, ratio), ratio)
                print(f"{name:<10} {target:<20} {us:>14.2f} {ratio:>8.1f}x  {diff:.1e}")
        named = ("modelport.inapp", "Python (exported)", "JavaScript (node)", "C (gcc -O2)")
        goal = [t for t in named if worst.get(t, 0.0) < 20]
        print("goal (every embedded target >= 20x faster than scikit-learn): "
              + ("met" if not goal else f"NOT met by {', '.join(goal)}"))


if __name__ == "__main__":
    main()
