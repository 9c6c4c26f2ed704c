"""Compiled tree ensembles: modelport's compiled C forest and ONNX path against treelite /
tl2cgen, lleaves and each library's own predict.

Three binary classifiers are fitted on the same synthetic numeric data
(``make_classification``, 28 features): LightGBM (``--lgbm-trees``, 500), scikit-learn's
histogram gradient boosting (``--hgb-trees`` iterations, 300) and a random forest
(``--rf-trees``, 100, depth at most 10). For each, every runtime that takes it is built and
measured on the same rows:

- modelport ``compiled C``: the ``compiled`` format as registration converts it, with
  ``prepare_batch()`` (what a batch job calls) building the C forest of
  :mod:`modelport.compile.ctrees`; the whole predictor call is timed (row checks included);
- modelport ``ONNX``: the ``onnx`` format's predictor (onnxruntime, one thread a session);
- ``native``: LightGBM's ``Booster.predict`` / scikit-learn's ``predict_proba``;
- ``treelite gtil``: treelite's own predict on the imported model;
- ``tl2cgen``: the model imported by treelite and compiled by tl2cgen (gcc);
- ``lleaves`` (LightGBM only): the model compiled by LLVM, in a process of its own (lleaves
  1.3 builds with llvmlite's legacy pass manager, gone from the llvmlite numba needs now:
  when this interpreter's llvmlite lacks it, a virtualenv with ``llvmlite<0.44`` is made
  once under the cache).

Figures: build seconds (conversion and compilation, with empty caches), batch rows/s on 1
and 2 threads (``--rows`` rows in one call; runtimes without threads of their own get
the rows in two halves on two threads), single-row p50 and p99 in microseconds (one row
a call, ``--calls`` calls; modelport through its whole predictor call, a dict in, its
checks included), and the largest absolute difference of the positive class'
probability from the native model's. Then the ratios of modelport's compiled C to each
other runtime (above 1: modelport is faster).

    .venv/bin/python benchmarks/trees.py                              # lleaves takes ~200 s
    .venv/bin/python benchmarks/trees.py --quick                      # under 3 minutes
    .venv/bin/python benchmarks/trees.py --models lightgbm,rf --rows 50000 --calls 1000

Needs the ``bench`` extra (treelite, tl2cgen, lleaves), the ``gbm`` extra (lightgbm), the
``onnx`` extra and a C compiler.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# each runtime is given its threads per call (1 or 2); OpenMP must allow the two
os.environ["OMP_NUM_THREADS"] = "2"
# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import numpy as np  # noqa: E402

N_FEATURES = 28
#: the cache the benchmark found (it gives modelport's compiler empty ones of its own)
CACHE = Path(os.environ.get("MODELPORT_CACHE") or Path.home() / ".cache" / "modelport")
MODELS = ("lightgbm", "hgb", "rf")


def data(n_train: int, n_rows: int, seed: int = 0):
    """Training rows and labels, then the rows scored, as float64 matrices."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_train + n_rows, N_FEATURES, n_informative=14,
                               n_redundant=4, flip_y=0.05, random_state=seed)
    return X[:n_train], y[:n_train], X[n_train:]


def fit(name: str, trees: int, X, y):
    if name == "lightgbm":
        import lightgbm as lgb

        return lgb.LGBMClassifier(n_estimators=trees, num_leaves=31, learning_rate=0.05,
                                  verbose=-1, random_state=0).fit(X, y)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=trees, early_stopping=False,
                                              random_state=0).fit(X, y)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=trees, max_depth=10, random_state=0,
                                  n_jobs=2).fit(X, y)


def positive(out, n: int) -> np.ndarray:
    """The positive class' probability from any runtime's output."""
    if isinstance(out, dict):
        out = out["proba"]
    return np.asarray(out, dtype=np.float64).reshape(n, -1)[:, -1]


def timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def rows_per_s(fn, X, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        _, spent = timed(lambda: fn(X))
        best = min(best, spent)
    return len(X) / best


def halves(fn, pool: ThreadPoolExecutor):
    """``fn`` run on two halves of the rows at once (for runtimes without threads)."""
    def run(X):
        mid = len(X) // 2
        parts = list(pool.map(fn, [X[:mid], X[mid:]]))
        return parts
    return run


def single_row(fn, rows: list, calls: int) -> tuple[float, float]:
    """p50 and p99 microseconds of ``fn(row)`` over ``calls`` calls cycling through rows."""
    for r in rows[:50]:
        fn(r)
    times = np.empty(calls)
    for i in range(calls):
        r = rows[i % len(rows)]
        t0 = time.perf_counter()
        fn(r)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e6), float(np.percentile(times, 99) * 1e6)


