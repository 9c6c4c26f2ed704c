"""The embedded scheduler: schedules and run history in the registry database, the
missed-run policy, and two scheduler processes that run each due job exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, update

from modelport.datasets import churn
from modelport.errors import UserError
from modelport.io import write_table
from modelport.registry import Registry
from modelport.registry import schema as S
from modelport.train import schedule
from modelport.train.schedule import Schedule, Scheduler, check_cron, next_after, plan

T0 = datetime(2026, 3, 1, 3, 0, 0, tzinfo=UTC)


def plain_spec(folder: Path, rows: int = 400) -> Path:
    """A retrain spec without a search: a small refit, a few seconds per run."""
    data = write_table(churn.generate(rows, seed=7, drift=0.3), folder / "fresh.parquet")
    spec = {"name": "churn", "data": {"source": str(data), "target": "churned",
                                      "id": "customer_id"},
            "model": {"params": {"max_iter": 20}}, "formats": ["joblib"]}
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rules_file(folder: Path) -> Path:
    """Monitoring rules over a prediction log that does not exist: every check fails, and
    the failure is what the run history must keep."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"model": "churn@production",
                                    "log": "sqlite:///no-logs.db#predictions",
                                    "rules": ["psi > 0.2"]}))
    return path


def test_cron_expressions():
    assert check_cron("0  3 * * *") == "0 3 * * *"
    assert next_after("0 3 * * *", T0) == T0 + timedelta(days=1)
    assert next_after("*/10 * * * * *", T0) == T0 + timedelta(seconds=10)
    assert next_after("@hourly", T0) == T0 + timedelta(hours=1)
    for bad in ("0 3 * *", "61 * * * *", "every day", "* * * * * * *"):
        with pytest.raises(UserError, match="bad cron expression"):
            check_cron(bad)


def make(missed: str, due: datetime, cron: str = "*/10 * * * * *", grace: float = 5) -> Schedule:
    return Schedule(name="s", kind="check", path="/x", cron=cron, missed=missed, grace_s=grace,
                    timeout_s=60, next_run_at=due, created_at=due)


@pytest.mark.parametrize("missed", ["skip", "once", "all"])
def test_an_occurrence_on_time_runs_whatever_the_policy(missed):
    planned = plan(make(missed, T0), T0 + timedelta(seconds=2), busy=False)
    assert planned == (T0, T0 + timedelta(seconds=10), "running", {})


def test_missed_runs_follow_the_policy():
    now = T0 + timedelta(seconds=95)  # due at :00, :10 ... :90 — ten occurrences missed
    due, nxt, status, note = plan(make("skip", T0), now, busy=False)
    assert (due, nxt, status) == (T0 + timedelta(seconds=90), T0 + timedelta(seconds=100),
                                  "skipped")
    assert note["missed"] == 10
    due, nxt, status, note = plan(make("once", T0), now, busy=False)
    assert (due, nxt, status, note["missed"]) == (T0 + timedelta(seconds=90),
                                                  T0 + timedelta(seconds=100), "running", 10)
    due, nxt, status, note = plan(make("all", T0), now, busy=False)
    assert (due, nxt, status) == (T0, T0 + timedelta(seconds=10), "running")
    assert note["late_s"] == 95


