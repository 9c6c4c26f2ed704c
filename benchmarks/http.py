"""Web serving, side by side: ``modelport serve`` against ``mlflow models serve`` and a
uvicorn hello-world (the HTTP ceiling), on the same model, worker count and load.

Generates churn customers (``modelport.datasets.churn``), fits a one-hot + logistic
regression pipeline, registers it (joblib + ONNX) as ``churn@production`` in a temporary
registry and saves it as an MLflow model. Each server gets 2 workers (``--workers``) and
is loaded by ``wrk -t2 -c32`` (Debian package ``wrk``; without it an asyncio + httpx client
with 32 connections) with ``POST /invocations`` ``dataframe_records`` bodies of 1 and of 100
rows — the one request format both servers take. All servers run at once and are measured
in interleaved rounds (the median round is reported), so background load on the machine
falls on all of them alike. Prints req/s, rows/s, p50/p99 latency,
non-200 answers, peak RSS of the server's processes, and the ratios the goals are stated
in: modelport vs MLflow single-row req/s (goal >= 30x), p99 (goal <= 1/10), and modelport
vs hello-world (goal >= 40%).

MLflow is not a modelport dependency: ``pip install 'modelport[bench]'`` into this
environment, or point ``--mlflow-python`` at a Python with MLflow and scikit-learn of the
same version installed (the model is handed over as a joblib file). Without one the MLflow
rows are skipped with that hint. Run::

    python benchmarks/http.py                         # 3 rounds of 10 s per measurement
    python benchmarks/http.py --seconds 5 --mlflow-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
CATEGORICAL = ["plan", "contract", "payment_method", "region"]
FEATURES = NUMERIC + CATEGORICAL
HELLO = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"predictions": [0]}'})
'''
SAVE_MLFLOW = '''
import sys, joblib, mlflow.sklearn
# MLflow 3 saves scikit-learn models with skops by default; the imputer's dtype must be trusted
mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2],
                          skops_trusted_types=["numpy.dtype"])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_and_register(home: Path):
    """The pipeline, registered in ``home``, and the body rows to send."""
    os.environ["MODELPORT_HOME"] = str(home)
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelport
    from modelport.datasets import churn

    frame = churn.generate(20_000, seed=0)
    X, y = frame[FEATURES], frame["churned"]
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                          ("scale", StandardScaler())]), NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
    ])
    model = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(X, y)
    modelport.log_model(model, "churn", sample=X, formats=["joblib", "onnx"],
                        alias="production")
    joblib.dump(model, home / "model.joblib")
    # rows whose values all lie in the signature's ranges and vocabularies
    rows = X.head(1000).dropna().head(100)
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
               for r in rows.to_dict("records")]
    return home / "model.joblib", records


def rss_of_tree(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, ready_path: str,
                 env: dict | None = None, cwd: str | None = None) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(Path(tempfile.gettempdir()) / f"modelport-bench-{name}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd,
                                     start_new_session=True)
        try:
            self._wait_ready(ready_path)
        except BaseException:
            self.stop()  # never leave a server behind
            raise

    def _wait_ready(self, ready_path: str) -> None:
        import httpx

        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    time.sleep(2)  # let every worker finish starting
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start in 180 s")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def load_wrk(url: str, body: bytes, seconds: float, connections: int, tmp: Path) -> dict:
    script = tmp / "post.lua"
    body_file = tmp / "body.json"
    body_file.write_bytes(body)
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"),
            "errors": (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)}


def load_python(url: str, body: bytes, seconds: float, connections: int, tmp: Path) -> dict:
    import httpx

    latencies: list[float] = []
    errors = [0]

    async def worker(client, stop):
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await client.post(url, content=body,
                                      headers={"content-type": "application/json"})
                if r.status_code != 200:
                    errors[0] += 1
            except httpx.HTTPError:
                errors[0] += 1
            latencies.append((time.perf_counter() - t) * 1000)

    async def main():
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            start = time.perf_counter()
            await asyncio.gather(*[worker(client, start + seconds) for _ in range(connections)])
            return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "errors": errors[0]}


def measure(server: Server, path: str, body: bytes, args, tmp: Path) -> dict:
    load = load_wrk if shutil.which("wrk") else load_python
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], rss_of_tree(server.proc.pid))

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    load(server.url + path, body, min(2.0, args.seconds), args.connections, tmp)  # warm-up
    result = load(server.url + path, body, args.seconds, args.connections, tmp)
    done.set()
    watcher.join()
    result["rss_mb"] = peak[0] / 2**20
    return result


def find_mlflow(given: str | None) -> str | None:
    candidates = [given] if given else [os.environ.get("MLFLOW_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        ok = subprocess.run([python, "-c", "import mlflow, sklearn"], capture_output=True)
        if ok.returncode == 0:
            return python
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mlflow-python", help="a Python with mlflow and scikit-learn")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelport-http-bench-"))
    print(f"fitting and registering the churn pipeline in {tmp} ...", flush=True)
    model_file, records = fit_and_register(tmp / "home")
    import orjson

    bodies = {1: orjson.dumps({"dataframe_records": records[:1]}),
              100: orjson.dumps({"dataframe_records": records[:100]})}
    mlflow_python = find_mlflow(args.mlflow_python)
    python = sys.executable
    servers: list[tuple[str, list[str], str, dict, str | None]] = []
    port = free_port()
    servers.append(("modelport", [str(Path(python).with_name("modelport")), "serve",
                                  "churn@production", "--port", str(port), "--workers",
                                  str(args.workers)], f"http://127.0.0.1:{port}",
                    {"MODELPORT_HOME": str(tmp / "home")}, None))
    if mlflow_python:
        mlflow_dir = tmp / "mlflow-model"
        subprocess.run([mlflow_python, "-c", SAVE_MLFLOW, str(model_file), str(mlflow_dir)],
                       check=True)
        port = free_port()
        servers.append(("mlflow", [mlflow_python, "-m", "mlflow", "models", "serve", "-m",
                                   str(mlflow_dir), "-h", "127.0.0.1", "-p", str(port), "-w",
                                   str(args.workers), "--env-manager", "local"],
                        f"http://127.0.0.1:{port}",
                        # mlflow starts `uvicorn` by name: its environment's bin first on PATH
                        {"PATH": f"{Path(mlflow_python).parent}:{os.environ.get('PATH', '')}"},
                        None))
    else:
        print("mlflow: skipped (pip install 'modelport[bench]', or pass --mlflow-python)")
    port = free_port()
    (tmp / "hello.py").write_text(HELLO)
    servers.append(("hello-world", [python, "-m", "uvicorn", "hello:app", "--port", str(port),
                                    "--workers", str(args.workers), "--no-access-log",
                                    "--log-level", "warning"],
                    f"http://127.0.0.1:{port}", {}, str(tmp)))
    print(f"load: {'wrk -t2 -c' + str(args.connections) if shutil.which('wrk') else 'python'}"
          f", {args.seconds:g} s per measurement, {args.workers} workers per server",
          flush=True)
    started: list[Server] = []
    results: dict[tuple[str, int], dict] = {}
    try:
        for name, cmd, url, env, cwd in servers:
            port = int(url.rsplit(":", 1)[1])
            ready = "/ping" if name != "hello-world" else "/"
            started.append(Server(name, cmd, port, ready, env, cwd))
        # rounds interleave the servers, so a change in the machine's background load
        # hits all of them alike; the median round is reported
        runs: dict[tuple[str, int], list[dict]] = {}
        for i in range(args.rounds):
            for server in started:
                for rows, body in bodies.items():
                    r = measure(server, "/invocations", body, args, tmp)
                    runs.setdefault((server.name, rows), []).append(r)
                    print(f"  round {i + 1}: {server.name:12} {rows:>3} row(s): {r['rps']:9.0f} "
                          f"req/s  p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms", flush=True)
    finally:
        for server in started:
            server.stop()
    for key, found in runs.items():
        found.sort(key=lambda r: r["rps"])
        median = dict(found[len(found) // 2])
        median["errors"] = sum(r["errors"] for r in found)
        median["rss_mb"] = max(r["rss_mb"] for r in found)
        results[key] = median

    print()
    print("| server | rows/request | req/s | rows/s | p50 ms | p99 ms | non-200 | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, rows), r in results.items():
        print(f"| {name} | {rows} | {r['rps']:,.0f} | {r['rps'] * rows:,.0f} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['errors']} | {r['rss_mb']:.0f} |")
    print()
    for rows in bodies:
        mp = results.get(("modelport", rows))
        ml = results.get(("mlflow", rows))
        hw = results.get(("hello-world", rows))
        if mp and ml:
            print(f"{rows:>3} row(s): modelport/mlflow req/s {mp['rps'] / ml['rps']:.1f}x "
                  f"(goal >= 30x for 1 row); p99 modelport/mlflow "
                  f"{mp['p99'] / ml['p99']:.3f} (goal <= 0.1)")
        if mp and hw:
            print(f"{rows:>3} row(s): modelport/hello-world req/s "
                  f"{100 * mp['rps'] / hw['rps']:.0f}% (goal >= 40% for 1 row)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # run as a script, this folder comes first on sys.path and this file's name would hide
    # the standard library's http package from httpx, uvicorn and the rest
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    main()