class Runtime:
    """One way of scoring: its build time, batch functions, single-row function."""

    def __init__(self, name: str, build_s: float, batch1, batch2, one, one_input: str,
                 note: str = "") -> None:
        self.name, self.build_s, self.note = name, build_s, note
        self.batch1, self.batch2, self.one, self.one_input = batch1, batch2, one, one_input


def one_row_entry(predictor):
    """The compiled forest's one-row entry (``mp_forest_one``) as a function of a one-row
    matrix giving the positive class' probability: the trees, their base, the average or
    the link; no row checks (the predictor's single-row path, "modelport C", takes the same
    entry after its checks)."""
    prepared = predictor._prepared
    forest = prepared._program.model_node
    one = getattr(forest.native, "one", None)
    node = prepared.ir.model
    if one is None or prepared.ir.steps:
        return None
    base = np.asarray(node.base, dtype=np.float64)
    mean = len(node.trees) if node.combine == "mean" else 1
    out = np.empty(node.n_outputs)
    logistic = node.n_outputs == 1

    def run(row):
        raw = (one(row[0], out) + base) / mean
        return 1.0 / (1.0 + np.exp(-raw[0])) if logistic else raw[-1]
    return run


def runtimes(name: str, model, frame, trained, work: Path,
             pool: ThreadPoolExecutor) -> list[Runtime]:
    """Every runtime that takes ``model``, built (and timed) here; ``trained`` is the frame
    it learnt from (the signature's ranges)."""
    import pandas as pd

    from modelport.formats import compiled, onnx
    from modelport.formats.native import classes_of
    from modelport.signature import Signature

    out = []
    sample = trained.head(1000)
    sig = Signature.infer(trained, "classification", classes_of(model))

    # modelport, compiled C: conversion as registration does it, then the batch job's call
    os.environ["MODELPORT_CACHE"] = str(work / f"cache-{name}")  # an honest build time

    def build_c():
        predictor = compiled.load(compiled.convert(model, sig, sample), sig)
        return predictor, predictor.prepare_batch()

    (c_pred, ok), spent = timed(build_c)
    columns = list(frame.columns)

    def as_frame(X):
        return pd.DataFrame(X, columns=columns, copy=False)

    def mp(predictor):
        return lambda X: predictor.run(as_frame(X))

    def mp_one(predictor):
        return lambda row: predictor.run(row)

    note = "" if ok else "C forest not built (NumPy walk)"
    out.append(Runtime("modelport C", spent, mp(c_pred), halves(mp(c_pred), pool),
                       mp_one(c_pred), "dict", note))
    entry = one_row_entry(c_pred) if ok else None
    if entry is not None:
        out.append(Runtime("mp C one-row", 0.0, mp(c_pred), halves(mp(c_pred), pool), entry,
                           "row", "the C forest's one-row entry alone, no predictor call"))
    if onnx.available():
        o_pred, spent = timed(lambda: onnx.load(onnx.convert(model, sig, sample), sig))
        out.append(Runtime("modelport ONNX", spent, mp(o_pred), halves(mp(o_pred), pool),
                           mp_one(o_pred), "dict"))

    # the library's own predict
    if name == "lightgbm":
        booster = model.booster_
        out.append(Runtime("native", 0.0,
                           lambda X: booster.predict(X, num_threads=1),
                           lambda X: booster.predict(X, num_threads=2),
                           lambda row: booster.predict(row, num_threads=1), "array"))
    else:
        from threadpoolctl import threadpool_limits

        def sk(threads):
            def run(X):
                if hasattr(model, "n_jobs"):
                    model.n_jobs = threads
                with threadpool_limits(threads):
                    return model.predict_proba(X)
            return run
        out.append(Runtime("native", 0.0, sk(1), sk(2), sk(1), "array"))

    # treelite: its own predict (GTIL) and the library tl2cgen compiles
    try:
        import tl2cgen
        import treelite
    except ImportError:
        print("  treelite / tl2cgen not installed: pip install 'modelport[bench]'")
    else:
        if name == "lightgbm":
            tmodel = treelite.frontend.from_lightgbm(model.booster_)
        else:
            tmodel = treelite.sklearn.import_model(model)
        out.append(Runtime("treelite gtil", 0.0,
                           lambda X: treelite.gtil.predict(tmodel, X, nthread=1),
                           lambda X: treelite.gtil.predict(tmodel, X, nthread=2),
                           lambda row: treelite.gtil.predict(tmodel, row, nthread=1),
                           "array"))
        lib = work / f"tl2cgen-{name}.so"
        _, spent = timed(lambda: tl2cgen.export_lib(tmodel, toolchain="gcc", libpath=str(lib),
                                                    params={"parallel_comp": 2}))
        t1, t2 = tl2cgen.Predictor(str(lib), nthread=1), tl2cgen.Predictor(str(lib), nthread=2)
        out.append(Runtime("tl2cgen", spent,
                           lambda X: t1.predict(tl2cgen.DMatrix(X)),
                           lambda X: t2.predict(tl2cgen.DMatrix(X)),
                           lambda row: t1.predict(tl2cgen.DMatrix(row)), "array"))

    return out


