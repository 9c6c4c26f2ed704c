"""Contributions from the intermediate form, side by side with shap's TreeExplainer.

Fits a 300-tree GradientBoosting classifier, a RandomForest classifier and (when installed)
a LightGBM classifier on synthetic numeric data, reads each into the intermediate form and
measures, for :func:`modelport.compile.explain.contributions` and for
``shap.TreeExplainer(model, feature_perturbation="tree_path_dependent").shap_values``:

- throughput: rows explained per second, all rows in one call;
- single-row latency: the median of many calls explaining one row (shap gets a one-row
  array, modelport a one-row frame already coerced to the signature).

Checks both agree to 1e-6 first, then prints the figures and modelport's speed relative
to shap's (above 1: modelport is faster). The explanation tables are built once per model
(as a served version builds them once); the time that takes is printed beside.

Then, unless ``--no-http``, each model is registered (compiled) and served by the web
service under uvicorn in this process on 127.0.0.1, and one client sends single-row
``POST /predict/NAME`` requests one after another for ``--seconds`` each, without and with
``?explain=3``: the request rate with reasons relative to the rate without. Run::

    python benchmarks/explain.py            # 10,000 rows, 200 single-row calls
    python benchmarks/explain.py --quick    # 2,000 rows, 30 calls, smaller forest
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

# the other benchmarks in this folder (http.py...) must not shadow standard modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
os.environ.setdefault("OMP_NUM_THREADS", "1")


def models(quick: bool):
    """{name: fitted model} and the training frame."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    X, y = make_classification(n_samples=5000, n_features=12, n_informative=8, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    fitted = {
        "GradientBoosting 300 trees, depth 3": GradientBoostingClassifier(
            n_estimators=300, max_depth=3, random_state=0),
        "RandomForest {} trees, depth {}".format(*((30, 6) if quick else (100, 8))):
            RandomForestClassifier(n_estimators=30 if quick else 100,
                                   max_depth=6 if quick else 8, random_state=0, n_jobs=1),
    }
    try:
        from lightgbm import LGBMClassifier

        fitted["LightGBM 100 trees, 31 leaves"] = LGBMClassifier(
            n_estimators=100, num_leaves=31, verbose=-1, random_state=0, n_jobs=1)
    except ImportError:
        print("lightgbm not installed: skipped")
    return {name: m.fit(frame, y) for name, m in fitted.items()}, frame


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def http_rates(fitted: dict, train, seconds: float) -> None:
    """Single-row request rates of the web service without and with ``?explain=3``."""
    import http.client
    import json
    import socket
    import tempfile
    import threading

    import uvicorn

    import modelport
    from modelport.registry import Registry
    from modelport.serve.http import create_app

    home = Path(tempfile.mkdtemp(prefix="explain-bench-"))
    registry = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    names = {}
    for i, (label, model) in enumerate(fitted.items()):
        names[f"m{i}"] = label
        modelport.log_model(model, f"m{i}", sample=train.head(500), formats=["compiled"],
                            registry=registry)
    app = create_app(list(names), registry=registry, poll_seconds=0, access_log=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body = json.dumps(train.iloc[7].to_dict()).encode()
    print(f"\nHTTP, one row per request, one client, {seconds:g} s each (uvicorn in process)")
    print(f"{'model':40} {'req/s':>10} {'explain=3':>10} {'ratio':>8}")
    try:
        for name, label in names.items():
            rates = []
            for path in (f"/predict/{name}", f"/predict/{name}?explain=3"):
                conn = http.client.HTTPConnection("127.0.0.1", port)
                headers = {"content-type": "application/json"}
                for _ in range(20):  # warm: the first explained request builds the tables
                    conn.request("POST", path, body, headers)
                    answer = conn.getresponse()
                    assert answer.status == 200, answer.read()
                    answer.read()
                n, end = 0, time.perf_counter() + seconds
                start = time.perf_counter()
                while time.perf_counter() < end:
                    conn.request("POST", path, body, headers)
                    conn.getresponse().read()
                    n += 1
                rates.append(n / (time.perf_counter() - start))
                conn.close()
            print(f"{label:40} {rates[0]:>10,.0f} {rates[1]:>10,.0f} {rates[1] / rates[0]:>8.2f}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    import numpy as np
    import pandas as pd
    import shap

    from modelport.compile import to_ir
    from modelport.compile.explain import Explainer
    from modelport.signature import Signature

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-http", action="store_true", help="skip the web service rates")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of requests per HTTP figure (default 3, --quick 1.5)")
    args = parser.parse_args()
    n_rows, n_calls = (2_000, 30) if args.quick else (10_000, 200)

    fitted, train = models(args.quick)
    rng = np.random.default_rng(1)
    rows = pd.DataFrame(rng.normal(size=(n_rows, train.shape[1])), columns=train.columns)
    print(f"{n_rows} rows, {train.shape[1]} columns; single row: median of {n_calls} calls\n")
    print(f"{'model':40} {'':9} {'rows/s':>10} {'1 row ms':>10}")
    for name, model in fitted.items():
        sig = Signature.infer(train, "classification", [0, 1])
        model_ir = to_ir(model, sig)
        frame = sig.coerce(rows)
        explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        X = rows.to_numpy()

        start = time.perf_counter()
        explainer_ir = Explainer(model_ir)  # once per model version
        build_ms = (time.perf_counter() - start) * 1e3
        _, ours = explainer_ir.contributions(frame)
        theirs = np.asarray(explainer.shap_values(X))
        assert np.abs(ours - theirs).max() <= 1e-6, name

        one_frame, one_x = frame.iloc[[0]].reset_index(drop=True), X[:1]
        figures = {}
        for who, batch, single in (
            ("modelport", partial(explainer_ir.contributions, frame),
             partial(explainer_ir.contributions, one_frame)),
            ("shap", partial(explainer.shap_values, X), partial(explainer.shap_values, one_x)),
        ):
            rate = n_rows / timed(batch)
            single()  # warm
            latency = statistics.median(timed(single) for _ in range(n_calls)) * 1e3
            figures[who] = (rate, latency)
            print(f"{name:40} {who:9} {rate:>10,.0f} {latency:>10.2f}")
        (r_ours, l_ours), (r_shap, l_shap) = figures["modelport"], figures["shap"]
        print(f"{'':40} {'tables':9} {'':>10} {build_ms:>10.1f}   (built once per version)")
        print(f"{'':40} {'ratio':9} {r_ours / r_shap:>10.3f} {l_shap / l_ours:>10.3f}"
              "   (modelport / shap speed)\n")
    if not args.no_http:
        http_rates(fitted, train, args.seconds or (1.5 if args.quick else 3.0))


if __name__ == "__main__":
    main()
