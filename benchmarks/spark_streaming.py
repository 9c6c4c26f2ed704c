"""Spark streaming: `modelport learn --engine spark` against pyspark.mllib's streaming
learners, and `modelport stream --engine spark` against a hand-written mapInPandas.

One drifting stream is generated and written as files (JSON lines, one file per
micro-batch): five Gaussian features, a regression target ``y = x . w(t) + noise`` and a
class ``c = [x . w(t) > 0]``, with ``w(t)`` moving a little at every file. Both sides run
on ``local[2]`` in this process's Spark session, with the same parameters and the same
micro-batches (one file each):

- learning: MLlib's ``StreamingLinearRegressionWithSGD`` and
  ``StreamingLogisticRegressionWithSGD`` on a DStream (``queueStream`` of the files, read
  with ``textFile`` and parsed in Python, one file a batch), predicting each batch before
  training on it (``predictOnValues`` registered before ``trainOn``); against
  ``modelport.train.online.spark.learn_spark`` on the folder (Structured Streaming,
  ``max_files_per_trigger: 1``, available-now). Printed: prequential RMSE (regression) or
  accuracy (classification) over the whole stream, and events/s (from the start of the
  query to its end; modelport's final registry checkpoint included);
- scoring: the regression model registered in modelport, scored from the folder into a
  Parquet folder by ``stream_spark`` (checks, scoring core, dead letters, exactly-once
  batch folders) and by a hand-written ``readStream.json -> mapInPandas(model.predict) ->
  writeStream.parquet``; rows/s of each, from start to end of an available-now query.

    .venv/bin/python benchmarks/spark_streaming.py [--files 20] [--rows 2000]
        [--iterations 20] [--step 0.1]

Needs the `spark` extra and Java 17.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

FEATURES = [f"x{i}" for i in range(5)]


def generate(folder: Path, files: int, rows: int) -> None:
    """The drifting stream, one JSON-lines file per micro-batch, modification times rising."""
    folder.mkdir(parents=True, exist_ok=True)
    base = np.array([1.0, -2.0, 0.5, 0.0, 1.5])
    drift = np.array([0.05, 0.03, -0.04, 0.06, -0.05])
    for n in range(files):
        rng = np.random.default_rng(n)
        X = rng.normal(size=(rows, len(FEATURES)))
        w = base + n * drift
        score = X @ w
        y = score + rng.normal(0, 0.3, rows)
        c = (score + rng.normal(0, 0.3, rows) > 0).astype(int)
        lines = [json.dumps({**dict(zip(FEATURES, x.tolist(), strict=True)), "y": v, "c": k})
                 for x, v, k in zip(X, y.tolist(), c.tolist(), strict=True)]
        path = folder / f"part-{n:04d}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))


def mllib(spark, folder: Path, logistic: bool, iterations: int, step: float) -> tuple[float, float]:
    """MLlib's streaming learner on a DStream of the files: (prequential metric, events/s)."""
    from pyspark.mllib.classification import StreamingLogisticRegressionWithSGD
    from pyspark.mllib.regression import LabeledPoint, StreamingLinearRegressionWithSGD
    from pyspark.streaming import StreamingContext

    sc = spark.sparkContext
    target = "c" if logistic else "y"

    def parse(line: str):
        r = json.loads(line)
        return LabeledPoint(float(r[target]), [r[f] for f in FEATURES])

    files = sorted(folder.glob("part-*.jsonl"))
    ssc = StreamingContext(sc, 0.2)
    stream = ssc.queueStream([sc.textFile(str(f), 1).map(parse) for f in files],
                             oneAtATime=True)
    if logistic:
        model = StreamingLogisticRegressionWithSGD(stepSize=step, numIterations=iterations)
    else:
        model = StreamingLinearRegressionWithSGD(stepSize=step, numIterations=iterations)
    model.setInitialWeights([0.0] * len(FEATURES))
    errors: list[np.ndarray] = []
    seen = [0]

    def prequential(rdd) -> None:
        # runs on the driver before trainOn's update of the same batch: the weights are
        # those learnt from the batches before it
        weights = np.asarray(model.latestModel().weights)
        points = rdd.collect()
        if points:
            X = np.array([p.features.toArray() for p in points])
            y = np.array([p.label for p in points])
            score = X @ weights
            errors.append(((score > 0).astype(float) == y) if logistic else score - y)

    def trained(rdd) -> None:
        seen[0] += 1

    stream.foreachRDD(prequential)
    model.trainOn(stream)
    stream.foreachRDD(trained)  # after trainOn's update of the batch
    started = time.perf_counter()
    ssc.start()
    while seen[0] < len(files):
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    ssc.stop(stopSparkContext=False, stopGraceFully=False)
    joined = np.concatenate(errors)
    metric = float(joined.mean()) if logistic else float(np.sqrt(np.mean(joined ** 2)))
    return metric, len(joined) / seconds