def lleaves_figures(model, X: np.ndarray, calls: int, work: Path) -> dict | None:
    """lleaves on the LightGBM model, measured in a process of its own (:func:`worker`):
    with this interpreter when its llvmlite still has the pass manager lleaves 1.3 builds
    with, else in a virtualenv of its own (``llvmlite<0.44``, made once under the cache)."""
    import json
    import subprocess

    text, rows, preds = work / "lightgbm.txt", work / "rows.npy", work / "lleaves.npy"
    model.booster_.save_model(str(text))
    np.save(rows, X)
    for python in (sys.executable, None):
        if python is None:
            python = lleaves_python()
            if python is None:
                return None
        done = subprocess.run([python, __file__, "--lleaves-worker", str(text), str(rows),
                               str(calls), str(preds)], capture_output=True, text=True)
        if done.returncode == 0:
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["predictions"] = np.load(preds)
            figures["python"] = python
            return figures
        print(f"  lleaves with {python}: {done.stderr.strip().splitlines()[-1]}", flush=True)
    return None


def lleaves_python() -> str | None:
    """A Python with lleaves and an llvmlite it builds with, in a virtualenv of its own."""
    import subprocess

    venv = Path(os.environ.get("MODELPORT_BENCH_LLEAVES_VENV") or CACHE / "bench-lleaves")
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"  making a virtualenv for lleaves in {venv} (llvmlite<0.44)", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)])
        if made.returncode == 0:
            made = subprocess.run([str(python), "-m", "pip", "install", "-q", "lleaves==1.3.0",
                                   "llvmlite<0.44", "numpy"])
        if made.returncode != 0:
            print("  lleaves skipped: its virtualenv could not be made", flush=True)
            return None
    return str(python)


def worker(text: str, rows: str, calls: int, preds: str) -> None:
    """lleaves' figures, printed as JSON: build seconds, rows/s on 1 and 2 threads,
    single-row p50 and p99 in microseconds; its predictions saved to ``preds``."""
    import json

    import lleaves

    X = np.load(rows)
    model = lleaves.Model(model_file=text)
    _, build = timed(lambda: model.compile(cache=str(Path(preds).with_suffix(".o"))))
    np.save(preds, model.predict(X, n_jobs=1))
    p50, p99 = single_row(lambda row: model.predict(row, n_jobs=1),
                          [X[i:i + 1] for i in range(500)], calls)
    print(json.dumps({"build_s": build,
                      "r1": rows_per_s(lambda X: model.predict(X, n_jobs=1), X),
                      "r2": rows_per_s(lambda X: model.predict(X, n_jobs=2), X),
                      "p50": p50, "p99": p99}))


