"""SQL mode: the model compiled to one SQL expression, proven inside the target database.

Before anything is installed, the registered version is compiled to the intermediate form
and checked against the native model on its registered sample (1e-9); then the dialect's
SQL expression is evaluated by the target database itself over the same sample in a
temporary table and checked again, so the arithmetic proven is the arithmetic that will
run in the trigger. A model the compiler cannot represent is refused with the reason.
"""

from __future__ import annotations

import math
import uuid

from modelport.errors import ConversionError, UserError

TOLERANCE = 1e-9


def compile_model(registry, version):
    """The version's proven IR and proof ``(sample frame, native outputs)`` (or None)."""
    from modelport.compile.exporter import proven_ir

    return proven_ir(registry, version)


def check_in_database(db, model_ir, proof, uri: str) -> float | None:
    """Evaluate the model's SQL in ``db`` over the sample; return the largest difference.

    What is evaluated is what the trigger will run: on PostgreSQL and MariaDB the scoring
    function (created under a scratch name and dropped again), on SQLite the expression.

    Raises a :class:`UserError` naming the model and the difference when it exceeds 1e-9
    (probabilities, values) or changes a label or cluster.
    """
    import numpy as np

    from modelport.compile import sql

    if proof is None:
        return None
    frame, ref = proof
    sig = model_ir.signature
    q = db.q
    scratch = f"modelport_parity_{uuid.uuid4().hex[:12]}"
    try:
        if db.dialect == "sqlite":
            expr = sql.to_sql_subquery(model_ir, db.dialect)
            function = None
        else:
            function = sql.create_function(model_ir, db.dialect, scratch)
            expr = f"{q(scratch + '_score')}({', '.join(q(c) for c in sig.names)})"
    except ConversionError as exc:
        raise UserError(f"{uri} cannot be installed in SQL mode: {exc}") from None
    table = q("modelport_parity")
    typed = ", ".join(f"{q(c.name)} {db.score_type('text' if c.kind == 'categorical' else 'float')}"
                      for c in sig.inputs)
    temp = "TEMPORARY" if db.dialect == "mysql" else "TEMP"
    names = ", ".join(q(c) for c in sig.names)
    rows = [(i, *[None if _missing(v) else v for v in r])
            for i, r in enumerate(frame.itertuples(index=False))]
    try:
        if function:
            db.execute(function)  # before the transaction: MariaDB commits around DDL
        db.begin()
        db.execute(f"DROP {'TEMPORARY ' if db.dialect == 'mysql' else ''}TABLE IF EXISTS {table}")
        db.execute(f"CREATE {temp} TABLE {table} (row_id INTEGER PRIMARY KEY, {typed})")
        cur = db.conn.cursor()
        cur.executemany(f"INSERT INTO {table} (row_id, {names}) VALUES "
                        f"({db.params(len(sig.names) + 1)})", rows)
        cur.close()
        got = [r[0] for r in db.execute(f"SELECT {expr} FROM {table} ORDER BY row_id")]
        db.execute(f"DROP {'TEMPORARY ' if db.dialect == 'mysql' else ''}TABLE {table}")
        db.commit()
    except Exception as exc:
        db.rollback()
        raise UserError(f"{uri}: the database could not evaluate the compiled model: "
                        f"{str(exc).splitlines()[0]}") from None
    finally:
        if function:
            db.execute(f"DROP FUNCTION IF EXISTS {q(scratch + '_score')}")
            db.commit()
    kind = sql.result_kind(model_ir)
    if kind in ("probability", "value"):
        expected = ref["proba"][:, 1] if kind == "probability" else ref["value"]
        values = np.asarray([np.nan if g is None else float(g) for g in got])
        diff = float(np.max(np.abs(values - expected))) if len(values) else 0.0
        if not diff <= TOLERANCE:
            raise UserError(f"{uri} cannot be installed in SQL mode: in {db.dialect} the "
                            f"compiled model differs from the native one by {diff:.3g} on the "
                            f"registered sample (allowed {TOLERANCE:g}); use --mode worker")
        return diff
    expected = ref["cluster"] if kind == "cluster" else ref["label"]
    flips = sum(str(a) != str(b) for a, b in zip(got, expected, strict=True))
    if flips:
        raise UserError(f"{uri} cannot be installed in SQL mode: in {db.dialect} the compiled "
                        f"model changes {flips} label(s) on the registered sample; use "
                        "--mode worker")
    return 0.0


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
