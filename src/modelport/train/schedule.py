"""An embedded scheduler: retrain specs and monitoring checks on cron schedules.

Schedules, their run history and the leases that keep two schedulers from running one
job twice live in the registry database (:mod:`modelport.registry.schedules`), so any
number of ``modelport scheduler run`` processes, on one machine or several sharing a
PostgreSQL registry, share the work and survive restarts.

Two kinds of job: ``retrain`` runs ``modelport retrain SPEC --json``; ``check`` runs
:func:`modelport.monitor.alerts.run_check_file` on a rules file. Each run is a child
process whose exit code, JSON result and log (its output, the last 64 KiB) are kept in its
run row. Exit code 0 or 3 (a retrain that kept the champion, a check whose alert fired)
is a run that succeeded.

Exactly once: a scheduler claims a due occurrence in one write transaction that moves the
schedule's ``next_run_at`` on and inserts the run row; a schedule row whose claim counter
changed since it was read has been claimed by another scheduler, and the run row is unique
per (schedule, occurrence). While it runs a job, the scheduler renews the run's lease
(``lease_until``); a run whose lease ran out belongs to a scheduler that died and is
marked ``lost`` (on Linux the job's process is killed with its scheduler).

Cron expressions: five fields (``0 3 * * *``), ``@hourly``/``@daily``/``@weekly``/
``@monthly``, or six fields with seconds first (``*/10 * * * * *``). Times are UTC.

Missed runs (the scheduler was down, or the job ran late, for longer than the schedule's
grace period): ``skip`` records the latest missed occurrence as skipped and waits for the
next; ``once`` (default) runs the latest missed occurrence once; ``all`` runs every missed
occurrence, one after another. A job whose previous run is still going is skipped
(``all``: waits).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from modelport.errors import NotFound, UserError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import FrameType

    from sqlalchemy import RowMapping

    from modelport.registry import Registry
    from modelport.registry.schedules import Plan

KINDS = ("retrain", "check")
MISSED = ("skip", "once", "all")
LEASE_S = 30.0
LOG_CHARS = 65_536
#: occurrences counted when looking back over missed runs
MAX_LOOKBACK = 10_000
log = logging.getLogger("modelport.scheduler")


def _now() -> datetime:
    return datetime.now(UTC)


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite keeps naive UTC
        value = value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    value = _utc(value)
    return value.isoformat() if value is not None else None


# -- cron ------------------------------------------------------------------------------

def check_cron(expr: str) -> str:
    """``expr`` if it is a cron expression modelport understands, else a UserError."""
    from croniter import croniter

    text = " ".join(str(expr).split())
    fields = len(text.split())
    valid = (croniter.is_valid(text, second_at_beginning=True) if fields == 6
             else fields == 5 and croniter.is_valid(text) or
             fields == 1 and text.startswith("@") and croniter.is_valid(text))
    if not valid:
        raise UserError(f"bad cron expression {expr!r}: use five fields (minute hour day "
                        "month weekday, e.g. '0 3 * * *'), @daily/@hourly, or six with "
                        "seconds first ('*/10 * * * * *')")
    return text


def next_after(cron: str, when: datetime) -> datetime:
    """The first occurrence of ``cron`` strictly after ``when`` (UTC)."""
    from croniter import croniter

    it = croniter(cron, _utc(when), second_at_beginning=len(cron.split()) == 6)
    return _utc(it.get_next(datetime))


# -- schedules -------------------------------------------------------------------------

@dataclass
class Schedule:
    """A job on a cron schedule, as stored."""

    name: str
    kind: str
    path: str
    cron: str
    missed: str
    grace_s: float
    timeout_s: float
    next_run_at: datetime
    created_at: datetime
    created_by: str | None = None
    claims: int = 0

    @classmethod
    def from_row(cls, row: RowMapping | Mapping[str, Any]) -> Schedule:
        return cls(name=row["name"], kind=row["kind"], path=row["path"], cron=row["cron"],
                   missed=row["missed"], grace_s=row["grace_s"], timeout_s=row["timeout_s"],
                   next_run_at=_utc(row["next_run_at"]), created_at=_utc(row["created_at"]),
                   created_by=row["created_by"], claims=row["claims"] or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "path": self.path, "cron": self.cron,
                "missed": self.missed, "grace_s": self.grace_s, "timeout_s": self.timeout_s,
                "next_run_at": _iso(self.next_run_at), "created_at": _iso(self.created_at),
                "created_by": self.created_by}

    def command(self) -> list[str]:
        """The child process that runs one occurrence."""
        if self.kind == "retrain":
            return [sys.executable, "-m", "modelport", "retrain", self.path, "--json"]
        return [sys.executable, "-m", "modelport.train.schedule", "check", self.path]


def _registry(registry: Registry | None) -> Registry:
    from modelport.registry import Registry

    return registry or Registry()


def add(name: str, *, spec: str | Path | None = None, check: str | Path | None = None,
        cron: str, missed: str = "once", grace_s: float = 60.0, timeout_s: float = 3600.0,
        replace: bool = False, registry: Registry | None = None) -> Schedule:
    """Schedule a retrain ``spec`` or a monitoring ``check`` file (exactly one) on ``cron``.

    The file is checked now and stored by absolute path. ``replace`` overwrites a schedule of the same name, keeping its history.
    """
    from modelport.registry import current_user
    from modelport.uri import check_name

    check_name(name)
    if (spec is None) == (check is None):
        raise UserError("give exactly one of --spec SPEC.yaml (retrain) or --check RULES.yaml "
                        "(monitoring check)")
    kind = "retrain" if spec is not None else "check"
    source = spec if spec is not None else check
    assert source is not None  # exactly one was given
    path = Path(source).absolute()
    if not path.is_file():
        raise UserError(f"cannot schedule {path}: no such file")
    if kind == "retrain":
        from modelport.train.spec import load_spec

        load_spec(path)
    else:
        try:
            from modelport.monitor.alerts import load_rules_file
        except ImportError:  # checked when the job runs
            pass
        else:
            load_rules_file(path)
    cron = check_cron(cron)
    if missed not in MISSED:
        raise UserError(f"unknown missed-run policy {missed!r}: use skip, once or all")
    if grace_s < 0 or timeout_s <= 0:
        raise UserError("--grace must be >= 0 and --timeout > 0 seconds")
    now = _now()
    values = dict(kind=kind, path=str(path), cron=cron, missed=missed, grace_s=float(grace_s),
                  timeout_s=float(timeout_s), next_run_at=next_after(cron, now))
    reg = _registry(registry)
    if not reg.save_schedule(name, values, replace=replace, created_by=current_user(), now=now):
        raise UserError(f"a schedule named {name!r} exists; remove it first or pass "
                        "--replace")
    return get(name, registry=reg)


def get(name: str, *, registry: Registry | None = None) -> Schedule:
    reg = _registry(registry)
    row = reg.schedule(name)
    if row is None:
        names = reg.schedule_names()
        known = f" (known: {', '.join(names)})" if names else " (there are none)"
        raise NotFound(f"no schedule named {name!r}{known}")
    return Schedule.from_row(row)


def list_schedules(*, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Every schedule with its last run's status."""
    out = []
    for row, last in _registry(registry).schedules_with_last_run():
        d = Schedule.from_row(row).to_dict()
        d["last_run"] = _run_dict(last, with_log=False) if last else None
        out.append(d)
    return out


