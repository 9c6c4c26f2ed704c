"""Installing, inspecting and removing trigger scoring on a table.

:func:`install` adds the score columns, creates the queue and enqueue triggers (worker
mode) or the compiled scoring function and trigger (SQL mode), and records what it created
in the database's ``modelport_triggers`` table, as data; :func:`uninstall` removes exactly
that, with statements rebuilt from the record (never statements read back from it);
:func:`status` reports each installation with its queue length and error count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.quoting.sql import identifier
from modelport.serve.trigger.db import Database, connect
from modelport.serve.trigger.spec import (
    EVENTS,
    IN_DATABASE,
    MAX_REASONS,
    META_TABLE,
    MODES,
    SCORE_TYPES,
    SUFFIXES,
    Installation,
    check_key_type,
)

if TYPE_CHECKING:
    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version
    from modelport.signature import Signature


def install(uri: str, db: str, *, table: str, key: str, output: str,
            on: list[str] | tuple[str, ...] = EVENTS, columns: list[str] | None = None,
            mode: str = "worker", upgrade: bool = False, backfill: bool = True,
            explain: int | str | None = None,
            registry: Registry | None = None) -> Installation:
    """Score rows of ``table`` in database ``db`` with model ``uri`` whenever they change.

    ``output`` names the score column; beside it go ``<output>_version`` and
    ``<output>_scored_at`` (and, in worker mode, ``<output>_status`` — ``ok`` or the reason
    a row could not be scored — and ``<output>_count``, how many times the row was
    scored). Columns that do not exist are added. ``on`` picks the events (``insert``,
    ``update``: an update re-scores only when a feature column changes). ``columns`` maps
    model inputs to table columns where their names differ (``input=column``; default:
    the table has the model's input names). ``mode`` is ``worker`` (a queue a
    ``modelport trigger run`` worker drains) or ``sql`` (the model compiled to SQL and run
    by the database itself). ``upgrade`` re-installs an existing installation, e.g. with
    the version an alias now points at. ``backfill`` scores the rows that have no score
    yet: worker mode queues them, SQL mode scores them during the install. ``explain``
    (SQL mode, linear models) writes each row's top reasons beside the score, in
    ``<output>_reason_1..`` (the input column) and ``<output>_contribution_1..``,
    measured from the registered sample's mean as every surface's reasons are.
    """
    from modelport.registry import Registry

    if mode not in MODES:
        raise UserError(f"unknown trigger mode {mode!r}: use worker, sql or native")
    events = _events(on)
    registry = registry or Registry()
    version = registry.get(uri)
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    k = _explain(explain, mode, signature)
    with connect(db) as conn:
        for what, name in (("--table", table), ("--key", key), ("--output-column", output)):
            identifier(name, conn.dialect, what)  # a name the database could not hold
        have = conn.columns(table)
        if not have:
            raise UserError(f"no table {table!r} in {_masked(db)}: create it first, or check "
                            "--table")
        if key not in have:
            raise UserError(f"table {table!r} has no column {key!r} for --key; it has: "
                            f"{', '.join(have)}")
        mapping = _mapping(columns, signature.names, have, table)
        old = conn.installation(table)
        if old is not None and not upgrade:
            raise UserError(f"table {table!r} is already scored by {old.model} "
                            f"({old.mode} mode): pass --upgrade to re-install, or uninstall "
                            "it first")
        inst = Installation(table=table, key=key, output=output, model=uri, mode=mode,
                            columns=mapping, events=events, version=version.version,
                            key_type=check_key_type(have[key], table, key), explain=k)
        model_ir = means = compiled = None
        if mode in IN_DATABASE:
            from modelport.compile import sql as sql_backend
            from modelport.serve.trigger import sqlmode

            if mode == "native":
                from modelport.serve.trigger import native

                native.require_postgresql(conn)  # before the model is compiled
            model_ir, proof = sqlmode.compile_model(registry, version)
            means = sqlmode.reason_means(model_ir, proof, version.uri) if k else None
            if mode == "native":
                compiled = native.prepare(conn, model_ir, proof, version.uri, inst.model_base)
                if k:
                    sqlmode.check_reasons(conn, model_ir, proof, version.uri, k)
            else:
                sqlmode.check_in_database(conn, model_ir, proof, version.uri, k)
            inst.score_kind = _sql_kind(sql_backend.result_kind(model_ir), signature)
        else:
            inst.score_kind = worker_kind(registry, version, signature)
        # a worker's queue survives an upgrade: keys waiting in it are still to be scored
        keep_queue = old is not None and old.mode == "worker" and mode == "worker"
        statements: list[str] = []
        if old is not None:
            statements += conn.drops(old, queue=not keep_queue)
        inst.added_columns = [c for c in (old.added_columns if old else []) if c in have]
        wanted = [(output, SCORE_TYPES[inst.score_kind])] + [
            (inst.out(s), {"version": "int", "scored_at": "time", "status": "text",
                           "count": "int"}[s]) for s in SUFFIXES[mode]] + inst.reason_columns()
        for col, kind in wanted:
            if col in inst.columns.values() or col == key:
                raise UserError(f"--output-column {output!r} would overwrite the column "
                                f"{col!r} the model reads: choose another name")
            if col not in have:
                statements.append(conn.add_column(table, col, kind))
                inst.added_columns.append(col)
        if mode == "worker":
            moved = (keep_queue and old is not None
                     and old.queue != inst.queue)  # named by an earlier version
            statements += conn.worker_ddl(inst, queue=not keep_queue or moved)
            if moved:
                assert old is not None  # moved only on an upgrade
                statements += [f"INSERT INTO {conn.q(inst.queue)} (k) SELECT k FROM "
                               f"{conn.q(old.queue)} ORDER BY id",
                               f"DROP TABLE {conn.q(old.queue)}"]
            if backfill:
                statements.append(
                    f"INSERT INTO {conn.q(inst.queue)} (k) SELECT {conn.q(key)} FROM "
                    f"{conn.q(table)} WHERE {conn.q(output)} IS NULL")
        else:
            assert model_ir is not None  # compiled above in SQL and native modes
            if compiled is not None:
                types = {**have, **{col: conn.score_type(kind) for col, kind in wanted
                                    if col not in have}}
                statements += conn.native_ddl(inst, model_ir, means, compiled, types)
            else:
                statements += conn.sql_ddl(inst, model_ir, means)
            if backfill:
                statements.append(conn.sql_backfill(inst, model_ir, means))
        _apply(conn, statements, inst, fresh=old is None)
    return inst


def uninstall(db: str, table: str | None = None, *, keep_scores: bool = False) -> list[str]:
    """Remove trigger scoring from ``table`` (every table when None); return the tables.

    Drops the triggers, functions and queue the installation created and the columns it
    added (``keep_scores`` keeps those columns and their values); columns that existed
    before are left alone, as is everything else in the database.
    """
    with connect(db) as conn:
        found = conn.installations()
        chosen = [i for i in found if table is None or i.table == table]
        if table is not None and not chosen:
            raise UserError(f"table {table!r} in {_masked(db)} has no trigger scoring installed"
                            + (f"; installed: {', '.join(i.table for i in found)}"
                               if found else ""))
        for inst in chosen:
            statements = conn.drops(inst)
            if not keep_scores:
                have = conn.columns(inst.table)
                statements += [conn.drop_column(inst.table, c)
                               for c in reversed(inst.added_columns) if c in have]
            conn.begin()
            try:
                for stmt in statements:
                    conn.execute(stmt)
                conn.execute(f"DELETE FROM {conn.q(META_TABLE)} WHERE table_name = "
                             f"{conn.param}", (inst.table,))
                conn.commit()
            except Exception:
                conn.rollback()
                raise
        if not conn.execute(f"SELECT 1 FROM {conn.q(META_TABLE)}"):
            conn.execute(f"DROP TABLE {conn.q(META_TABLE)}")
        conn.commit()
    return [i.table for i in chosen]


def status(db: str) -> list[dict[str, Any]]:
    """Each installation in ``db``: table, model, mode, queue length, scored and error rows."""
    out = []
    with connect(db) as conn:
        for inst in conn.installations():
            q = conn.q
            row = conn.execute(
                f"SELECT COUNT(*), COUNT({q(inst.output)}) FROM {q(inst.table)}")[0]
            info: dict[str, Any] = {
                "table": inst.table, "model": inst.model, "mode": inst.mode,
                "version": inst.version, "output": inst.output, "key": inst.key,
                "events": inst.events, "columns": inst.columns,
                "rows": int(row[0]), "scored": int(row[1])}
            if inst.explain:
                info["explain"] = inst.explain
            if inst.mode == "worker":
                errors = conn.execute(f"SELECT COUNT(*) FROM {q(inst.table)} WHERE "
                                      f"{q(inst.out('status'))} <> 'ok'")[0][0]
                info["errors"] = int(errors)
                info["queued"] = conn.queue_length(inst)
            conn.commit()
            out.append(info)
    return out


def _apply(conn: Database, statements: list[str], inst: Installation, fresh: bool) -> None:
    conn.execute(conn.meta_ddl())
    conn.commit()
    conn.begin()
    try:
        for stmt in statements:
            conn.execute(stmt)
        for stmt, params in conn.save(inst):
            conn.execute(stmt, params)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        if conn.dialect == "mysql" and fresh:
            _undo(conn, inst)  # MariaDB commits each DDL statement: undo what went through
        raise UserError(f"could not install scoring on {inst.table!r}: "
                        f"{str(exc).splitlines()[0]}") from None


def _undo(conn: Database, inst: Installation) -> None:
    have = conn.columns(inst.table)
    for stmt in conn.drops(inst) + [conn.drop_column(inst.table, c) for c in inst.added_columns
                                    if c in have]:
        try:
            conn.execute(stmt)
        except Exception:  # noqa: BLE001 - best effort; the original error is what matters
            pass
    conn.commit()


def _explain(explain: int | str | None, mode: str, signature: Signature) -> int:
    """The number of reasons to write (0 for none), or a :class:`UserError` naming
    ``--explain`` and the fix."""
    from modelport.compile.explain import count

    if explain is None:
        return 0
    k = count(explain, signature, "--explain")
    if k > MAX_REASONS:
        raise UserError(f"--explain writes at most {MAX_REASONS} reasons; got {k}")
    if mode not in IN_DATABASE:
        raise UserError("--explain writes reasons in SQL and native modes (linear models); "
                        "worker mode does not write them: use --mode sql, or serve the model "
                        "over HTTP or in a stream with reasons")
    return k


def _events(on: list[str] | tuple[str, ...] | str) -> list[str]:
    if isinstance(on, str):
        on = [e for e in on.split(",") if e.strip()]
    events = [e.strip().lower() for e in on]
    bad = [e for e in events if e not in EVENTS]
    if bad or not events:
        raise UserError(f"--on takes insert, update or insert,update; got {','.join(on)!r}")
    return [e for e in EVENTS if e in events]


def _mapping(columns: list[str] | None, names: list[str], have: dict[str, str],
             table: str) -> dict[str, str]:
    """Model input -> table column; ``input=column`` entries rename, the rest match by name."""
    mapping = {n: n for n in names}
    for entry in columns or []:
        for part in str(entry).split(","):
            if not part.strip():
                continue
            src, _, dst = part.partition("=")
            src, dst = src.strip(), (dst or src).strip()
            if src not in mapping:
                raise UserError(f"--columns names {src!r}, which is not a model input; the "
                                f"model reads: {', '.join(names)}")
            mapping[src] = dst
    missing = [f"{n}" + (f" (as {c})" if c != n else "") for n, c in mapping.items()
               if c not in have]
    if missing:
        raise UserError(f"table {table!r} lacks the model input column(s) "
                        f"{', '.join(missing)}: add them or map them with --columns "
                        "input=column")
    return mapping


def worker_kind(registry: Registry, version: Version, signature: Signature) -> str:
    """What a worker writes: the positive-class probability of a binary classifier whose
    served artefact (the scoring core's choice for row-at-a-time surfaces) gives
    probabilities, the value, the cluster, else the label."""
    if signature.task == "classification" and len(signature.classes or []) == 2:
        from modelport.scoring import choice

        predictor, _ = choice.load(registry, version, "row")
        return score_kind(signature, predictor)
    return score_kind(signature, None)


def score_kind(signature: Signature, predictor: Predictor | None) -> str:
    """What the score column of ``predictor`` (of ``signature``) holds: see
    :data:`~modelport.serve.trigger.spec.SCORE_TYPES`."""
    if signature.task == "regression":
        return "value"
    if signature.task == "clustering":
        return "cluster"
    classes = signature.classes or []
    if len(classes) == 2 and predictor is not None and predictor.has_proba:
        return "probability"
    return _label_kind(classes)


def _sql_kind(kind: str, signature: Signature) -> str:
    return _label_kind(signature.classes or []) if kind == "label" else kind


def _label_kind(classes: list) -> str:
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "label_int"
    if classes and all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "label_float"
    return "label"


def _masked(url: str) -> str:
    from modelport.serve.trigger.db import masked, normalise_url

    return masked(normalise_url(url))
