"""Online learning: `modelport learn` against River's learn_one loop on the same streams.

For each stream, both learn a logistic regression and a Gaussian naive Bayes prequentially
(predict each event, then learn it) and the script prints events per second and
prequential accuracy over the whole stream side by side, with the speed ratio and the
accuracy difference in points:

- River: `StandardScaler | LogisticRegression` and `GaussianNB`, one `predict_one` and one
  `learn_one` per event, over events already decoded into dicts (decoding is not timed);
- modelport: `modelport.train.online.learn` on a spec reading the same events from a
  Parquet file (reading and decoding are timed), `SGDClassifier(loss=log_loss)` with its
  stream defaults or `GaussianNB`, running standard scaling, batches of `--batch` events
  (16 first; the same spec for every stream) learnt in steps that grow from one event, a
  checkpoint registered every `--checkpoint` events in the background (joblib and ONNX)
  with the promotion gate on. events/s is counted from the end of the first batch to the
  end of the last (registry start-up and the final checkpoint excluded).

With ``--source jsonl`` both read the stream from a JSONL file instead (one JSON object a
line, as a service would log events): River decodes each line with ``json.loads`` (or
``--river-decoder orjson``) before its ``predict_one`` and ``learn_one``, and its timing
includes reading and decoding; modelport learns the spec reading that file.

Prequential accuracy is over every event of the stream for both: an event that got no
prediction (River's first; modelport's before its first fit) counts as wrong.

Streams: River's synthetic drifting streams of `--events` events (SEA with an abrupt
concept change, Agrawal with a concept change, a rotating Hyperplane), generated once
with fixed seeds and cached as Parquet in `--dir`, and River's bundled Phishing and
Bananas data sets. Last, the same SEA stream is loaded into a Redis stream and learnt end
to end from it (XREAD from a position, JSON decoding, learning, checkpoints): events/s.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/online.py [--events 1000000]
        [--nb-events N] [--batch 2048] [--streams sea,agrawal,hyperplane,phishing,bananas]
        [--source parquet|jsonl] [--repeat 3]

Needs the `online` extra (river) and, for the Redis figure, Redis on 127.0.0.1:6379 and the
`brokers` extra. River's naive Bayes learns about 3,000 events/s: `--nb-events` caps the
events the naive Bayes rows use (both libraries see the same prefix).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SYNTHETIC = ("sea", "agrawal", "hyperplane")
BUNDLED = ("phishing", "bananas")


def synthetic(name: str, n: int):
    from river.datasets import synth

    if name == "sea":
        return synth.ConceptDriftStream(synth.SEA(0, noise=0.1, seed=1),
                                        synth.SEA(2, noise=0.1, seed=2),
                                        position=n // 2, width=n // 20, seed=3)
    if name == "agrawal":
        return synth.ConceptDriftStream(synth.Agrawal(0, seed=1), synth.Agrawal(2, seed=2),
                                        position=n // 2, width=n // 20, seed=3)
    return synth.Hyperplane(seed=1, n_features=10, n_drift_features=2, mag_change=0.001,
                            noise_percentage=0.05, sigma=0.1)


def stream_file(name: str, n: int, folder: Path) -> Path:
    """The stream as a Parquet file of numeric features x0.. and an integer label y."""
    import pandas as pd

    path = folder / f"{name}-{n}.parquet"
    if path.exists():
        return path
    if name in SYNTHETIC:
        events = itertools.islice(synthetic(name, n), n)
    else:
        from river import datasets

        events = iter({"phishing": datasets.Phishing, "bananas": datasets.Bananas}[name]())
    rows, labels = [], []
    started = time.time()
    for x, y in events:
        rows.append([float(v) for v in x.values()])
        labels.append(int(y))
    keys = [f"x{i}" for i in range(len(rows[0]))]
    frame = pd.DataFrame(rows, columns=keys)
    frame["y"] = labels
    frame.to_parquet(path, index=False)
    print(f"  generated {name}: {len(frame):,} events in {time.time() - started:.0f} s",
          flush=True)
    return path


def jsonl_file(path: Path, limit: int | None = None) -> Path:
    """The Parquet stream (its first ``limit`` events) as JSONL, one event a line."""
    import orjson
    import pyarrow.parquet as pq

    out = path.with_name(f"{path.stem}{f'-first{limit}' if limit else ''}.jsonl")
    if not out.exists():
        table = pq.read_table(path)
        if limit is not None:
            table = table.slice(0, limit)
        with open(out, "wb") as fh:
            for chunk in table.to_batches(max_chunksize=20_000):
                fh.write(b"".join(orjson.dumps(row) + b"\n" for row in chunk.to_pylist()))
    return out


def river_model(kind: str):
    from river import linear_model, naive_bayes, preprocessing

    return (preprocessing.StandardScaler() | linear_model.LogisticRegression()
            if kind == "logistic" else naive_bayes.GaussianNB())


def river_jsonl_run(kind: str, path: Path, limit: int | None,
                    decoder: str) -> tuple[float, float, int]:
    """River's learn_one loop reading the JSONL file, decoding each line (all timed)."""
    if decoder == "orjson":
        from orjson import loads
    else:
        from json import loads
    model = river_model(kind)
    predict, learn = model.predict_one, model.learn_one
    correct = seen = 0
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        for line in itertools.islice(fh, limit):
            x = loads(line)
            y = x.pop("y")
            correct += predict(x) == y
            learn(x, y)
            seen += 1
    return seen / (time.perf_counter() - t0), correct / seen, seen


