"""The compiled NumPy runtime, side by side with scikit-learn and ONNX Runtime.

Fits the two churn pipelines (imputation + scaling + one-hot feeding a logistic regression,
and imputation + one-hot feeding a 300-tree HistGradientBoosting model) on
``modelport.datasets.churn`` data, converts each to the ``compiled`` and ``onnx`` formats
exactly as registration does (both pass the parity check first), and measures:

- single-row latency: the median of many calls scoring one row given as a dict (what a web
  service or stream consumer does); scikit-learn gets a one-row DataFrame;
- throughput: rows/s scoring 100,000 rows in one call (a DataFrame for every runtime).

Prints the figures and the ratios to scikit-learn ``predict_proba``. Run::

    python benchmarks/compile.py            # 100k rows, 2000 single-row calls
    python benchmarks/compile.py --quick    # 20k rows, 300 calls
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pipelines():
    """The churn pipelines, fitted: {name: (model, feature frame)}."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from modelport.datasets import churn

    frame = churn.generate(20_000, seed=0)
    X = frame.drop(columns=["customer_id", "churned"])
    y = frame["churned"]
    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    categorical = [c for c in X.columns if c not in numeric]

    def pre(scale: bool):
        num = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()) if scale \
            else SimpleImputer(strategy="median")
        return ColumnTransformer([
            ("num", num, numeric),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                                  OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
             categorical),
        ])

    logistic = make_pipeline(pre(True), LogisticRegression(max_iter=1000)).fit(X, y)
    hgb = make_pipeline(pre(False), HistGradientBoostingClassifier(
        max_iter=300, early_stopping=False, random_state=0)).fit(X, y)
    return {"logistic": (logistic, X), "hgb-300": (hgb, X)}


def single_row_us(fn, rows, calls: int) -> float:
    """Median microseconds of ``fn(row)`` over ``calls`` calls cycling through ``rows``."""
    for r in rows[:20]:
        fn(r)
    times = []
    for i in range(calls):
        r = rows[i % len(rows)]
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def rows_per_s(fn, batch, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - t0)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.calls = 20_000, 300

    import numpy as np

    from modelport.datasets import churn
    from modelport.formats import compiled, onnx
    from modelport.formats.native import classes_of
    from modelport.parity import compare
    from modelport.signature import Signature

    big = churn.generate(args.rows, seed=7).drop(columns=["customer_id", "churned"])
    print(f"compiled NumPy vs scikit-learn vs ONNX Runtime; {args.rows:,} rows, "
          f"{args.calls} single-row calls; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    header = (f"{'model':<10} {'runtime':<14} {'1-row µs':>10} {'x sklearn':>10} "
              f"{'rows/s':>12} {'x sklearn':>10}  parity")
    print(header)
    print("-" * len(header))
    for name, (model, X) in pipelines().items():
        sample = X.head(1000).reset_index(drop=True)
        sig = Signature.infer(sample, "classification", classes_of(model))
        reference = model.predict_proba(sample)
        runtimes = {"scikit-learn": (None, None)}
        for fmt in (compiled, onnx):
            if not fmt.available():
                print(f"{name:<10} {fmt.NAME:<14} not installed: pip install 'modelport[onnx]'")
                continue
            predictor = fmt.load(fmt.convert(model, sig, sample), sig)
            got = predictor.run(sample)
            result = compare({"label": model.predict(sample), "proba": reference}, got,
                             "classification", fmt.TOLERANCE)
            runtimes[f"{fmt.NAME}"] = (predictor, result)
        dict_rows = [{k: (None if v != v else v) for k, v in r.items()}
                     for r in big.head(500).to_dict("records")]
        frame_rows = [big.iloc[[i]] for i in range(500)]
        figures = {}
        for runtime, (predictor, result) in runtimes.items():
            if predictor is None:
                one = single_row_us(model.predict_proba, frame_rows, args.calls)
                thr = rows_per_s(model.predict_proba, big)
            else:
                one = single_row_us(predictor.run, dict_rows, args.calls)
                thr = rows_per_s(predictor.run, big)
            figures[runtime] = (one, thr, result)
        base_one, base_thr, _ = figures["scikit-learn"]
        for runtime, (one, thr, result) in figures.items():
            parity = "reference" if result is None else (
                f"max diff {result['max_abs_diff']:.1e}" if result["passed"]
                else f"REJECTED: {result['reason']}")
            print(f"{name:<10} {runtime:<14} {one:>10.1f} {base_one / one:>9.1f}x "
                  f"{thr:>12,.0f} {thr / base_thr:>9.2f}x  {parity}")
        # the batch figures are only worth quoting if the outputs agree
        if "compiled" in runtimes:
            full = runtimes["compiled"][0].run(big.head(5000))["proba"]
            assert np.abs(full - model.predict_proba(big.head(5000))).max() <= 1e-9


if __name__ == "__main__":
    main()