def remove(name: str, *, registry: Registry | None = None) -> None:
    """Delete a schedule (its run history stays)."""
    reg = _registry(registry)
    if not reg.delete_schedule(name):
        get(name, registry=reg)  # raises NotFound with the known names


def history(name: str | None = None, *, limit: int = 20, with_log: bool = False,
            registry: Registry | None = None) -> list[dict[str, Any]]:
    """The latest runs (of one schedule, or all), newest first."""
    rows = _registry(registry).schedule_runs(name, limit)
    return [_run_dict(r, with_log) for r in rows]


def _run_dict(row: RowMapping, with_log: bool) -> dict[str, Any]:
    d = {"id": row["id"], "schedule": row["schedule"], "due_at": _iso(row["due_at"]),
         "status": row["status"], "owner": row["owner"],
         "started_at": _iso(row["started_at"]), "finished_at": _iso(row["finished_at"]),
         "exit_code": row["exit_code"], "result": row["result"]}
    if with_log:
        d["log"] = row["log"]
    return d


# -- the scheduler ---------------------------------------------------------------------

@dataclass
class _Job:
    run_id: int
    schedule: Schedule
    due_at: datetime
    note: dict | None = None  # how it was claimed: late, missed occurrences
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None


class Scheduler:
    """Claims due occurrences of every schedule and runs them as child processes.

    ``max_jobs`` runs at once in this scheduler; ``poll_s`` is how often it looks for due
    work (it also wakes for the next occurrence it knows of); ``lease_s`` is how long a
    run it stops renewing stays its own.
    """

    def __init__(self, registry: Registry | None = None, *, max_jobs: int = 1,
                 poll_s: float = 1.0, lease_s: float = LEASE_S) -> None:
        if max_jobs < 1 or poll_s <= 0 or lease_s <= 0:
            raise UserError("--max-jobs must be >= 1 and --poll a positive number of seconds")
        self.registry = _registry(registry)
        self.max_jobs, self.poll_s, self.lease_s = max_jobs, poll_s, lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.jobs: dict[int, _Job] = {}
        self.lock = threading.Lock()
        self.stopping: str | None = None
        self.renewed: datetime | None = None  # when this scheduler last renewed its leases
        self.stats = {"started": 0, "succeeded": 0, "failed": 0, "skipped": 0, "lost": 0}

    # the loop ----------------------------------------------------------------------------

    def run(self, *, duration_s: float | None = None, once: bool = False) -> dict[str, int]:
        """Run until stopped (SIGTERM/SIGINT), for ``duration_s`` seconds, or — ``once`` —
        until what is due now has run. Returns counts of what happened."""
        ends = time.monotonic() + duration_s if duration_s is not None else None
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        for s in previous:
            signal.signal(s, self._signalled)
        log.info("scheduler %s started", self.owner)
        draining = False  # no more claims; renewing leases until the running jobs end
        try:
            while not self.stopping:
                now = _now()
                self._renew_and_reap(now)
                if not draining:
                    self._claim_due(now)
                    draining = once or (ends is not None and time.monotonic() >= ends)
                if draining:
                    with self.lock:
                        if not self.jobs:
                            break
                    time.sleep(min(self.poll_s, self.lease_s / 3))
                    continue
                wait = min(self.poll_s, self.lease_s / 3, self._until_next(now))
                if ends is not None:
                    wait = min(wait, ends - time.monotonic())
                time.sleep(max(wait, 0.05))
        finally:
            if self.stopping:
                self._kill_all(f"scheduler stopped ({self.stopping})")
            self._wait_all()
            for s, handler in previous.items():
                signal.signal(s, handler)
        log.info("scheduler %s stopped: %s", self.owner, self.stats)
        return dict(self.stats)

    def _signalled(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = signal.Signals(signum).name

    def _until_next(self, now: datetime) -> float:
        soonest = self.registry.next_schedule_due()
        if soonest is None:
            return self.poll_s
        return (_utc(soonest) - now).total_seconds()

    # leases --------------------------------------------------------------------------------

    def _renew_and_reap(self, now: datetime) -> None:
        """Renew the leases of this scheduler's runs (every third of a lease) and mark runs
        whose lease ran out as lost; the registry is written only when there is work."""
        with self.lock:
            mine = list(self.jobs)
        renew = mine and (self.renewed is None or
                          (now - self.renewed).total_seconds() >= self.lease_s / 3)
        stale = self.registry.expired_schedule_runs(now)
        if not renew and not stale:
            return
        lost = self.registry.renew_schedule_runs(
            mine if renew else (), now + timedelta(seconds=self.lease_s),
            expire_before=now if stale else None,
            expired_result={"error": "the scheduler running it stopped renewing its lease"})
        if renew:
            self.renewed = now
        if lost:
            self.stats["lost"] += lost
            log.warning("marked %d run(s) of a stopped scheduler as lost", lost)

    # claiming ------------------------------------------------------------------------------

    def _claim_due(self, now: datetime) -> None:
        for row in self.registry.due_schedules(now):
            with self.lock:
                if len(self.jobs) >= self.max_jobs:
                    return
            job = self._claim(Schedule.from_row(row), now)
            if job is not None:
                self._start(job)

    def _claim(self, seen: Schedule, now: datetime) -> _Job | None:
        """Claim ``seen``'s due occurrence: move ``next_run_at`` on and insert the run row in
        one transaction, or do nothing if another scheduler got there first."""
        claimed = self.registry.claim_schedule_run(
            seen.name, seen.claims, lambda row, busy: plan(Schedule.from_row(row), now, busy),
            owner=self.owner, now=now, lease_until=now + timedelta(seconds=self.lease_s))
        if claimed is None:  # removed, replaced or claimed meanwhile, or not yet due
            return None
        run_id, row, (due, _, status, note) = claimed
        assert due is not None  # a claim is of a due occurrence
        s = Schedule.from_row(row)
        if status == "skipped":
            self.stats["skipped"] += 1
            assert note is not None  # a skip says why
            log.info("%s: skipped the run due %s (%s)", s.name, _iso(due), note.get("reason"))
            return None
        return _Job(run_id=run_id, schedule=s, due_at=due, note=note or None)

    # running -------------------------------------------------------------------------------

    def _start(self, job: _Job) -> None:
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["MODELPORT_SCHEDULE_RUN"] = str(job.run_id)
        try:
            job.process = subprocess.Popen(
                job.schedule.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        except OSError as exc:
            self._finish(job, "failed", None, {"error": f"cannot start: {exc}"}, "")
            return
        self.stats["started"] += 1
        log.info("%s: running the occurrence due %s (run %d)", job.schedule.name,
                 _iso(job.due_at), job.run_id)
        job.thread = threading.Thread(target=self._wait, args=(job,), daemon=True)
        with self.lock:
            self.jobs[job.run_id] = job
        job.thread.start()

    def _wait(self, job: _Job) -> None:
        process = job.process
        assert process is not None  # started by _start
        try:
            out, err = process.communicate(timeout=job.schedule.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill(process)
            out, err = process.communicate()
            timed_out = True
        text_out = out.decode("utf-8", "replace")
        text_err = err.decode("utf-8", "replace")
        result = _parse_json(text_out)
        code = process.returncode
        if timed_out:
            status = "failed"
            result = {**(result or {}), "error": f"timed out after {job.schedule.timeout_s:g} s"}
        elif self.stopping and code and code < 0:
            status = "failed"
            result = {**(result or {}), "error": f"scheduler stopped ({self.stopping})"}
        else:
            status = _status(code)
        self._finish(job, status, code, result, text_err + ("" if result else text_out))

    def _finish(self, job: _Job, status: str, code: int | None, result: dict | None,
                output: str) -> None:
        if job.note:
            result = {**job.note, **(result or {})}
        self.registry.finish_schedule_run(job.run_id, status, code, result,
                                          output[-LOG_CHARS:])
        self.stats["succeeded" if status == "succeeded" else "failed"] += 1
        log.info("%s: run %d %s (exit %s)", job.schedule.name, job.run_id, status, code)
        with self.lock:
            self.jobs.pop(job.run_id, None)

    def _kill_all(self, reason: str) -> None:
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            if job.process is not None and job.process.poll() is None:
                log.warning("%s: stopping run %d: %s", job.schedule.name, job.run_id, reason)
                _kill(job.process)

    def _wait_all(self) -> None:
        with self.lock:
            threads = [j.thread for j in self.jobs.values() if j.thread is not None]
        for t in threads:
            t.join()


def plan(s: Schedule, now: datetime, busy: bool) -> Plan:
    """(occurrence, next due time, run status, note) for a due schedule, following its
    missed-run policy; occurrence None when it must wait."""
    due = s.next_run_at
    if due > now:
        return None, None, None, None
    late = (now - due).total_seconds() > s.grace_s
    if busy:
        if s.missed == "all":
            return None, None, None, None
        return due, next_after(s.cron, due), "skipped", {
            "reason": "the previous run is still running"}
    if not late or s.missed == "all":
        return due, next_after(s.cron, due), "running", ({"late_s": round(
            (now - due).total_seconds(), 1)} if late else {})
    # missed: count the occurrences up to now and keep the latest
    latest, missed = due, 1
    while missed < MAX_LOOKBACK:
        following = next_after(s.cron, latest)
        if following > now:
            break
        latest, missed = following, missed + 1
    note = {"missed": missed, "policy": s.missed}
    if s.missed == "skip":
        note["reason"] = f"missed {missed} occurrence(s) by more than the grace period"
        return latest, next_after(s.cron, now), "skipped", note
    return latest, next_after(s.cron, now), "running", note


def _status(code: int | None) -> str:
    # 3 is a job that ran to its end with news: a retrain that kept the champion, a
    # check whose alert fired
    return "succeeded" if code in (0, 3) else "failed"


def _parse_json(text: str) -> dict | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = json.loads(text.splitlines()[-1])
        except ValueError:
            return None
    return value if isinstance(value, dict) else {"result": value}


def _die_with_parent() -> None:
    """In the child, before it runs: be killed when the scheduler dies. A run whose
    scheduler was killed is marked lost by another one, so it must not go on alone."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _check_main(path: str) -> int:
    """``python -m modelport.train.schedule check RULES.yaml``: one monitoring check, its
    result as JSON on standard output."""
    from modelport.monitor.alerts import run_check_file

    try:
        result = run_check_file(path)
    except UserError as exc:  # a mistake in the rules file: one line, as on the command line
        sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        sys.stderr.write(f"modelport: error: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    return int(result.get("exit_code") or 0) if isinstance(result, dict) else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "check":
        sys.exit("usage: python -m modelport.train.schedule check RULES.yaml")
    sys.exit(_check_main(sys.argv[2]))
