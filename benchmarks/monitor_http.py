"""What prediction logging costs the web service: ``modelport serve`` without ``--log``,
with ``--log`` (every request) and with ``--log --log-sample 0.1``, side by side.

The model, the servers and the load are those of ``benchmarks/http.py`` (whose functions
this reuses): a one-hot + logistic churn pipeline served by ONNX, 2 workers per server,
``POST /invocations`` with bodies of 1 and of 100 rows, ``wrk -t2 -c32`` or, without wrk,
an asyncio + httpx client with 32 connections. The three servers run at once and are
measured in interleaved rounds (medians reported), so background load falls on all alike.
Besides req/s, the CPU time each server's processes used (from /proc) over all rounds of a
body size, until its log stopped growing (so the logging done after the load counts too),
is divided by the requests it answered: on a machine shared with other work, CPU per
request is the steadier figure, and a CPU-bound server's req/s is its cores divided by
it. Each logging server writes to its own SQLite log; afterwards the rows it holds are
counted and the drops read from the log. Prints req/s, p50/p99, CPU ms per request and the
ratios to the server without a log: the goal is that logging costs at most 5% of req/s.
Run::

    python benchmarks/monitor_http.py                 # 3 rounds of 10 s per measurement
    python benchmarks/monitor_http.py --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bench_http():
    """benchmarks/http.py as a module (its file name would hide the standard library's
    http package if this folder were on sys.path)."""
    spec = importlib.util.spec_from_file_location("modelport_bench_http", HERE / "http.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants, from /proc."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / tick
    return total


def wait_for_logs(dbs: list[Path], quiet: float = 3.0, limit: float = 300.0) -> None:
    """Wait until no log grows any more: every logged request has been written."""
    import time

    deadline = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = [count(db)[0] for db in dbs]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)


def log_thread_cost(home: Path, records: list[dict], tmp: Path) -> dict[int, dict]:
    """CPU the log costs per request, measured in this process: ``put`` on the serving
    side (wall time) and the log thread's CPU time per request, for the checked columns
    and outputs the web service hands over for bodies of 1 and of 100 rows."""
    import os
    import time

    os.environ["MODELPORT_HOME"] = str(home)
    from modelport.monitor.log import PredictionLogger
    from modelport.registry import Registry

    predictor = Registry().load("churn@production", format="onnx")
    out = {}
    for rows in (1, 100):
        columns = predictor.signature.columns(records[:rows])
        outputs = predictor.run(columns)
        plog = PredictionLogger(f"sqlite:///{tmp / f'inproc{rows}.db'}#predictions",
                                cpu_budget=None, capacity=10**7)
        n = 20_000 // rows
        started = time.perf_counter()
        for i in range(n):
            plog.put({"model": "churn", "version": 1, "role": "champion",
                      "inputs": columns, "outputs": outputs, "request_id": f"r{i}",
                      "latency_ms": 1.0})
        put_us = (time.perf_counter() - started) / n * 1e6
        plog.close(timeout=600)
        out[rows] = {"put_us": put_us, "thread_us": plog.cpu_seconds / n * 1e6,
                     "written": plog.written}
    return out


def count(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        dropped = conn.execute("SELECT coalesce(sum(dropped), 0) FROM predictions_drops"
                               ).fetchone()[0]
    return rows, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    http = bench_http()
    tmp = Path(tempfile.mkdtemp(prefix="modelport-monitor-bench-"))
    print(f"fitting and registering the churn pipeline in {tmp} ...", flush=True)
    _, records = http.fit_and_register(tmp / "home")
    import orjson

    bodies = {1: orjson.dumps({"dataframe_records": records[:1]}),
              100: orjson.dumps({"dataframe_records": records[:100]})}
    modelport = str(Path(sys.executable).with_name("modelport"))
    configs = {"no log": [], "log": ["--log", f"sqlite:///{tmp / 'all.db'}#predictions"],
               "log 10%": ["--log", f"sqlite:///{tmp / 'tenth.db'}#predictions",
                           "--log-sample", "0.1"]}
    load = "wrk -t2 -c" + str(args.connections) if shutil.which("wrk") else "python (httpx)"
    print(f"load: {load}, {args.seconds:g} s per measurement, {args.workers} workers per "
          f"server, {args.rounds} rounds per body size", flush=True)
    started = []
    runs: dict[tuple[str, int], list[dict]] = {}
    cpu_ms: dict[tuple[str, int], float] = {}
    dbs = [tmp / "all.db", tmp / "tenth.db"]
    load_fn = http.load_wrk if shutil.which("wrk") else http.load_python
    try:
        for name, extra in configs.items():
            port = http.free_port()
            cmd = [modelport, "serve", "churn@production", "--port", str(port), "--workers",
                   str(args.workers), "--no-access-log", *extra]
            started.append((name, http.Server(name.replace(" ", "-"), cmd, port, "/ping",
                                              {"MODELPORT_HOME": str(tmp / "home")})))
        for rows, body in bodies.items():
            for _, server in started:  # warm-up
                load_fn(server.url + "/invocations", body, 1.0, args.connections, tmp)
            wait_for_logs(dbs)
            cpu = {name: cpu_seconds(server.proc.pid) for name, server in started}
            served = dict.fromkeys(configs, 0.0)
            for i in range(args.rounds):
                # each round in another order, so no server always follows the same one
                order = started[i % len(started):] + started[:i % len(started)]
                for name, server in order:
                    r = load_fn(server.url + "/invocations", body, args.seconds,
                                args.connections, tmp)
                    runs.setdefault((name, rows), []).append(r)
                    served[name] += r["rps"] * args.seconds
                    print(f"  {rows:>3} row(s) round {i + 1}: {name:8} {r['rps']:9.0f} req/s"
                          f"  p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms", flush=True)
            # CPU per request counts the logging done after the load too
            wait_for_logs(dbs)
            for name, server in started:
                used = cpu_seconds(server.proc.pid) - cpu[name]
                cpu_ms[(name, rows)] = 1000 * used / max(served[name], 1)
    finally:
        for _, server in started:
            server.stop()  # SIGTERM: the workers flush their logs before exiting
    import statistics

    results = {}
    for key, found in runs.items():
        results[key] = {k: statistics.median(r[k] for r in found)
                        for k in ("rps", "p50", "p99")}
        results[key]["errors"] = sum(r["errors"] for r in found)
        results[key]["cpu_ms"] = cpu_ms[key]
    print()
    print("| server | rows/request | req/s | p50 ms | p99 ms | non-200 | CPU ms/request | "
          "req/s vs no log | CPU/request vs no log |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, rows), r in results.items():
        base = results[("no log", rows)]
        print(f"| {name} | {rows} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['errors']} | {r['cpu_ms']:.3f} | {100 * r['rps'] / base['rps']:.1f}% | "
              f"{100 * r['cpu_ms'] / base['cpu_ms']:.1f}% |")
    print()
    for name, db in (("log", tmp / "all.db"), ("log 10%", tmp / "tenth.db")):
        logged, dropped = count(db)
        print(f"{name}: {logged:,} rows in the log, {dropped:,} dropped")
    inproc = log_thread_cost(tmp / "home", records, tmp)
    print()
    for rows, c in inproc.items():
        base = results[("no log", rows)]["cpu_ms"] * 1000
        cost = c["put_us"] + c["thread_us"]
        print(f"{rows:>3} row(s): logging a request costs {c['put_us']:.1f} us in put() and "
              f"{c['thread_us']:.1f} us of log-thread CPU (measured in process over "
              f"{c['written']:,} rows); the server without a log uses {base:.0f} us CPU per "
              f"request: logging every request costs {100 * cost / (base + cost):.1f}% of "
              f"a CPU-bound server's req/s, one request in ten "
              f"{100 * cost / 10 / (base + cost / 10):.1f}%")
    print()
    for rows in bodies:
        base = results[("no log", rows)]
        for name in ("log", "log 10%"):
            r = results[(name, rows)]
            print(f"{rows:>3} row(s): {name} costs {100 * (1 - r['rps'] / base['rps']):.1f}% "
                  f"of req/s and {100 * (r['cpu_ms'] / base['cpu_ms'] - 1):.1f}% more CPU per "
                  "request, i.e. "
                  f"{100 * (1 - base['cpu_ms'] / r['cpu_ms']):.1f}% of the req/s a CPU-bound "
                  "server reaches (goal <= 5%)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # run as a script, this folder comes first on sys.path and benchmarks/http.py would
    # hide the standard library's http package from httpx, uvicorn and the rest
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    main()
