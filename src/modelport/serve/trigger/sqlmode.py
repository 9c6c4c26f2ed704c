"""SQL mode: the model compiled to one SQL expression, proven inside the target database.

Before anything is installed, the registered version is compiled to the intermediate form
and checked against the native model on its registered sample (1e-9); then the dialect's
SQL is evaluated by the target database itself over the same sample and checked again, so
the arithmetic proven is the arithmetic that will run in the trigger. A model the compiler
cannot represent is refused with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    import numpy as np

    from modelport.compile.ir import ModelIR
    from modelport.compile.proof import Proof
    from modelport.registry import Registry, Version
    from modelport.serve.trigger.db import Database


def compile_model(registry: Registry, version: Version) -> tuple[ModelIR, Proof | None]:
    """The version's proven IR and proof ``(sample frame, native outputs)`` (or None)."""
    from modelport.compile.proof import proven_ir

    return proven_ir(registry, version)


def check_in_database(db: Database, model_ir: ModelIR, proof: Proof | None, uri: str,
                      explain: int = 0) -> float | None:
    """Evaluate the model's SQL in ``db`` over the sample; return the largest difference.

    What is evaluated is what the trigger will run: on PostgreSQL and MariaDB the scoring
    function (created under a scratch name and dropped again), on SQLite the expression
    with its features computed once. Raises a :class:`UserError` naming the model and the
    difference when it exceeds 1e-9 (probabilities, values) or changes a label or cluster,
    or the database's reason when it cannot evaluate the SQL. With ``explain`` reasons,
    their SQL is evaluated and checked the same way.
    """
    from modelport.compile.proof import check_reasons_sql, check_sql

    forms = ("subquery",) if db.dialect == "sqlite" else ("function",)
    try:
        worst = check_sql(db.conn, db.dialect, model_ir, proof, forms)
        if explain:
            check_reasons_sql(db.conn, db.dialect, model_ir, proof, explain,
                              ("expression",) if db.dialect == "sqlite" else ("function",))
        return worst
    except ConversionError as exc:
        raise UserError(f"{uri} cannot be installed in SQL mode: {exc}; use --mode "
                        "worker") from None


def check_reasons(db: Database, model_ir: ModelIR, proof: Proof | None, uri: str,
                  explain: int) -> None:
    """Evaluate the reason functions of ``explain`` reasons in ``db`` over the sample and
    check them against the native model's (what :func:`check_in_database` checks beside
    the score)."""
    from modelport.compile.proof import check_reasons_sql

    try:
        check_reasons_sql(db.conn, db.dialect, model_ir, proof, explain,
                          ("expression",) if db.dialect == "sqlite" else ("function",))
    except ConversionError as exc:
        raise UserError(f"{uri} cannot write reasons in the database: {exc}; drop --explain") \
            from None


def reason_means(model_ir: ModelIR, proof: Proof | None, uri: str) -> np.ndarray:
    """The feature means a linear model's reasons are measured from: those of the
    registered sample, as every surface measures them. A version with no sample, or a
    model SQL reasons cannot be written for, is a :class:`UserError` with the reason."""
    from modelport.compile import sql
    from modelport.compile.explain import explainer_of

    if proof is None:
        raise UserError(f"{uri} has no registered sample to measure reasons from: register "
                        "it with sample=, or drop --explain")
    try:
        means = explainer_of(model_ir).feature_means(proof[0])
        sql.reasons(model_ir, "sqlite", 1, means)  # refuses a model SQL cannot explain
    except ConversionError as exc:
        raise UserError(f"{uri} cannot write reasons in SQL mode: {exc}; drop --explain") \
            from None
    return means
