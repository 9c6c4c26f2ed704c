"""AutoML under one wall-clock budget: modelport's search (FLAML engine) against raw FLAML,
TPOT and a default histogram gradient boosting, side by side.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/automl.py --budget 60

Datasets: scikit-learn's bundled breast_cancer (ROC AUC), digits (accuracy), diabetes (R2)
and wine (accuracy), and the generated churn data (ROC AUC, ``--churn-rows``, 50,000 by
default). Each is split once, 75 % train / 25 % test (stratified for classification); every
method gets the same training rows and the same budget, and is scored on the same test
rows. "modelport" is :func:`modelport.train.automl.search`, the search ``modelport
retrain`` runs (preprocessing, search and the final refit inside the budget); raw FLAML
gets the training DataFrame as it is; TPOT 1.1 (``max_time_mins`` = the budget, 5 folds)
and the default HistGradientBoosting get modelport's preprocessed columns (imputation,
scaling, one-hot encoding), since neither reads strings or missing categories.

TPOT cannot share modelport's environment (it needs the ``xgboost`` distribution, which
clashes with ``xgboost-cpu``): it runs in the Python given by ``--tpot-python`` (default:
``$MODELPORT_TPOT_PYTHON``, else the environment the TPOT test caches under
``~/.cache/modelport/venvs``), with this checkout's ``modelport`` on its path. Without one,
its column is left out.

The goal printed at the end: on every dataset modelport scores at least the better of raw
FLAML and the default (within 0.002), better than both on average, and its wall time stays
within 10 % of the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# benchmarks/http.py would shadow the standard library's http, which scikit-learn imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

DATASETS = {
    "breast_cancer": ("classification", "roc_auc"),
    "digits": ("classification", "accuracy"),
    "diabetes": ("regression", "r2"),
    "wine": ("classification", "accuracy"),
    "churn": ("classification", "roc_auc"),
}
SEED = 0
TOLERANCE = 0.002


def load(name: str, churn_rows: int):
    """(X DataFrame, y Series) of a dataset."""
    if name == "churn":
        from modelport.datasets import churn

        frame = churn.generate(churn_rows, seed=SEED)
        return frame.drop(columns=["churned", "customer_id"]), frame["churned"]
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.data, bunch.target


def split(name: str, churn_rows: int):
    from sklearn.model_selection import train_test_split

    X, y = load(name, churn_rows)
    task = DATASETS[name][0]
    return train_test_split(X, y, test_size=0.25, random_state=SEED,
                            stratify=y if task == "classification" else None)


def preprocessed(X_train, X_test):
    from modelport.train.preprocess import auto_preprocessor

    pre = auto_preprocessor(X_train)
    return pre.fit_transform(X_train), pre.transform(X_test)


def score(name: str, model, X, y) -> float:
    from modelport.train.metrics import metric_value

    task, metric = DATASETS[name]
    return metric_value(metric, task, y, model, X)


# -- the methods --------------------------------------------------------------------------

def run_modelport(name, budget, X_train, X_test, y_train, y_test):
    from modelport.train.automl import search

    task, metric = DATASETS[name]
    started = time.monotonic()
    result = search(X_train, y_train, task=task, metric=metric, time_budget_s=budget,
                    engine="flaml", seed=SEED)
    seconds = time.monotonic() - started
    return score(name, result.pipeline, X_test, y_test), seconds, result.family


def run_flaml(name, budget, X_train, X_test, y_train, y_test):
    from flaml import AutoML

    task, metric = DATASETS[name]
    automl = AutoML()
    started = time.monotonic()
    automl.fit(X_train, y_train, task=task, metric=metric, time_budget=budget, n_jobs=1,
               seed=SEED, verbose=0)
    seconds = time.monotonic() - started
    return score(name, automl, X_test, y_test), seconds, automl.best_estimator


def run_default(name, budget, X_train, X_test, y_train, y_test):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    task = DATASETS[name][0]
    started = time.monotonic()
    A, B = preprocessed(X_train, X_test)
    model = (HistGradientBoostingClassifier if task == "classification" else
             HistGradientBoostingRegressor)(random_state=SEED)
    model.fit(A, y_train)
    seconds = time.monotonic() - started
    return score(name, model, B, y_test), seconds, "hgb"


def run_tpot(name, budget, X_train, X_test, y_train, y_test):
    """Inside the TPOT environment (``--worker tpot``)."""
    from distributed import Client, LocalCluster
    from tpot import TPOTClassifier, TPOTRegressor

    task, metric = DATASETS[name]
    started = time.monotonic()
    A, B = preprocessed(X_train, X_test)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    client = Client(cluster)
    try:
        cls = TPOTClassifier if task == "classification" else TPOTRegressor
        scorer = {"roc_auc": "roc_auc", "accuracy": "accuracy", "r2": "r2"}[metric]
        tpot = cls(scorers=[scorer], scorers_weights=[1], cv=5, max_time_mins=budget / 60,
                   n_jobs=1, random_state=SEED, verbose=0, client=client)
        tpot.fit(A, y_train)
    finally:
        client.close()
        cluster.close()
    seconds = time.monotonic() - started
    final = tpot.fitted_pipeline_.steps[-1][1]
    return score(name, tpot.fitted_pipeline_, B, y_test), seconds, type(final).__name__


METHODS = {"modelport": run_modelport, "flaml": run_flaml, "tpot": run_tpot,
           "default": run_default}


def tpot_python(given: str | None) -> str | None:
    if given:
        return given
    if os.environ.get("MODELPORT_TPOT_PYTHON"):
        return os.environ["MODELPORT_TPOT_PYTHON"]
    cache = Path.home() / ".cache" / "modelport" / "venvs"
    found = sorted(cache.glob("tpot-*/bin/python"), key=lambda p: p.stat().st_mtime)
    complete = [p for p in found if (p.parent.parent / ".complete").exists()]
    return str(complete[-1]) if complete else None


def in_tpot_env(python: str, name: str, budget: float, churn_rows: int) -> tuple:
    """Run the TPOT method in its own environment; (score, seconds, estimator)."""
    src = Path(__file__).resolve().parents[1] / "src" / "modelport"
    with tempfile.TemporaryDirectory() as shim:
        (Path(shim) / "modelport").symlink_to(src)
        env = {**os.environ, "PYTHONPATH": shim}
        out = subprocess.run(
            [python, str(Path(__file__).resolve()), "--worker", "tpot", "--datasets", name,
             "--budget", str(budget), "--churn-rows", str(churn_rows)],
            capture_output=True, text=True, env=env, timeout=budget * 10 + 300)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"TPOT run failed: {tail[0]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["score"], result["seconds"], result["estimator"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per method")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--churn-rows", type=int,
                        default=int(os.environ.get("MODELPORT_BENCH_CHURN_ROWS", 50_000)))
    parser.add_argument("--methods", default="modelport,flaml,tpot,default")
    parser.add_argument("--tpot-python", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    names = args.datasets.split(",")
    if args.worker:  # inside the TPOT environment: one method, one dataset, JSON out
        name = names[0]
        result = METHODS[args.worker](name, args.budget, *split(name, args.churn_rows))
        print(json.dumps({"score": result[0], "seconds": result[1], "estimator": result[2]}))
        return
    methods = args.methods.split(",")
    tpot = tpot_python(args.tpot_python) if "tpot" in methods else None
    if "tpot" in methods and tpot is None:
        print("TPOT left out: no TPOT environment (pass --tpot-python or run "
              "tests/test_retrain_tpot.py once to build it)")
        methods.remove("tpot")
    print(f"budget {args.budget:g} s per method; churn {args.churn_rows:,} rows; "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}", flush=True)
    rows = []
    for name in names:
        data = split(name, args.churn_rows)
        row = {"dataset": name, "metric": DATASETS[name][1]}
        for method in methods:
            try:
                if method == "tpot":
                    row[method] = in_tpot_env(tpot, name, args.budget, args.churn_rows)
                else:
                    row[method] = METHODS[method](name, args.budget, *data)
            except Exception as exc:
                row[method] = (float("nan"), float("nan"), f"error: {exc}"[:60])
            s, t, est = row[method]
            print(f"  {name:14s} {method:10s} {row['metric']:8s} {s:.4f}  {t:6.1f} s  {est}",
                  flush=True)
        rows.append(row)
    report(rows, methods, args.budget)


def report(rows, methods, budget) -> None:
    import math

    print()
    header = "| dataset | metric | " + " | ".join(methods) + " |"
    print(header)
    print("|" + "---|" * (len(methods) + 2))
    for row in rows:
        cells = [f"{row[m][0]:.4f} ({row[m][1]:.0f} s)" for m in methods]
        print(f"| {row['dataset']} | {row['metric']} | " + " | ".join(cells) + " |")
    if not {"modelport", "flaml", "default"} <= set(methods):
        return
    print()
    ok_each, wall_ok, margins = True, True, []
    for row in rows:
        mp, fl, df = row["modelport"][0], row["flaml"][0], row["default"][0]
        best_other = max(fl, df)
        meets = mp >= best_other - TOLERANCE
        ok_each &= meets
        margins.append((mp - fl, mp - df))
        wall = row["modelport"][1]
        within = abs(wall - budget) <= 0.1 * budget or wall <= budget
        wall_ok &= within
        print(f"{row['dataset']:14s} modelport - max(FLAML, default) = {mp - best_other:+.4f} "
              f"({'ok' if meets else 'MISSED'}); wall {wall:.1f} s = {wall / budget:.2f}x budget"
              f" ({'ok' if within else 'MISSED'})")
    avg = lambda values: sum(values) / len(values)  # noqa: E731
    vs_flaml = avg([m[0] for m in margins if not math.isnan(m[0])])
    vs_default = avg([m[1] for m in margins if not math.isnan(m[1])])
    print(f"average modelport - FLAML {vs_flaml:+.4f}, modelport - default {vs_default:+.4f}")
    better = vs_flaml > 0 and vs_default > 0
    print(f"goal: each dataset {'met' if ok_each else 'NOT met'}; better than both on "
          f"average {'met' if better else 'NOT met'}; wall time {'met' if wall_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
