"""The churn example end to end, online: customers stream in, their churn labels follow
later, the model learns while it serves, and the server's answers change as checkpoints
are promoted.

1. A first stretch of events (customers, then their labels ``--delay`` events later) is
   written to ``data/events.jsonl`` and learnt (``modelport learn churn-online.yaml``): the
   first checkpoint becomes ``churn-online@production``.
2. ``modelport serve churn-online@production`` starts, and ``modelport learn --follow``
   keeps learning as more events are appended, stage by stage, while the market drifts
   (newer customers, higher prices: ``modelport.datasets.churn``'s ``drift``).
3. After each stage the script asks the server about three customers and prints which
   version answered and the churn probability it gave.

    python run.py                  # 40,000 customers in 4 stages
    python run.py --customers 6000 --stages 3 --port 8099

Everything lands in ``--dir`` (default ``./online-example``): the events, the registry
(``MODELPORT_HOME``), the logs of the server and the learner.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import yaml

from modelport.datasets import churn

HERE = Path(__file__).resolve().parent
MODELPORT = [sys.executable, "-m", "modelport"]


def stream(customers: int, first_id: int, seed: int, drift: float, delay: int) -> list[dict]:
    """Customers' facts in order, each label ``delay`` events after its customer."""
    frame = churn.generate(customers, seed=seed, drift=drift)
    frame["customer_id"] += first_id - churn.FIRST_ID
    out, waiting = [], []
    for row in frame.to_dict("records"):
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        label = row.pop("churned")
        out.append(row)
        waiting.append((len(out) + delay, {"customer_id": row["customer_id"], "churned": label}))
        while waiting and waiting[0][0] <= len(out):
            out.append(waiting.pop(0)[1])
    return out + [w for _, w in waiting]


def append(path: Path, events: list[dict]) -> None:
    with open(path, "ab") as fh:
        fh.writelines(orjson.dumps(e) + b"\n" for e in events)


def ask(port: int, customer: dict) -> tuple[int, float]:
    body = orjson.dumps({k: v for k, v in customer.items() if k != "customer_id"})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict/churn-online", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    return answer["version"], answer["predictions"][0]["proba"]["1"]


def registry_state() -> dict:
    from modelport.registry import Registry

    reg = Registry()
    versions = reg.versions("churn-online")
    return {"aliases": reg.aliases("churn-online"), "versions": [v.version for v in versions],
            "events": versions[-1].lineage["online"]["seq"] if versions else 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--delay", type=int, default=1_000, help="events until a label")
    parser.add_argument("--dir", type=Path, default=Path("online-example"))
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)

    work = args.dir.absolute()
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    os.environ["MODELPORT_HOME"] = str(work / "registry")
    per_stage = args.customers // (args.stages + 1)
    spec = yaml.safe_load((HERE / "churn-online.yaml").read_text())
    # a checkpoint about twice a stage, whatever the size of the run
    spec["checkpoint"]["every_events"] = max(per_stage, 500)
    spec["checkpoint"]["every_seconds"] = 2
    (work / "churn-online.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    events = work / "data" / "events.jsonl"
    probes = stream(3, 9_000_000, seed=99, drift=0.0, delay=0)
    probes = [e for e in probes if "tenure_months" in e]

    append(events, stream(per_stage, 1_000_000, seed=0, drift=0.0, delay=args.delay))
    first = subprocess.run([*MODELPORT, "learn", str(work / "churn-online.yaml"), "--json"],
                           capture_output=True, text=True, check=True)
    print(f"stage 0: learnt {json.loads(first.stdout)['learned']:,} customers; "
          f"{registry_state()['aliases']}", flush=True)

    port = args.port or free_port()
    logs = {name: open(work / f"{name}.log", "w") for name in ("serve", "learn")}  # noqa: SIM115
    server = subprocess.Popen([*MODELPORT, "serve", "churn-online@production", "--port",
                               str(port), "--poll-seconds", "0.5", "--unseen-categories",
                               "warn", "--out-of-range", "warn"],
                              stdout=logs["serve"], stderr=subprocess.STDOUT)
    learner = subprocess.Popen([*MODELPORT, "learn", str(work / "churn-online.yaml"),
                                "--follow", "--json"], stdout=subprocess.PIPE,
                               stderr=logs["learn"], text=True)
    answers = []
    try:
        deadline = time.time() + 90
        while True:
            try:
                ask(port, probes[0])
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    log = work / "serve.log"
                    raise SystemExit(f"the server did not start; see {log}") from None
                time.sleep(0.3)
        for stage in range(args.stages + 1):
            if stage:
                drift = stage / args.stages
                append(events, stream(per_stage, 1_000_000 + stage * per_stage, seed=stage,
                                      drift=drift, delay=args.delay))
                target = sum(1 for _ in open(events, "rb"))
                deadline = time.time() + 120
                # wait until a checkpoint covers the stage and the server had time to swap
                while registry_state()["events"] < target and time.time() < deadline:
                    time.sleep(0.3)
                time.sleep(1.5)
            state = registry_state()
            row = [ask(port, p) for p in probes]
            answers.append({"stage": stage, "production": state["aliases"].get("production"),
                            "answers": row})
            print(f"stage {stage}: {len(state['versions'])} checkpoints, production -> "
                  f"{state['aliases'].get('production')}; the server answers "
                  + ", ".join(f"v{v}: {p:.3f}" for v, p in row), flush=True)
    finally:
        learner.send_signal(signal.SIGTERM)
        out, _ = learner.communicate(timeout=120)
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        for fh in logs.values():
            fh.close()
    summary = json.loads(out) if out.strip() else {}
    print(f"the learner followed the stream: {summary.get('learned', 0):,} customers learnt, "
          f"prequential {summary.get('prequential')}; checkpoints {summary.get('checkpoints')}")
    return {"answers": answers, "learner": summary}


if __name__ == "__main__":
    main()
