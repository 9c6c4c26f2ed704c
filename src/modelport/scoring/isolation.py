"""Isolating bad rows: a batch that fails because of some of its rows is split until they
are found, and every other row is scored exactly as it would be alone.

Any step of a surface can fail on a row: the checks, an enrichment query, the model
runtime, the lookup store, the prediction log. :func:`isolate` runs such a step on a
batch and, when it raises, on halves of it, down to single rows, so that ``k`` bad rows
among ``n`` cost about ``2k log2(n/k)`` extra calls and the good rows go through in as
few calls as possible. A failure that is not tied to rows (a database or broker that is
down, a lock timeout) is *transient* (:func:`is_transient`): it is raised at once, for the
surface to back off and retry the whole batch, losing and duplicating nothing.

:func:`score` is the scoring step every surface shares: checked columns in, the outputs of
the rows the model scored, and a :class:`~modelport.kernel.Reject` for each row it
raised on or gave a score that is not a number for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from modelport.kernel import Checked, Coded, Flag, Reject

T = TypeVar("T")

#: names of exception classes that mean "the service is unreachable or busy", whatever the
#: driver (psycopg, pymysql, sqlite3, SQLAlchemy, redis, pika, nats)
_TRANSIENT_NAMES = frozenset({
    "OperationalError", "InterfaceError", "DisconnectionError", "ConnectionError",
    "ConnectionClosed", "ConnectionClosedByBroker", "AMQPConnectionError", "StreamLostError",
    "ChannelClosedByBroker", "TimeoutError", "BusyLoadingError", "NoServersError",
    "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError",
    "SerializationFailure", "DeadlockDetected", "LockNotAvailable", "QueryCanceled",
    "AdminShutdown", "CannotConnectNow", "ReadOnlyError",
})
#: SQLite reports a busy database and a bad statement with the same class
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")
#: MySQL/MariaDB error numbers of lost or refused connections, lock waits and deadlocks
_MYSQL_TRANSIENT = frozenset({1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2014,
                              2055})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says a service is unreachable or busy rather than that a row is bad:
    connection failures, timeouts, deadlocks and lock conflicts, in any driver."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "connection_invalidated", False):
            return True
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        if type(exc).__name__ in _TRANSIENT_NAMES:
            origin = getattr(exc, "orig", None) or exc
            module = type(origin).__module__
            if module == "sqlite3":
                return any(w in str(origin).lower() for w in _SQLITE_TRANSIENT)
            if module.startswith("pymysql") and origin.args and isinstance(origin.args[0], int):
                # pymysql calls every server error it has no class for operational: only
                # lost connections, lock waits and deadlocks are
                return origin.args[0] in _MYSQL_TRANSIENT
            return True
        inner = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return False


def reason(exc: BaseException, limit: int = 500) -> str:
    """One line naming an exception: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return line[:limit]


def isolate(call: Callable[[np.ndarray], T], n: int, *,
            transient: Callable[[BaseException], bool] = is_transient,
            ) -> tuple[list[tuple[np.ndarray, T]], dict[int, BaseException]]:
    """Run ``call(positions)`` on rows ``0..n-1``, splitting on failure.

    Returns the successful calls as ``(positions, result)`` in row order and the exception
    of each row that failed alone. A transient exception (see :func:`is_transient`) is
    raised as it is: it says nothing about the rows.
    """
    done: list[tuple[np.ndarray, T]] = []
    failed: dict[int, BaseException] = {}
    stack = [np.arange(n)] if n else []
    while stack:
        rows = stack.pop()
        try:
            done.append((rows, call(rows)))
        except Exception as exc:  # noqa: BLE001 - any failure of a step on rows is isolated
            if transient(exc):
                raise
            if len(rows) == 1:
                failed[int(rows[0])] = exc
                continue
            half = len(rows) // 2
            stack.append(rows[half:])
            stack.append(rows[:half])
    return done, failed


@dataclass
class Outcome:
    """What scoring a batch gave: the outputs of the scored rows (in row order, at
    ``positions`` of the batch), a :class:`Reject` per row that was not scored, and the
    :class:`Flag` s of scored rows."""

    rows: int
    outputs: dict[str, np.ndarray]
    positions: np.ndarray
    rejects: dict[int, Reject] = field(default_factory=dict)
    flags: dict[int, list[Flag]] = field(default_factory=dict)

    @property
    def scored(self) -> int:
        return len(self.positions)

    def warnings(self) -> list[list[Flag]]:
        """The flags of each scored row, aligned with :attr:`outputs`."""
        return [self.flags.get(i, []) for i in self.positions.tolist()]

    def reject(self, rows: Iterable[int], why: Reject) -> None:
        """Take scored rows (positions of the batch) out: they failed a later step."""
        drop = {int(i) for i in rows}
        for i in drop:
            self.rejects.setdefault(i, why)
            self.flags.pop(i, None)
        keep = np.fromiter((int(p) not in drop for p in self.positions), dtype=bool,
                           count=len(self.positions))
        self.positions = self.positions[keep]
        self.outputs = {k: v[keep] for k, v in self.outputs.items()}


