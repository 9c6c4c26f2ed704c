"""H2O MOJOs and POJOs scored by modelport, side by side with H2O's own routes from Python.

``h2o.mojo_predict_pandas`` is how the h2o Python client scores a MOJO without a cluster:
it writes the frame to CSV, starts ``java`` running h2o-genmodel's ``PredictCsv`` and reads
the predictions back, on every call. modelport reads the MOJO's trees or coefficients once
into its compiled runtime and scores in-process. For the GBM, DRF and GLM binomial MOJOs of
``tests/fixtures/mojo`` this measures:

- single-row latency: the median of many calls scoring one row given as a dict (what a web
  service or stream consumer does); h2o gets a one-row DataFrame;
- throughput: seconds to score 100,000 rows in one call (a DataFrame for both);
- agreement: the largest difference between the two on the 100,000 rows' probabilities.

A POJO row (``--pojos``, default the GBM binomial POJO of ``tests/fixtures/pojo``) compares
modelport's POJO runtimes (the read form, where the source is read, and the class compiled
once, scored by h2o-genmodel's ``EasyPredictModelWrapper`` in one long-lived JVM) with H2O's route for a POJO from Python:
``hex.genmodel.tools.PredictCsv`` running the compiled class, a CSV written and read back
on every call, as ``mojo_predict_pandas`` does for a MOJO. Compiling is done once, outside
the timings, for both. It needs a JDK (``javac``) and JPype (``modelport[mojo]``).

The h2o client runs in its own virtual environment (never modelport's), as a subprocess::

    python3 -m venv ~/.cache/modelport/h2o-venv
    ~/.cache/modelport/h2o-venv/bin/pip install h2o==3.46.0.11 pandas pyarrow
    .venv/bin/python benchmarks/mojo.py                  # 100k rows, 2000 single-row calls
    .venv/bin/python benchmarks/mojo.py --rows 20000 --h2o-calls 3
    .venv/bin/python benchmarks/mojo.py --models '' --pojos gbm_binomial --rows 20000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mojo"
POJO_FIXTURES = ROOT / "tests" / "fixtures" / "pojo"
MODELS = ("gbm_binomial", "drf_binomial", "glm_binomial")
POJOS = ("gbm_binomial",)
DEFAULT_H2O_PYTHON = Path.home() / ".cache" / "modelport" / "h2o-venv" / "bin" / "python"

# run by the h2o virtual environment's Python: times mojo_predict_pandas, saves its output
H2O_SIDE = r"""
import json, statistics, sys, time
import pandas as pd
import h2o

job = json.loads(sys.argv[1])
frame = pd.read_parquet(job["rows"])
row = frame.head(1)
out = {}
for name, mojo in job["mojos"].items():
    times = []
    for _ in range(job["calls"]):
        t0 = time.perf_counter()
        h2o.mojo_predict_pandas(row, mojo, genmodel_jar_path=job["jar"])
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    pred = h2o.mojo_predict_pandas(frame, mojo, genmodel_jar_path=job["jar"])
    bulk = time.perf_counter() - t0
    pred.to_parquet(job["out"] + f"/{name}.parquet")
    out[name] = {"single_s": statistics.median(times), "bulk_s": bulk}