def modelport_learn(folder: Path, work: Path, logistic: bool, iterations: int,
                    step: float) -> tuple[float, float]:
    from modelport.train.online.spark import learn_spark
    from modelport.train.online.spec import load_spec

    name = "bench-logistic" if logistic else "bench-linear"
    spec = load_spec({
        "name": name, "task": "classification" if logistic else "regression",
        "source": str(folder), "target": "c" if logistic else "y", "features": FEATURES,
        "learner": {"estimator": "sklearn.linear_model.SGDClassifier" if logistic
                    else "sklearn.linear_model.SGDRegressor"},
        "checkpoint": {"every_events": 10 ** 9, "formats": ["joblib"]},
        "evaluation": {"window": 10 ** 8, "metrics": ["accuracy"] if logistic else ["rmse"]},
        "promotion": False,
        "spark": {"checkpoint": str(work / f"{name}.ck"), "max_files_per_trigger": 1,
                  "step_size": step, "num_iterations": iterations},
    })
    result = learn_spark(spec, fresh=True)
    metric = result.prequential["accuracy" if logistic else "rmse"]
    return metric, result.events_per_s


def scoring(spark, folder: Path, work: Path, files_per_batch: int) -> tuple[float, float]:
    """rows/s of modelport's stream scoring and of a hand-written mapInPandas, both
    available-now from the folder into Parquet."""
    import pandas as pd
    from sklearn.linear_model import SGDRegressor

    import modelport
    from modelport.serve.spark_stream import stream_spark

    first = pd.read_json(sorted(folder.glob("part-*.jsonl"))[0], lines=True)
    model = SGDRegressor(random_state=0).fit(first[FEATURES], first["y"])
    modelport.log_model(model, "bench-score", sample=first[FEATURES], formats=["joblib"])
    schema = ", ".join(f"{f} double" for f in FEATURES)

    def predict(frames):
        for frame in frames:
            yield pd.DataFrame({"value": model.predict(frame[FEATURES])})

    ours = theirs = 0.0
    for attempt in range(2):  # the first run of each warms the Python workers
        out = work / f"run{attempt}"
        started = time.perf_counter()
        done = stream_spark("bench-score", f"{folder}?max_files_per_trigger={files_per_batch}",
                            str(out / "mp-scores"), checkpoint=out / "mp-scores.ck",
                            available_now=True)
        ours = max(ours, done.rows / (time.perf_counter() - started))
        started = time.perf_counter()
        query = (spark.readStream.schema(f"{schema}, y double, c int")
                 .option("maxFilesPerTrigger", files_per_batch).json(str(folder))
                 .mapInPandas(predict, schema="value double")
                 .writeStream.format("parquet").option("path", str(out / "hand-scores"))
                 .option("checkpointLocation", str(out / "hand-scores.ck"))
                 .trigger(availableNow=True).start())
        query.awaitTermination()
        seconds = time.perf_counter() - started
        written = spark.read.parquet(str(out / "hand-scores")).count()
        theirs = max(theirs, written / seconds)
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--score-files", type=int, default=5,
                        help="files per micro-batch of the scoring queries")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelport-bench-spark-"))
    os.environ["MODELPORT_HOME"] = str(work / "home")
    from modelport.serve.spark_stream import session

    spark = session("local[2]", app="modelport benchmark")
    spark.sparkContext.setLogLevel("ERROR")
    folder = work / "stream"
    generate(folder, args.files, args.rows)
    print(f"stream: {args.files} files x {args.rows} events, 5 features, drifting; "
          f"SGD {args.iterations} iterations, step {args.step}; local[2]")
    print(f"{'learner':<28}{'metric':>10}{'mllib':>10}{'modelport':>11}"
          f"{'mllib ev/s':>13}{'modelport ev/s':>16}{'speed':>8}")
    for logistic in (False, True):
        theirs, their_rate = mllib(spark, folder, logistic, args.iterations, args.step)
        ours, our_rate = modelport_learn(folder, work, logistic, args.iterations, args.step)
        label = "logistic regression (SGD)" if logistic else "linear regression (SGD)"
        print(f"{label:<28}{'accuracy' if logistic else 'rmse':>10}{theirs:>10.4f}"
              f"{ours:>11.4f}{their_rate:>13,.0f}{our_rate:>16,.0f}"
              f"{our_rate / their_rate:>7.1f}x")
    ours, theirs = scoring(spark, folder, work, args.score_files)
    print(f"scoring rows/s: modelport stream --engine spark {ours:,.0f}, hand-written "
          f"mapInPandas + scikit-learn {theirs:,.0f} (ratio {ours / theirs:.2f})")
    spark.stop()


if __name__ == "__main__":
    main()
