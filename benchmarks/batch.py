"""Batch scoring, side by side: modelport predict against the usual ways, on the same data.

Generates churn customers (``modelport.datasets.churn``) as Parquet, registers a one-hot +
logistic-regression pipeline and a one-hot + gradient-boosting pipeline, and for each input
size and model runs, each in its own fresh process:

- ``floor``: read the input and write an output of the same width with pyarrow, no model;
- ``modelport``: ``modelport.serve.batch.predict`` (chunked, worker processes, the compiled
  runtime: trees in C where a compiler is found, built into the cache before the runs);
- ``pandas``: read the whole file, ``predict_proba`` with scikit-learn, write;
- ``mlflow``: MLflow's pyfunc over the whole frame (needs ``pip install 'modelport[bench]'``;
  skipped with that hint when MLflow is missing; nothing is installed for you).

Prints rows/s, peak memory (RSS and PSS summed over the process and its children, so worker
processes count: the process tree every 0.2 s, its RSS from /proc/PID/statm every 20 ms, PSS
from /proc/PID/smaps_rollup every 0.5 s, since reading smaps stalls a process that maps memory meanwhile and sampling it every
20 ms slowed the chunked jobs by up to half) and ratios to modelport. Run::

    python benchmarks/batch.py                 # 1M and 5M rows, both models
    python benchmarks/batch.py --quick         # 200k rows
    python benchmarks/batch.py --rows 1000000 --models logistic --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]
FEATURES = NUMERIC + CATEGORICAL
APPROACHES = ("floor", "modelport", "pandas", "mlflow")
PAGE = os.sysconf("SC_PAGE_SIZE")
#: seconds between two readings of PSS (RSS is read every 20 ms)
PSS_EVERY = 0.5


# -- one measured run, in a fresh process --------------------------------------------------

def run_one(approach: str, model: str, src: str, dest: str, workers: int,
            chunk_rows: int) -> float:
    """Do one job; return its seconds (interpreter start-up not counted)."""
    started = time.perf_counter()
    if approach == "floor":
        import pyarrow.parquet as pq

        reader = pq.ParquetFile(src, pre_buffer=False)  # pre-buffering grows with the file
        cols = ["customer_id", "monthly_charges", "total_charges", "data_usage_gb", "age"]
        writer = None
        for batch in reader.iter_batches(batch_size=chunk_rows, columns=cols):
            if writer is None:
                writer = pq.ParquetWriter(dest, batch.schema)
            writer.write_batch(batch)
        writer.close()
    elif approach == "modelport":
        from modelport.serve.batch import predict

        predict(model, src, dest, id="customer_id", workers=workers, chunk_rows=chunk_rows,
                progress=False)
    elif approach == "pandas":
        import joblib
        import pandas as pd

        estimator = joblib.load(Path(os.environ["BENCH_DIR"]) / f"{model}.joblib")
        frame = pd.read_parquet(src)
        proba = estimator.predict_proba(frame[FEATURES])
        pd.DataFrame({"customer_id": frame["customer_id"], "label": proba.argmax(axis=1),
                      "proba_0": proba[:, 0], "proba_1": proba[:, 1]}).to_parquet(dest)
    elif approach == "mlflow":
        import mlflow.pyfunc
        import pandas as pd

        pyfunc = mlflow.pyfunc.load_model(str(Path(os.environ["BENCH_DIR"]) / f"{model}.mlflow"))
        frame = pd.read_parquet(src)
        proba = pyfunc.predict(frame[FEATURES])
        proba = getattr(proba, "to_numpy", lambda: proba)()
        pd.DataFrame({"customer_id": frame["customer_id"], "proba_0": proba[:, 0],
                      "proba_1": proba[:, 1]}).to_parquet(dest)
    return time.perf_counter() - started


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


def _rss(pids: list[int]) -> int:
    """Resident bytes of ``pids`` now, from /proc/PID/statm: kernel counters, read without
    walking the processes' page tables, so sampling it often does not slow them down."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