print(json.dumps(out))
"""


def rows(n: int):
    """``n`` customers with the columns the fixture MOJOs read (the fixtures' own recipe)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.frame(n, seed=99)


def first_row(frame) -> dict:
    """The frame's first row as a request gives it: a dict, missing values as None."""
    first = frame.head(1).to_dict(orient="records")[0]
    return {k: (None if v != v else v) for k, v in first.items()}


def measured(predictor, load_s: float, frame, calls: int) -> dict:
    """A loaded predictor's figures: the median of ``calls`` one-row calls (after 20 to
    warm up), one call on the whole ``frame``, and its probabilities."""
    row = first_row(frame)
    for _ in range(20):
        predictor.run(row)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        predictor.run(row)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    scored = predictor.run(frame)
    return {"single_s": statistics.median(times), "bulk_s": time.perf_counter() - t0,
            "load_s": load_s, "runtime": predictor.runtime, "proba": scored["proba"]}


def modelport_side(names, frame, calls: int) -> dict:
    from modelport.formats import mojo

    out = {}
    for name in names:
        data = (FIXTURES / f"{name}.zip").read_bytes()
        t0 = time.perf_counter()
        predictor = mojo.load(data, mojo.inspect(data))
        out[name] = measured(predictor, time.perf_counter() - t0, frame, calls)
    return out


def pojo_sides(name: str, frame, calls: int, h2o_calls: int) -> tuple[dict, list[dict]]:
    """(PredictCsv over the compiled POJO, modelport's POJO runtimes: the read form where
    the source is read, and h2o-genmodel in the JVM) for POJO fixture ``name``."""
    import numpy as np
    import pandas as pd

    from modelport.formats import h2o_jvm, pojo

    os.environ.setdefault(h2o_jvm.GENMODEL_ENV, str(FIXTURES / "h2o-genmodel.jar"))
    data = (POJO_FIXTURES / f"{name}.java").read_bytes()
    signature = pojo.inspect(data)
    compiled = pojo.compile_pojo(data)
    classpath = f"{compiled.jar}:{compiled.folder}"

    def predict_csv(rows) -> pd.DataFrame:
        with tempfile.TemporaryDirectory(prefix="pojo-bench-") as tmp:
            rows.to_csv(Path(tmp) / "in.csv", index=False)
            subprocess.run(["java", "-cp", classpath, "hex.genmodel.tools.PredictCsv",
                            "--pojo", compiled.class_name, "--input", f"{tmp}/in.csv",
                            "--output", f"{tmp}/out.csv", "--decimal"], check=True,
                           capture_output=True)
            return pd.read_csv(Path(tmp) / "out.csv")

    times = []
    for _ in range(h2o_calls):
        t0 = time.perf_counter()
        predict_csv(frame.head(1))
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    theirs = predict_csv(frame)
    h2o = {"single_s": statistics.median(times), "bulk_s": time.perf_counter() - t0,
           "p1": theirs.iloc[:, 2].to_numpy(dtype=np.float64)}
    ours = []
    for runtime in ("auto", "jvm"):
        t0 = time.perf_counter()
        predictor = pojo.PojoPredictor(data, signature, runtime=runtime)
        load_s = time.perf_counter() - t0
        if runtime == "auto" and predictor.runtime != "compiled":
            continue  # not read: the JVM row below is the only one
        ours.append(measured(predictor, load_s, frame, calls))
    return h2o, ours


def _row(label: str, runtime: str, h: dict, m: dict, diff: float) -> str:
    return (f"{label:<20} {runtime:<9} {h['single_s'] * 1e3:>9.0f}ms {m['single_s'] * 1e6:>9.0f}us "
            f"{h['single_s'] / m['single_s']:>7,.0f}x   {'':>8}{h['bulk_s']:>6.2f}s "
            f"{m['bulk_s']:>8.2f}s {h['bulk_s'] / m['bulk_s']:>5.1f}x   {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000, help="modelport single-row calls")
    parser.add_argument("--h2o-calls", type=int, default=5,
                        help="single-row calls of H2O's route (each starts a JVM)")
    parser.add_argument("--h2o-python", default=os.environ.get("MODELPORT_H2O_PYTHON",
                                                                  str(DEFAULT_H2O_PYTHON)))
    parser.add_argument("--models", default=",".join(MODELS),
                        help="MOJO fixtures, comma-separated ('' for none)")
    parser.add_argument("--pojos", default=",".join(POJOS),
                        help="POJO fixtures, against PredictCsv ('' for none)")
    args = parser.parse_args()
    import numpy as np

    names = [n for n in args.models.split(",") if n]
    pojos = [n for n in args.pojos.split(",") if n]
    if names and not Path(args.h2o_python).is_file():
        sys.exit(f"no h2o Python at {args.h2o_python}: create the venv (see this file's "
                 "docstring) or pass --h2o-python")
    frame = rows(args.rows)
    features = frame.drop(columns=["churned"])
    theirs, h2o_proba, ours = {}, {}, {}
    if names:
        _h2o_mojos(args, names, features, theirs, h2o_proba)
        print(f"modelport: {args.calls} single-row calls and {args.rows:,} rows per model ...",
              flush=True)
        ours = modelport_side(names, features, args.calls)
    pojo_rows = {}
    for n in pojos:
        print(f"POJO {n}: PredictCsv ({args.h2o_calls} single-row calls, {args.rows:,} rows) "
              "and modelport's runtimes ...", flush=True)
        pojo_rows[n] = pojo_sides(n, features, args.calls, args.h2o_calls)
    print(f"\n{'model':<20} {'runtime':<9} {'1 row: h2o':>11} {'modelport':>11} {'ratio':>8}"
          f"   {args.rows // 1000}k rows: {'h2o':>7} {'modelport':>9} {'ratio':>6}   max |dp|")
    for n in names:
        h, m = theirs[n], ours[n]
        p1 = h2o_proba[n].iloc[:, 2].to_numpy(dtype=np.float64)
        print(_row(n, m["runtime"], h, m, float(np.max(np.abs(m["proba"][:, 1] - p1)))))
    for n, (h, runs) in pojo_rows.items():
        for m in runs:
            print(_row(f"{n} (POJO)", m["runtime"], h, m,
                       float(np.max(np.abs(m["proba"][:, 1] - h["p1"])))))
    print("\nratio = H2O's time / modelport time (higher: modelport faster); H2O's route is "
          "h2o.mojo_predict_pandas for MOJOs and PredictCsv over the compiled class for POJOs; "
          "max |dp| compares the positive-class probabilities (H2O's CSV carries ~17 digits)")


def _h2o_mojos(args, names, features, theirs: dict, h2o_proba: dict) -> None:
    """Time ``h2o.mojo_predict_pandas`` in the h2o virtual environment."""
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="mojo-bench-") as tmp:
        features.to_parquet(Path(tmp) / "rows.parquet", index=False)
        job = {"rows": str(Path(tmp) / "rows.parquet"), "calls": args.h2o_calls,
               "jar": str(FIXTURES / "h2o-genmodel.jar"), "out": tmp,
               "mojos": {n: str(FIXTURES / f"{n}.zip") for n in names}}
        print(f"h2o.mojo_predict_pandas: {args.h2o_calls} single-row calls and {args.rows:,} "
              "rows per model ...", flush=True)
        done = subprocess.run([args.h2o_python, "-c", H2O_SIDE, json.dumps(job)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the h2o side failed:\n{done.stderr[-3000:]}")
        theirs.update(json.loads(done.stdout.strip().splitlines()[-1]))
        h2o_proba.update({n: pd.read_parquet(Path(tmp) / f"{n}.parquet") for n in names})


if __name__ == "__main__":
    main()