def test_a_run_still_going_skips_the_next_occurrence_or_waits():
    now = T0 + timedelta(seconds=1)
    due, nxt, status, note = plan(make("once", T0), now, busy=True)
    assert (due, status, note["reason"]) == (T0, "skipped", "the previous run is still running")
    assert plan(make("all", T0), now, busy=True)[0] is None


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the command line in this process as ``modelport`` does; (exit code, output)."""
    from modelport.cli import main

    argv, sys.argv = sys.argv, ["modelport", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out + err


def test_schedule_commands(tmp_path, capsys):
    spec, rules = plain_spec(tmp_path), rules_file(tmp_path)
    code, out = cli(capsys, "schedule", "add", "nightly", "--spec", str(spec), "--cron",
                    "0 3 * * *", "--json")
    assert code == 0, out
    assert json.loads(out)["kind"] == "retrain"
    assert cli(capsys, "schedule", "add", "drift", "--check", str(rules), "--cron", "@hourly",
               "--missed", "skip")[0] == 0
    listed = json.loads(cli(capsys, "schedule", "list", "--json")[1])
    assert [(s["name"], s["kind"], s["missed"]) for s in listed] == [
        ("drift", "check", "skip"), ("nightly", "retrain", "once")]
    # mistakes exit 2 with one line naming the input
    for args, message in [
        (["nightly", "--spec", str(spec), "--cron", "0 3 * * *"], "exists"),
        (["x", "--spec", str(spec), "--cron", "0 3 * *"], "bad cron expression"),
        (["x", "--spec", str(tmp_path / "none.yaml"), "--cron", "@daily"], "no such file"),
        (["x", "--spec", str(spec), "--check", str(rules), "--cron", "@daily"], "exactly one"),
        (["x", "--check", str(rules), "--cron", "@daily", "--missed", "twice"], "skip, once"),
    ]:
        code, out = cli(capsys, "schedule", "add", *args)
        assert code == 2 and message in out and len(out.strip().splitlines()) == 1, (args, out)
    assert cli(capsys, "schedule", "remove", "drift")[0] == 0
    code, out = cli(capsys, "schedule", "remove", "drift")
    assert code == 2 and "no schedule named 'drift'" in out
    assert [s["name"] for s in schedule.list_schedules()] == ["nightly"]


def test_missed_runs_after_a_restart_and_lost_leases(tmp_path):
    reg = Registry()
    rules = rules_file(tmp_path)
    for name, missed in (("skipper", "skip"), ("catcher", "once")):
        schedule.add(name, check=rules, cron="* * * * *", missed=missed, grace_s=5)
    past = datetime.now(UTC) - timedelta(minutes=30)
    with S.write_txn(reg.engine) as conn:
        conn.execute(update(S.schedules).values(next_run_at=past))
        # a run whose scheduler died long ago
        conn.execute(S.schedule_runs.insert().values(
            schedule="catcher", due_at=past - timedelta(days=1), status="running",
            owner="gone:1", lease_until=past, started_at=past))
    before = datetime.now(UTC)
    stats = Scheduler(max_jobs=2).run(once=True)
    assert stats["lost"] == 1 and stats["skipped"] == 1 and stats["started"] == 1
    runs = {r["schedule"] + ":" + r["status"]: r for r in schedule.history()}
    assert runs["skipper:skipped"]["result"]["missed"] >= 30
    ran = next(r for r in schedule.history("catcher", with_log=True) if r["owner"] != "gone:1")
    assert ran["result"]["missed"] >= 30 and ran["result"]["policy"] == "once"
    assert ran["status"] == "failed" and ran["exit_code"] != 0 and ran["log"]
    assert schedule.history("catcher")[-1]["status"] == "lost"
    # the missed runs are behind: each next run is after the pass began (not "after now",
    # which an every-minute schedule passes whenever the pass crosses a minute)
    for s in schedule.list_schedules():
        assert datetime.fromisoformat(s["next_run_at"]) > before


def scheduler_process(env: dict, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "modelport", "scheduler", "run", "--for", str(seconds),
         "--poll", "0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_schedulers_run_each_due_job_exactly_once(tmp_path, backend, request,
                                                     monkeypatch):
    if backend == "postgresql":
        monkeypatch.setenv("MODELPORT_REGISTRY", request.getfixturevalue("postgres_url"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    reg = Registry()
    schedule.add("retrain", spec=plain_spec(tmp_path), cron="*/4 * * * * *", registry=reg)
    schedule.add("check", check=rules_file(tmp_path), cron="*/2 * * * * *", registry=reg)
    started = datetime.now(UTC)
    procs = [scheduler_process(env, 10) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]

    with reg.engine.connect() as conn:
        runs = conn.execute(select(S.schedule_runs).order_by(S.schedule_runs.c.id)
                            ).mappings().all()
    assert all(r["status"] != "running" for r in runs)
    for name, step in (("retrain", 4), ("check", 2)):
        mine = [r for r in runs if r["schedule"] == name]
        dues = sorted(schedule._utc(r["due_at"]) for r in mine)
        # every occurrence from the first on has exactly one row: none twice, none lost
        assert len(dues) == len(set(dues)) >= 2, (name, dues)
        assert all((b - a).total_seconds() == step for a, b in zip(dues, dues[1:], strict=False)), dues
        assert dues[0] <= started + timedelta(seconds=step + 2)
    retrains = [r for r in runs if r["schedule"] == "retrain" and r["status"] != "skipped"]
    assert retrains and all(r["status"] == "succeeded" for r in retrains), retrains
    # each retrain that ran registered exactly one version: no job ran twice
    versions = [v.version for v in reg.versions("churn")]
    assert sorted(r["result"]["challenger"]["version"] for r in retrains) == versions
    checks = [r for r in runs if r["schedule"] == "check" and r["status"] != "skipped"]
    assert checks and all(r["log"] or r["result"] for r in checks)
    owners = {r["owner"] for r in runs}
    assert 1 <= len(owners) <= 2


def processes_of_run(run_id: int) -> list[int]:
    """Processes started for a scheduled run (they carry its id in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"MODELPORT_SCHEDULE_RUN={run_id}".encode() in environ:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_killed_scheduler_loses_its_run_and_its_job(tmp_path):
    import signal
    import time

    spec = plain_spec(tmp_path)
    slow = yaml.safe_load(spec.read_text())
    slow["automl"] = {"engine": "optuna", "time_budget_s": 60, "estimators": ["lr", "hgb"]}
    spec.write_text(yaml.safe_dump(slow))
    schedule.add("slow", spec=spec, cron="* * * * * *")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    doomed = subprocess.Popen([sys.executable, "-m", "modelport", "scheduler", "run", "--lease",
                               "2", "--poll", "0.2"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [r for r in schedule.history("slow") if r["status"] == "running"]
            if running and processes_of_run(running[0]["id"]):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the scheduler never started the job")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    run_id = running[0]["id"]
    schedule.remove("slow")  # nothing new to claim: the next scheduler only reaps
    time.sleep(2.5)  # the lease runs out
    stats = Scheduler().run(once=True)
    assert stats["lost"] == 1
    lost = schedule.history("slow")[0]
    assert (lost["id"], lost["status"]) == (run_id, "lost")
    for _ in range(50):  # the job died with its scheduler
        if not processes_of_run(run_id):
            break
        time.sleep(0.1)
    assert processes_of_run(run_id) == []
    assert Registry().list_models() == []  # the killed retrain registered nothing