def river_run(kind: str, path: Path, limit: int | None) -> tuple[float, float, int]:
    """River's learn_one loop: (events/s, prequential accuracy, events)."""
    import pyarrow.parquet as pq

    model = river_model(kind)
    correct = seen = 0
    spent = 0.0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000):
        frame = batch.to_pandas()
        if limit is not None:
            frame = frame.iloc[:max(limit - seen, 0)]
        labels = frame.pop("y").tolist()
        events = frame.to_dict("records")  # decoding is not timed
        predict, learn = model.predict_one, model.learn_one
        t0 = time.perf_counter()
        for x, y in zip(events, labels, strict=True):
            correct += predict(x) == y
            learn(x, y)
        spent += time.perf_counter() - t0
        seen += len(events)
        if limit is not None and seen >= limit:
            break
    return seen / spent, correct / seen, seen


def modelport_spec(kind: str, source, features: list[str], batch: int, checkpoint: int,
                   name: str) -> dict:
    estimator = {"logistic": ("sklearn.linear_model.SGDClassifier", {"loss": "log_loss"}),
                 "naive_bayes": ("sklearn.naive_bayes.GaussianNB", {})}[kind]
    return {"name": name, "task": "classification", "source": source, "target": "y",
            "features": features, "classes": [0, 1],
            "learner": {"estimator": estimator[0], "params": estimator[1]},
            "batch": {"size": batch, "max_wait_ms": 50},
            "checkpoint": {"every_events": checkpoint},
            "evaluation": {"metrics": ["accuracy"]}}


def modelport_run(kind: str, path: Path, limit: int | None, batch: int, checkpoint: int,
                  home: Path, source: str = "parquet") -> tuple[float, float, int, list]:
    """modelport learn on the stream (its Parquet file, or the JSONL one): (events/s,
    accuracy, events, checkpoints)."""
    import pyarrow.parquet as pq

    from modelport.train.online import learn

    features = [c for c in pq.ParquetFile(path).schema_arrow.names if c != "y"]
    if source == "jsonl":
        path = jsonl_file(path, limit)
    elif limit is not None:
        table = pq.read_table(path)
        if table.num_rows > limit:
            path = path.with_name(f"{path.stem}-first{limit}.parquet")
            if not path.exists():
                pq.write_table(table.slice(0, limit), path)
    os.environ["MODELPORT_HOME"] = str(home / f"{path.stem}-{path.suffix[1:]}-{kind}")
    spec = modelport_spec(kind, str(path), features, batch, checkpoint, f"bench-{kind}")
    result = learn(spec, fresh=True)
    # over every event, like River's: events learnt before the first fit had no model to
    # predict them and count as wrong
    accuracy = result.overall["accuracy"] * result.scored / result.learned
    return result.events_per_s, accuracy, result.events, result.checkpoints