def main() -> None:
    if sys.argv[1:2] == ["--lleaves-worker"]:
        text, rows, calls, preds = sys.argv[2:6]
        worker(text, rows, int(calls), preds)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of a batch call")
    parser.add_argument("--train", type=int, default=20_000, help="rows the models learn")
    parser.add_argument("--calls", type=int, default=2000, help="single-row calls")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"which of {', '.join(MODELS)}")
    parser.add_argument("--lgbm-trees", type=int, default=500)
    parser.add_argument("--hgb-trees", type=int, default=300)
    parser.add_argument("--rf-trees", type=int, default=100)
    parser.add_argument("--quick", action="store_true",
                        help="20k rows, 300 calls, 60 LightGBM trees, 60 HGB iterations, "
                        "30 forest trees")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.train, args.calls = 20_000, 10_000, 300
        args.lgbm_trees, args.hgb_trees, args.rf_trees = 60, 60, 30
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from {', '.join(MODELS)}")
    trees = {"lightgbm": args.lgbm_trees, "hgb": args.hgb_trees, "rf": args.rf_trees}

    import pandas as pd

    X_train, y_train, X = data(args.train, args.rows)
    names = [f"f{i}" for i in range(N_FEATURES)]
    frame = pd.DataFrame(X, columns=names)
    trained = pd.DataFrame(X_train, columns=names)
    # a value beyond the training range is flagged (the check runs, its warning is not shown)
    from modelport.kernel import InputWarning

    warnings.filterwarnings("ignore", category=InputWarning)
    rows_dict = frame.head(500).to_dict("records")
    rows_array = [X[i:i + 1] for i in range(500)]
    print(f"tree runtimes: {args.rows:,} rows a batch, {args.calls} single-row calls, "
          f"{N_FEATURES} features; {os.cpu_count()} cores", flush=True)
    header = (f"{'model':<16} {'runtime':<15} {'build s':>8} {'rows/s 1t':>12} "
              f"{'rows/s 2t':>12} {'p50 µs':>8} {'p99 µs':>8} {'max |diff|':>10}")
    table, ratios = [], []
    pool = ThreadPoolExecutor(2)
    with tempfile.TemporaryDirectory(prefix="modelport-trees-") as tmp:
        work = Path(tmp)
        for name in models:
            model, fit_s = timed(lambda name=name: fit(name, trees[name], X_train, y_train))
            label = f"{name} ({trees[name]})"
            print(f"\n{label}: fitted in {fit_s:.1f} s", flush=True)
            reference = model.predict_proba(X)[:, 1]
            figures = {}
            for rt in runtimes(name, model, frame, trained, work, pool):
                got = positive(rt.batch1(X), len(X))
                diff = float(np.max(np.abs(got - reference)))
                one_rows = {"dict": rows_dict, "array": rows_array,
                            "row": rows_array}[rt.one_input]
                if rt.one_input != "row":
                    r1 = rows_per_s(rt.batch1, X)
                    r2 = rows_per_s(rt.batch2, X)
                p50, p99 = single_row(rt.one, one_rows, args.calls)
                if rt.one_input == "row":  # the entry's output against the native one
                    got = np.array([rt.one(X[i:i + 1]) for i in range(500)])
                    diff = float(np.max(np.abs(got - reference[:500])))
                    r1 = r2 = float("nan")
                figures[rt.name] = (r1, r2, p50)
                line = (f"{label:<16} {rt.name:<15} {rt.build_s:>8.2f} {r1:>12,.0f} "
                        f"{r2:>12,.0f} {p50:>8.1f} {p99:>8.1f} {diff:>10.1e}"
                        + (f"  {rt.note}" if rt.note else ""))
                table.append(line)
                print(line, flush=True)
            if name == "lightgbm":
                ll = lleaves_figures(model, X, args.calls, work)
                if ll is not None:
                    diff = float(np.max(np.abs(ll["predictions"] - reference)))
                    figures["lleaves"] = (ll["r1"], ll["r2"], ll["p50"])
                    line = (f"{label:<16} {'lleaves':<15} {ll['build_s']:>8.2f} "
                            f"{ll['r1']:>12,.0f} {ll['r2']:>12,.0f} {ll['p50']:>8.1f} "
                            f"{ll['p99']:>8.1f} {diff:>10.1e}")
                    table.append(line)
                    print(line, flush=True)
            c1, c2, cp50 = figures["modelport C"]
            for other, (r1, r2, p50) in figures.items():
                if other == "mp C one-row":
                    ratios.append(f"{label:<16} one-row entry {p50:.1f} µs vs lleaves / "
                                  f"tl2cgen p50: " + ", ".join(
                                      f"{k} {figures[k][2] / p50:.2f}x" for k in
                                      ("lleaves", "tl2cgen") if k in figures))
                elif other != "modelport C":
                    ratios.append(f"{label:<16} vs {other:<15} batch 1t {c1 / r1:>6.2f}x   "
                                  f"batch 2t {c2 / r2:>6.2f}x   single row p50 "
                                  f"{p50 / cp50:>6.2f}x")
    pool.shutdown()
    print("\n" + header)
    print("-" * len(header))
    for line in table:
        print(line)
    print("\nmodelport compiled C against each runtime (above 1: modelport is faster):")
    for line in ratios:
        print(line)


if __name__ == "__main__":
    main()