def _pss(pids: list[int]) -> int:
    """Proportional set size of ``pids``, from /proc/PID/smaps_rollup. Reading it walks a
    process's page tables under its memory-map lock, which stalls a process that maps and
    unmaps memory meanwhile: it is read only every PSS_EVERY seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure(approach: str, model: str, src: Path, workdir: Path, workers: int,
            chunk_rows: int, env: dict) -> dict:
    """Run one approach in a fresh process; its seconds and the peak RSS of its process tree."""
    dest = workdir / f"out-{approach}-{model}.parquet"
    cmd = [sys.executable, __file__, "--run", approach, "--model", model, "--input", str(src),
           "--output", str(dest), "--workers", str(workers), "--chunk-rows", str(chunk_rows)]
    launched = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        next_pss = next_tree = 0.0
        pids: list[int] = []
        while not done.is_set():
            now = time.monotonic()
            if now >= next_tree:  # walking /proc costs more than reading a few statm files
                pids, next_tree = _tree(proc.pid), now + 0.2
            peak[0] = max(peak[0], _rss(pids))
            if now >= next_pss:
                peak[1] = max(peak[1], _pss(pids))
                next_pss = now + PSS_EVERY
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    whole = time.perf_counter() - launched
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{approach} failed: {err.strip()[-2000:]}")
    dest.unlink(missing_ok=True)
    return {"seconds": json.loads(out.strip().splitlines()[-1])["seconds"], "whole": whole,
            "rss": peak[0], "pss": peak[1]}


# -- setup ---------------------------------------------------------------------------------

def prepare(workdir: Path, sizes: list[int], models: list[str], with_mlflow: bool) -> dict:
    """Register the pipelines (and save them for the competitors); write the inputs."""
    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    import modelport
    from modelport.datasets import churn
    from modelport.train.preprocess import build_pipeline

    train = churn.generate(50_000, seed=1)
    X, y = train[FEATURES], train["churned"]
    estimators = {"logistic": LogisticRegression(max_iter=500),
                  "gbm": HistGradientBoostingClassifier(max_iter=100, random_state=0)}
    for name in models:
        pipeline = build_pipeline(estimators[name], X, NUMERIC, CATEGORICAL).fit(X, y)
        version = modelport.log_model(pipeline, name, sample=X,
                                      formats=["joblib", "onnx", "compiled"])
        print(f"registered {version.uri}: formats {version.accepted_formats()}", flush=True)
        _build_trees(version)
        joblib.dump(pipeline, workdir / f"{name}.joblib")
        if with_mlflow:
            import mlflow.sklearn

            mlflow.sklearn.save_model(pipeline, str(workdir / f"{name}.mlflow"),
                                      serialization_format="cloudpickle",
                                      pyfunc_predict_fn="predict_proba")
    inputs = {}
    for n in sizes:
        path = workdir / f"customers-{n}.parquet"
        writer = None
        step = 1_000_000
        for start in range(0, n, step):  # in slices: the generator holds one slice at a time
            part = churn.generate(min(step, n - start), seed=start + 7).drop(columns=["churned"])
            part["customer_id"] += start
            table = pa.Table.from_pandas(part, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=100_000)
        writer.close()
        inputs[n] = path
    return inputs


def _build_trees(version) -> None:
    """Build a tree model's compiled trees into the machine's cache now, as the first job
    on this machine would, and say how long it took: every timed run then finds them."""
    from modelport.registry import Registry

    predictor = Registry().load(version.uri, format="compiled")
    started = time.perf_counter()
    if predictor.prepare_batch():
        print(f"  trees compiled to C (cached for every later job on this machine) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--quick", action="store_true", help="200k rows only")
    parser.add_argument("--models", nargs="+", default=["logistic", "gbm"],
                        choices=["logistic", "gbm"])
    parser.add_argument("--approaches", nargs="+", default=list(APPROACHES),
                        choices=APPROACHES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--dir", help="working folder (default: a temporary one)")
    parser.add_argument("--run", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        seconds = run_one(args.run, args.model, args.input, args.output, args.workers,
                          args.chunk_rows)
        print(json.dumps({"seconds": seconds}))
        return

    sizes = [200_000] if args.quick else args.rows
    approaches = list(args.approaches)
    try:
        import mlflow  # noqa: F401

        with_mlflow = "mlflow" in approaches
    except ImportError:
        with_mlflow = False
        if "mlflow" in approaches:
            approaches.remove("mlflow")
            print("MLflow is not installed: skipping it (pip install 'modelport[bench]' or "
                  "pip install mlflow to include it)")
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="modelport-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MODELPORT_HOME": str(workdir / "home"), "BENCH_DIR": str(workdir),
           "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_TRACKING_URI": f"file://{workdir}/mlruns"}
    env.pop("MODELPORT_REGISTRY", None)
    env.pop("MODELPORT_ARTIFACTS", None)
    os.environ.update({k: env[k] for k in ("MODELPORT_HOME", "OMP_WAIT_POLICY")})
    os.environ.pop("MODELPORT_REGISTRY", None)
    os.environ.pop("MODELPORT_ARTIFACTS", None)
    inputs = prepare(workdir, sizes, args.models, with_mlflow)

    print(f"\n{os.cpu_count()} cores; modelport with {args.workers} workers, chunks of "
          f"{args.chunk_rows:,} rows; Parquet -> Parquet; peak RSS summed over the process "
          "tree (RSS counts shared\nlibraries once per process, PSS shares them out); rows/s "
          "exclude interpreter start-up, whole s is the process from launch to exit\n")
    header = (f"| {'rows':>9} | {'model':<8} | {'approach':<9} | {'rows/s':>11} | "
              f"{'peak RSS':>9} | {'peak PSS':>9} | {'modelport is':>14} | {'whole s':>7} | "
              f"{'whole: modelport is':>19} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for n, src in inputs.items():
        for model in args.models:
            results = {}
            for approach in approaches:
                r = measure(approach, model, src, workdir, args.workers, args.chunk_rows, env)
                results[approach] = r
            mine = n / results["modelport"]["seconds"] if "modelport" in results else None
            whole = results["modelport"]["whole"] if "modelport" in results else None
            for approach, r in results.items():
                rate = n / r["seconds"]
                if mine is None or whole is None or approach == "modelport":
                    ratio = whole_ratio = ""
                elif approach == "floor":
                    ratio = f"{mine / rate:.2f}x floor"
                    whole_ratio = f"{r['whole'] / whole:.2f}x floor"
                else:
                    ratio = f"{mine / rate:.1f}x faster"
                    whole_ratio = f"{r['whole'] / whole:.1f}x faster"
                print(f"| {n:>9,} | {model:<8} | {approach:<9} | {rate:>11,.0f} | "
                      f"{r['rss'] / 2**20:>6,.0f} MB | {r['pss'] / 2**20:>6,.0f} MB | "
                      f"{ratio:>14} | {r['whole']:>7.2f} | {whole_ratio:>19} |", flush=True)
    print(f"\nworking folder: {workdir}")


if __name__ == "__main__":
    main()