def redis_run(path: Path, batch: int, checkpoint: int, home: Path, url: str) -> dict:
    """Load the stream into Redis (not timed), then learn it end to end from there."""
    import uuid

    import orjson
    import pyarrow.parquet as pq
    import redis

    from modelport.train.online import learn

    key = f"bench-online-{uuid.uuid4().hex[:8]}"
    r = redis.Redis.from_url(url)
    table = pq.read_table(path)
    features = [c for c in table.column_names if c != "y"]
    loaded = time.perf_counter()
    for chunk in table.to_batches(max_chunksize=20_000):
        pipe = r.pipeline(transaction=False)
        for row in chunk.to_pylist():
            pipe.xadd(key, {"data": orjson.dumps(row)})
        pipe.execute()
    loaded = time.perf_counter() - loaded
    os.environ["MODELPORT_HOME"] = str(home / "redis")
    spec = modelport_spec("logistic", f"{url}?stream={key}", features, batch, checkpoint,
                          "bench-redis")
    try:
        t0 = time.perf_counter()
        result = learn(spec, fresh=True)
        wall = time.perf_counter() - t0
    finally:
        r.delete(key)
    return {"events": result.events, "events_per_s": result.events_per_s,
            "wall_events_per_s": result.events / wall, "accuracy": result.overall["accuracy"],
            "load_s": loaded, "checkpoints": result.checkpoints}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--nb-events", type=int, default=None,
                        help="events the naive Bayes rows use (default: all)")
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--checkpoint", type=int, default=250_000,
                        help="events between checkpoints")
    parser.add_argument("--streams", default=",".join(SYNTHETIC + BUNDLED))
    parser.add_argument("--learners", default="logistic,naive_bayes")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                        help="Redis for the end-to-end figure ('' to skip)")
    parser.add_argument("--dir", default=None, help="where generated streams are cached")
    parser.add_argument("--source", choices=("parquet", "jsonl"), default="parquet",
                        help="the file both read the stream from (jsonl: reading and "
                        "decoding are timed for both)")
    parser.add_argument("--river-decoder", choices=("json", "orjson"), default="json",
                        help="how River's loop decodes a JSONL line")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each side; the fastest of each is printed")
    args = parser.parse_args()

    import river
    import sklearn

    folder = Path(args.dir or Path(tempfile.gettempdir()) / "modelport-online-bench")
    folder.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="modelport-online-home-"))
    print(f"River {river.__version__}, scikit-learn {sklearn.__version__}; {args.events:,} "
          f"events per synthetic stream, modelport batches of {args.batch}, a checkpoint "
          f"every {args.checkpoint:,} events; read from {args.source.upper()}"
          + (f" (River decodes with {args.river_decoder})" if args.source == "jsonl" else "")
          + (f"; fastest of {args.repeat} runs" if args.repeat > 1 else "") + "\n",
          flush=True)
    target = 6 if args.source == "jsonl" else 5
    rows = []
    header = (f"{'stream':<11} {'learner':<12} {'events':>9} {'River ev/s':>11} "
              f"{'River acc':>9} {'modelport ev/s':>15} {'mp acc':>7} {'speed':>7} "
              f"{'Δacc pts':>8}  goal")
    for name in args.streams.split(","):
        path = stream_file(name, args.events, folder)
        small = name in BUNDLED
        for kind in args.learners.split(","):
            limit = args.nb_events if kind == "naive_bayes" and not small else None
            r_runs, m_runs = [], []
            for _ in range(args.repeat):
                if args.source == "jsonl":
                    r_runs.append(river_jsonl_run(kind, jsonl_file(path), limit,
                                                  args.river_decoder))
                else:
                    r_runs.append(river_run(kind, path, limit))
                m_runs.append(modelport_run(kind, path, limit, args.batch, args.checkpoint,
                                            home, args.source))
            r_rate, r_acc, n = max(r_runs)
            m_rate, m_acc, m_n, _ = max(m_runs, key=lambda run: run[0])
            assert m_n == n, (m_n, n)
            ratio = m_rate / r_rate
            delta = 100 * (m_acc - r_acc)
            goal = "yes" if ratio >= target and delta >= -0.5 else "no"
            row = (f"{name:<11} {kind:<12} {n:>9,} {r_rate:>11,.0f} {r_acc:>9.4f} "
                   f"{m_rate:>15,.0f} {m_acc:>7.4f} {ratio:>6.1f}x {delta:>+8.2f}  {goal}")
            rows.append(row)
            print(row, flush=True)
    print("\n" + header)
    for row in rows:
        print(row)
    if args.redis and "sea" in args.streams.split(","):
        print("\nRedis Streams end to end (SEA, logistic regression):", flush=True)
        try:
            out = redis_run(stream_file("sea", args.events, folder), args.batch,
                            args.checkpoint, home, args.redis)
        except Exception as exc:  # noqa: BLE001 - a missing Redis skips this figure only
            print(f"  skipped: {type(exc).__name__}: {exc}")
        else:
            print(f"  {out['events']:,} labelled events learnt at {out['events_per_s']:,.0f} "
                  f"events/s ({out['wall_events_per_s']:,.0f} events/s including start-up "
                  f"and the final checkpoint; goal 20,000), prequential accuracy "
                  f"{out['accuracy']:.4f}, {len(out['checkpoints'])} checkpoints; loading "
                  f"the stream took {out['load_s']:.1f} s (not counted)")


if __name__ == "__main__":
    main()