def score(run: Callable[[dict], dict[str, np.ndarray]], checked: Checked,
          empty: Callable[[], dict[str, np.ndarray]]) -> Outcome:
    """Score the rows of ``checked`` that passed the checks with ``run`` (a predictor's
    scoring of checked columns), isolating the rows the model raises on, and rejecting rows
    whose score is not a number (NaN or infinite). ``empty`` gives outputs of no rows."""
    if not checked.rejects and checked.rows:
        # the common case, a batch with nothing wrong, in one call and no bookkeeping
        try:
            outputs = run(checked.columns)
        except Exception:  # noqa: BLE001 - found again, row by row, below
            outputs = None
        if outputs is not None and not_finite(outputs).size == 0:
            return Outcome(checked.rows, outputs, np.arange(checked.rows), {},
                           checked.row_flags() if checked.flags else {})
    cols, kept = checked.kept()
    positions = np.arange(checked.rows) if kept is None else kept
    rejects = dict(checked.rejects)
    flags = checked.row_flags()
    n = len(positions)
    if n == 0:
        return Outcome(checked.rows, empty(), positions, rejects, flags)

    def call(rows: np.ndarray) -> dict[str, np.ndarray]:
        part = cols if len(rows) == n else {k: v[rows] for k, v in cols.items()}
        return run(part)

    # the model is no service: whatever it raises is tied to the rows it was given
    done, failed = isolate(call, n, transient=lambda exc: False)
    if len(done) == 1 and not failed:
        outputs = done[0][1]
        ok = np.arange(n)
    else:
        ok = np.concatenate([rows for rows, _ in done]) if done else np.zeros(0, np.int64)
        outputs = _concat([out for _, out in done], empty)
        order = np.argsort(ok, kind="stable")
        ok, outputs = ok[order], {k: v[order] for k, v in outputs.items()}
        for i, exc in failed.items():
            why = reason(exc)
            at = int(positions[i])
            rejects[at] = _explained("model_error", f"the model could not score this row "
                                     f"({why})", cols, i, flags.get(at), "NaN" in why)
    bad = not_finite(outputs)
    if bad.size:
        why = "the model gave a score that is not a number (NaN or infinite): a value it " \
              "has no default for is missing, or out of its reach"
        for j in bad.tolist():
            at = int(positions[ok[j]])
            rejects[at] = _explained("not_finite", why, cols, int(ok[j]), flags.get(at), True)
        keep = np.ones(len(ok), dtype=bool)
        keep[bad] = False
        ok, outputs = ok[keep], {k: v[keep] for k, v in outputs.items()}
    scored = positions[ok]
    for i in list(flags):
        if i in rejects:
            del flags[i]
    return Outcome(checked.rows, outputs, scored, rejects, flags)


def _explained(code: str, message: str, cols: dict, row: int, flags: list[Flag] | None,
               gaps: bool) -> Reject:
    """The reject of a row the model failed on, with what the checks saw in it: its values
    outside what training saw and, when the failure is about missing values (``gaps``),
    its empty fields; the field is the first of those."""
    missing = []
    if gaps:
        for name, values in cols.items():
            if isinstance(values, Coded):
                empty = values.codes[row] < 0
            else:
                v = values[row]
                empty = v.__class__ is not str and v != v
            if empty:
                missing.append(name)
    notes = [f.message for f in flags or ()]
    if missing:
        notes.append(f"{', '.join(repr(m) for m in missing)} "
                     f"{'is' if len(missing) == 1 else 'are'} missing, which the model may not "
                     "impute: send a value")
    fields = missing or [f.field for f in flags or ()]
    return Reject(fields[0] if fields else None, code, "; ".join([message, *notes]))


def not_finite(outputs: dict[str, Any]) -> np.ndarray:
    """Positions of rows whose probabilities or value are NaN or infinite."""
    bad = _NONE
    for key in ("proba", "value"):
        values = outputs.get(key)
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        if finite.all():  # one reduction for the common case
            continue
        rows = ~finite
        if rows.ndim == 2:
            rows = rows.any(axis=1)
        bad = np.union1d(bad, np.flatnonzero(rows))
    return bad


_NONE = np.zeros(0, dtype=np.int64)


def _concat(parts: list[dict[str, np.ndarray]],
            empty: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return empty()
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
