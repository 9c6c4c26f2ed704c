"""Schedules and their runs in the registry database: the SQL behind the scheduler.

:class:`ScheduleRecords` is part of :class:`~modelport.registry.Registry`; the scheduler
(:mod:`modelport.train.schedule`) decides what runs when, and keeps its state only here
(tables ``mp_schedules`` and ``mp_schedule_runs``), so schedulers on several machines
sharing one registry see one truth. Rows come back as read-only mappings of column name to
value; times are UTC (SQLite gives them back naive).

Two writes carry the scheduler's guarantees: :meth:`ScheduleRecords.claim_schedule_run`
moves a schedule on and inserts its run row in one write transaction, refusing a schedule
whose claim counter changed since it was read; :meth:`ScheduleRecords.renew_schedule_runs`
renews a scheduler's leases and marks runs whose lease ran out as lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from modelport.registry import schema as S

#: what a claim's plan gives for a schedule row and whether its previous run still runs:
#: (occurrence due, next due time, run status, note), occurrence None when it must wait
Plan = tuple[datetime | None, datetime | None, str | None, dict | None]


class ScheduleRecords:
    """The registry's schedule rows and run rows (mixed into ``Registry``)."""

    engine: Engine

    # -- schedules ------------------------------------------------------------------------

    def save_schedule(self, name: str, values: Mapping[str, Any], *, replace: bool,
                      created_by: str | None, now: datetime) -> bool:
        """Store schedule ``name`` with ``values`` (its columns but name, claims and
        creation); False, writing nothing, when it exists and ``replace`` is not set. A
        replaced schedule keeps its history, and its claim counter moves on so that a
        scheduler holding the old row does not claim it."""
        with S.write_txn(self.engine) as conn:
            exists = conn.execute(select(S.schedules.c.name).where(S.schedules.c.name == name)
                                  ).first()
            if exists and not replace:
                return False
            if exists:
                conn.execute(update(S.schedules).where(S.schedules.c.name == name).values(
                    claims=S.schedules.c.claims + 1, **values))
            else:
                conn.execute(insert(S.schedules).values(name=name, claims=0, created_at=now,
                                                        created_by=created_by, **values))
        return True

    def schedule(self, name: str) -> RowMapping | None:
        """The row of schedule ``name``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(S.schedules).where(S.schedules.c.name == name)
                                ).mappings().first()

    def schedule_names(self) -> list[str]:
        """The names of every schedule, for messages naming the known ones."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(S.schedules.c.name)).scalars().all())

    def schedules_with_last_run(self) -> list[tuple[RowMapping, RowMapping | None]]:
        """Every schedule row, by name, with the row of its latest run (None before any)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(S.schedules).order_by(S.schedules.c.name)
                                ).mappings().all()
            return [(row, conn.execute(select(S.schedule_runs).where(
                S.schedule_runs.c.schedule == row["name"])
                .order_by(S.schedule_runs.c.id.desc()).limit(1)).mappings().first())
                for row in rows]

    def delete_schedule(self, name: str) -> bool:
        """Delete schedule ``name`` (its run rows stay); False when there is none."""
        with S.write_txn(self.engine) as conn:
            return bool(conn.execute(delete(S.schedules).where(S.schedules.c.name == name)
                                     ).rowcount)

    def next_schedule_due(self) -> datetime | None:
        """When the soonest schedule is next due (None without schedules)."""
        with self.engine.connect() as conn:
            return conn.execute(select(S.schedules.c.next_run_at)
                                .order_by(S.schedules.c.next_run_at).limit(1)).scalar()

    def due_schedules(self, now: datetime) -> list[RowMapping]:
        """The rows of schedules due at ``now``, soonest first."""
        with self.engine.connect() as conn:
            return list(conn.execute(select(S.schedules).where(S.schedules.c.next_run_at <= now)
                                     .order_by(S.schedules.c.next_run_at)).mappings().all())

    # -- runs -----------------------------------------------------------------------------

    def schedule_runs(self, name: str | None = None, limit: int = 20) -> list[RowMapping]:
        """The latest run rows (of schedule ``name``, or of all), newest first."""
        q = select(S.schedule_runs).order_by(S.schedule_runs.c.id.desc()).limit(limit)
        if name:
            q = q.where(S.schedule_runs.c.schedule == name)
        with self.engine.connect() as conn:
            return list(conn.execute(q).mappings().all())

    def claim_schedule_run(self, name: str, seen_claims: int,
                           plan: Callable[[Mapping[str, Any], bool], Plan], *, owner: str,
                           now: datetime, lease_until: datetime
                           ) -> tuple[int, Mapping[str, Any], Plan] | None:
        """Claim the due occurrence of schedule ``name`` for ``owner``: in one write
        transaction, read the schedule (locking its row on PostgreSQL), ask ``plan(row,
        busy)`` what to run (``busy``: a run of it is still running), move its
        ``next_run_at`` on and insert the run row, ``running`` under a lease until
        ``lease_until`` or already finished (``skipped``).

        Returns ``(run id, schedule row, plan)``, or None when nothing was claimed: the
        schedule was removed, replaced or claimed since it was read (its claim counter is
        no longer ``seen_claims``), the plan says wait, or the occurrence already has its
        run row.
        """
        try:
            with S.write_txn(self.engine) as conn:
                q = select(S.schedules).where(S.schedules.c.name == name)
                if conn.dialect.name == "postgresql":
                    q = q.with_for_update()
                row = conn.execute(q).mappings().first()
                if row is None or (row["claims"] or 0) != seen_claims:
                    return None
                busy = conn.execute(select(S.schedule_runs.c.id).where(
                    S.schedule_runs.c.schedule == name,
                    S.schedule_runs.c.status == "running")).first() is not None
                planned = plan(row, busy)
                due, nxt, status, note = planned
                if due is None:
                    return None
                running = status == "running"
                conn.execute(update(S.schedules).where(S.schedules.c.name == name)
                             .values(next_run_at=nxt, claims=S.schedules.c.claims + 1))
                run_id = conn.execute(insert(S.schedule_runs).values(
                    schedule=name, due_at=due, status=status, owner=owner,
                    lease_until=lease_until if running else None,
                    started_at=now if running else None,
                    finished_at=None if running else now,
                    result=note or None,
                )).inserted_primary_key[0]
        except IntegrityError:
            return None  # the occurrence already has its run row
        return run_id, row, planned

    def expired_schedule_runs(self, now: datetime) -> bool:
        """Whether a run is still marked running though its lease ended before ``now``."""
        with self.engine.connect() as conn:
            return conn.execute(select(S.schedule_runs.c.id).where(
                S.schedule_runs.c.status == "running", S.schedule_runs.c.lease_until < now
            ).limit(1)).first() is not None

    def renew_schedule_runs(self, run_ids: Sequence[int], lease_until: datetime, *,
                            expire_before: datetime | None = None,
                            expired_result: dict | None = None) -> int:
        """In one write transaction, renew the leases of the running runs ``run_ids`` to
        ``lease_until`` and, given ``expire_before``, mark every running run whose lease
        ended before it as ``lost`` with ``expired_result``; return how many were lost."""
        lost = 0
        with S.write_txn(self.engine) as conn:
            if run_ids:
                conn.execute(update(S.schedule_runs).where(
                    S.schedule_runs.c.id.in_(list(run_ids)),
                    S.schedule_runs.c.status == "running").values(lease_until=lease_until))
            if expire_before is not None:
                lost = conn.execute(update(S.schedule_runs).where(
                    S.schedule_runs.c.status == "running",
                    S.schedule_runs.c.lease_until < expire_before
                ).values(status="lost", finished_at=expire_before, result=expired_result
                         )).rowcount
        return lost

    def finish_schedule_run(self, run_id: int, status: str, exit_code: int | None,
                            result: dict | None, log: str) -> None:
        """Record how run ``run_id`` ended and release its lease."""
        with S.write_txn(self.engine) as conn:
            conn.execute(update(S.schedule_runs).where(S.schedule_runs.c.id == run_id)
                         .values(status=status, exit_code=exit_code, result=result,
                                 finished_at=datetime.now(UTC), lease_until=None, log=log))
