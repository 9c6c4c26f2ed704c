"""The proof of a compiled form: it scores the registered sample as the native model does.

Everything the model compiler writes is checked before it is accepted. :func:`proven_ir`
reads a registered version into its intermediate form and compares that form with the
native model on the version's registered sample (to :data:`TOLERANCE`); the proof it
returns, ``(sample frame, native outputs)``, is what every backend written from the form is
then held to: :func:`check_python` runs generated Python on it in a separate interpreter,
:func:`check_sql` evaluates the SQL on it inside a database. The exporter
(:mod:`modelport.compile.exporter`), the in-app bundle (:mod:`modelport.compile.bundle`)
and the SQL-mode trigger (:mod:`modelport.serve.trigger.sqlmode`) all prove through here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.ir import ModelIR
    from modelport.registry import Registry, Version

    #: the registered sample coerced to the signature, and the native model's outputs on it
    Proof: TypeAlias = tuple[pd.DataFrame, dict[str, np.ndarray]]

#: the largest difference from the native model a compiled form may show
TOLERANCE = 1e-9


def proven_ir(reg: Registry, version: Version) -> tuple[ModelIR, Proof | None]:
    """The version's intermediate form checked against the native model, and the proof.

    The proof is ``(sample frame, native outputs)``, or ``None`` for a version registered
    without a sample; the generated Python and SQLite forms are checked on it too.
    """
    from modelport.compile.from_sklearn import to_ir
    from modelport.compile.numpy_eval import evaluate
    from modelport.formats.native import NativePredictor
    from modelport.parity import compare
    from modelport.signature import Signature

    if "joblib" not in version.accepted_formats():
        if "compiled" in version.accepted_formats():
            return _stored_ir(reg, version)
        raise UserError(f"{version.uri} has no native (joblib) artefact to compile from")
    predictor = reg.load(version, format="joblib")
    signature = Signature.from_dict(version.signature)
    try:
        model_ir = to_ir(predictor.model, signature)
    except ConversionError as exc:
        raise UserError(f"{version.uri} cannot be compiled: {exc}") from None
    if model_ir.precision != "float64":
        raise UserError(f"{version.uri} cannot be compiled: the model computes in "
                        f"{model_ir.precision}; compiled targets compute in float64")
    proof = None
    if version.sample_sha256:
        frame = signature.coerce(reg.sample(version))
        reference = NativePredictor(predictor.model, signature).score_coerced(frame)
        result = compare(reference, evaluate(model_ir, frame), signature.task, TOLERANCE)
        if not result["passed"]:
            raise UserError(f"{version.uri} cannot be compiled exactly: {result['reason']}")
        proof = (frame, reference)
    return model_ir, proof


def _stored_ir(reg: Registry, version: Version) -> tuple[ModelIR, Proof | None]:
    """The stored compiled form of a version with no Python model (an imported H2O MOJO):
    it was proven against its native scorer at registration; the proof here is its own
    outputs on the registered sample, which every backend written from it must match."""
    import json

    from modelport.compile.ir import ModelIR
    from modelport.compile.numpy_eval import evaluate
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    model_ir = ModelIR.from_dict(json.loads(reg.read_artefact(version, "compiled")))
    model_ir.signature = signature
    proof = None
    if version.sample_sha256:
        frame = signature.coerce(reg.sample(version))
        proof = (frame, evaluate(model_ir, frame))
    return model_ir, proof


#: what the separate interpreter runs: import the generated module from the path in
#: argv[1], score the JSON rows on stdin, write the scores as JSON
_PYTHON_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("generated_model", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.stdout.write(json.dumps([module.score(row) for row in json.load(sys.stdin)]))
"""
#: how long the generated Python may take to score the sample (at most 1,000 rows)
_PROOF_SECONDS = 600


def check_python(source: str, proof: Proof | None) -> float | None:
    """Score the registered sample with generated Python ``source`` in a separate
    interpreter and return its largest difference from the native model (``None`` without
    a sample or for outputs that are not numbers).

    The module is never run in this process: ``python -I`` (no user site, no ``PYTHON*``
    variables, no working folder on the path) imports it from a temporary folder, reads the
    rows as JSON on stdin and writes the scores as JSON on stdout. Raises
    :class:`~modelport.errors.ConversionError` when it fails, takes over 600 s or differs
    by more than 1e-9.
    """
    import json
    import subprocess
    import sys
    import tempfile

    if proof is None:
        return None
    frame, ref = proof
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    payload = json.dumps(rows, default=lambda v: v.item()).encode("ascii")
    with tempfile.TemporaryDirectory(prefix="modelport-proof-") as tmp:
        module = Path(tmp) / "generated_model.py"
        module.write_text(source, encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _PYTHON_RUNNER, str(module)],
                                  input=payload, capture_output=True, cwd=tmp,
                                  timeout=_PROOF_SECONDS)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"the generated Python did not score the sample within "
                                  f"{_PROOF_SECONDS} s") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        raise ConversionError(f"the generated Python failed on the sample (exit code "
                              f"{done.returncode}): {last}")
    got = json.loads(done.stdout)
    expected = ref.get("proba", ref.get("value"))
    if expected is not None:
        diff = largest_difference(np.asarray(got, dtype=np.float64).reshape(expected.shape),
                                  expected)
        if not diff <= TOLERANCE:
            raise ConversionError(f"the generated Python differs by {diff:.3g}")
        return float(diff)
    return None


def largest_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference between two arrays of scores, where a missing score
    (NaN: a model that gives no answer for the row) equals only a missing score: infinite
    when one side answers and the other does not, 0 for two empty arrays."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if not got.size:
        return 0.0
    delta = np.abs(got - expected)
    delta[np.isnan(got) & np.isnan(expected)] = 0.0
    delta[np.isnan(delta)] = np.inf
    return float(delta.max())


def check_sql(conn: Any, dialect: str, model_ir: ModelIR, proof: Proof | None,
              forms: tuple[str, ...] = ("expression",),
              native: Callable[[str], str] | None = None) -> float | None:
    """Evaluate the model's SQL over the registered sample in the database behind the
    DB-API connection ``conn`` and return the largest difference from the native model.

    ``forms`` says what is evaluated: ``expression`` (:func:`~modelport.compile.sql.to_sql`),
    ``subquery`` (:func:`~modelport.compile.sql.to_sql_subquery`, what a SQLite trigger
    runs), ``function`` (:func:`~modelport.compile.sql.create_function`, created under a
    scratch name) and ``native``: the function ``native(name)`` creates under a scratch
    name (a compiled body, :mod:`modelport.compile.pgfunction`). Nothing is left behind: PostgreSQL's work is rolled back, MariaDB's
    scratch function and SQLite's temporary table dropped. Raises
    :class:`~modelport.errors.ConversionError` naming the form when the database cannot
    evaluate it, or when it differs by more than 1e-9 or changes a label or cluster.
    """
    import uuid

    from modelport.compile import sql

    if proof is None:
        return None
    frame, ref = proof
    scratch = f"modelport_parity_{uuid.uuid4().hex[:12]}"
    selects, functions = [], []
    for form in forms:
        if form == "expression":
            selects.append(sql.to_sql(model_ir, dialect))
        elif form == "subquery":
            selects.append(sql.to_sql_subquery(model_ir, dialect))
        else:
            name = f"{scratch}_{form}"
            if form != "native":
                create = sql.create_function(model_ir, dialect, name)
            elif native is not None:
                create = native(name)
            else:  # never evaluate the SQL function under the compiled one's name
                raise ValueError("the native form needs native=, which creates the function")
            functions.append((create, sql.function_name(name)))
            selects.append(_call(dialect, model_ir, sql.function_name(name)))
    got = _on_sample(conn, dialect, model_ir, frame, selects, functions, scratch)
    if got is None:
        return 0.0
    kind = sql.result_kind(model_ir)
    worst = 0.0
    for at, form in enumerate(forms):
        what = {"expression": "the SQL expression", "subquery": "the SQL expression",
                "function": "the SQL function", "native": "the compiled function"}[form]
        values = [r[at] for r in got]
        if kind in ("probability", "value"):
            expected = ref["proba"][:, 1] if kind == "probability" else ref["value"]
            floats = np.asarray([np.nan if v is None else float(v) for v in values])
            diff = largest_difference(floats, expected)
            if not diff <= TOLERANCE:
                raise ConversionError(f"in {dialect}, {what} differs from the native model by "
                                      f"{diff:.3g} on the sample (allowed {TOLERANCE:g})")
            worst = max(worst, diff)
        else:
            expected = ref["cluster"] if kind == "cluster" else ref["label"]
            flips = sum(str(a) != str(b) for a, b in zip(values, expected, strict=True))
            if flips:
                raise ConversionError(f"in {dialect}, {what} changes {flips} label(s) of the "
                                      "native model on the sample")
    return worst


def check_reasons_sql(conn: Any, dialect: str, model_ir: ModelIR, proof: Proof | None, k: int,
                      forms: tuple[str, ...] = ("expression",)) -> float | None:
    """Evaluate a linear model's reasons in SQL (:func:`~modelport.compile.sql.reasons`)
    over the registered sample in the database behind ``conn``, measured from the sample's
    means as a registered version's reasons are, and return the largest difference from
    the contributions of :mod:`modelport.compile.explain`.

    ``forms``: ``expression`` (the reason expressions as the dialect writes them by
    default), ``inline`` (written inline) and ``function`` (the reason functions, created
    under scratch names). Each row's ``j``-th reason must name a column whose contribution
    is the ``j``-th largest (equal within 1e-9 counts as a tie) and give it to 1e-9.
    Raises :class:`~modelport.errors.ConversionError` naming the form and the row that
    differs, or the database's reason when it cannot evaluate the SQL.
    """
    import uuid

    from modelport.compile import sql
    from modelport.compile.explain import explained, explainer_of, ranked

    if proof is None:
        return None
    frame = proof[0]
    explainer = explainer_of(model_ir)
    means = explainer.feature_means(frame)
    scratch = f"modelport_parity_{uuid.uuid4().hex[:12]}"
    selects, functions = [], []
    for form in forms:
        if form == "function":
            reason_fn, contribution_fn = sql.reason_function_names(scratch)
            functions += list(zip(sql.create_reason_functions(model_ir, dialect, scratch, means),
                                  (reason_fn, contribution_fn), strict=True))
            for j in range(1, k + 1):
                selects += [_call(dialect, model_ir, reason_fn, j),
                            _call(dialect, model_ir, contribution_fn, j)]
        else:
            selects += [e for _, e in sql.reasons(model_ir, dialect, k, means,
                                                  inline=True if form == "inline" else None)]
    got = _on_sample(conn, dialect, model_ir, frame, selects, functions, scratch)
    if got is None:
        return 0.0
    base, contrib = explainer.contributions(frame, frame)
    _, contrib, _ = explained(base, contrib)
    order = ranked(contrib, k)
    names = list(model_ir.signature.names)
    worst = 0.0
    for at, form in enumerate(forms):
        what = {"expression": "the SQL reasons", "inline": "the inline SQL reasons",
                "function": "the SQL reason functions"}[form]
        for i, row in enumerate(got):
            values = row[at * 2 * k:(at + 1) * 2 * k]
            for j in range(k):
                column, value = values[2 * j], values[2 * j + 1]
                expected = float(contrib[i, order[i, j]])
                named = (float(contrib[i, names.index(column)]) if column in names
                         else np.nan)
                got_value = np.nan if value is None else float(value)
                # the value given, and the named column's own, are the j-th largest
                diffs = (abs(got_value - expected), abs(named - expected))
                if not all(d <= TOLERANCE for d in diffs):
                    raise ConversionError(
                        f"in {dialect}, {what} differ on sample row {i}: reason {j + 1} is "
                        f"{column!r} with {value!r}, expected {names[order[i, j]]!r} with "
                        f"{expected!r} (allowed {TOLERANCE:g})")
                worst = max(worst, *diffs)
    return worst


def _call(dialect: str, model_ir: ModelIR, function: str, *first: int) -> str:
    """A call of a scratch function over the sample table's input columns."""
    from modelport.quoting.sql import identifier

    args = [str(a) for a in first] + [identifier(c, dialect, "column name")
                                      for c in model_ir.signature.names]
    return f"{identifier(function, dialect, 'function name')}({', '.join(args)})"


def _on_sample(conn: Any, dialect: str, model_ir: ModelIR, frame: pd.DataFrame, selects: list[str],
               functions: list[tuple[str, str]], scratch: str) -> list[list] | None:
    """``selects`` evaluated over the sample ``frame`` in a scratch table, one list per
    row (None for an empty sample), after creating ``functions`` (``(statement, name)``);
    everything is removed again. The database's error is a :class:`ConversionError`."""
    from modelport.io.tables import first_line
    from modelport.quoting.sql import identifier

    sig = model_ir.signature

    def q(name: str) -> str:
        return identifier(name, dialect, "column name")

    text, real, temp = {
        "postgresql": ("text", "double precision", "TEMP"),
        "mysql": ("LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", "DOUBLE", "TEMPORARY"),
        "sqlite": ("TEXT", "REAL", "TEMP")}[dialect]
    table = q(scratch)
    typed = ", ".join(f"{q(c.name)} {text if c.kind == 'categorical' else real}"
                      for c in sig.inputs)
    rows = [(i, *[None if (v is None or v != v) else v for v in r])
            for i, r in enumerate(frame.itertuples(index=False))]
    if not rows:
        return None
    # psycopg and PyMySQL read a % in a statement with parameters as a placeholder
    names = ", ".join(q(c) for c in sig.names)
    insert = f"INSERT INTO {table} (row_id, {names}) VALUES "
    cur = conn.cursor()
    made: list[str] = []
    try:
        for statement, name in functions:
            cur.execute(statement)  # MariaDB commits around DDL: it is dropped in finally
            made.append(identifier(name, dialect, "function name"))
        cur.execute(f"CREATE {temp} TABLE {table} (row_id INTEGER PRIMARY KEY, {typed})")
        if dialect == "sqlite":
            cur.executemany(f"{insert}({', '.join('?' * len(rows[0]))})", rows)
        else:
            row = f"({', '.join(['%s'] * (len(sig.names) + 1))})"
            for at in range(0, len(rows), 200):
                part = rows[at:at + 200]
                cur.execute(insert.replace("%", "%%") + ", ".join([row] * len(part)),
                            [v for r in part for v in r])
        cur.execute(f"SELECT {', '.join(selects)} FROM {table} ORDER BY row_id")
        return [list(r) for r in cur.fetchall()]
    except Exception as exc:  # noqa: BLE001 - any driver's error is the database's answer
        raise ConversionError(f"{dialect} could not evaluate the SQL: "
                              f"{first_line(exc)}") from None
    finally:
        _clean_up(conn, cur, dialect, table, made)


def _clean_up(conn: Any, cur: Any, dialect: str, table: str, functions: list[str]) -> None:
    """Leave the database as it was: roll back, drop the scratch table and functions."""
    try:
        conn.rollback()
        if dialect != "postgresql":  # PostgreSQL's rollback took them all away
            cur.execute(f"DROP {'TEMPORARY ' if dialect == 'mysql' else ''}TABLE IF EXISTS "
                        f"{table}")
            for function in functions:
                cur.execute(f"DROP FUNCTION IF EXISTS {function}")
            conn.commit()
    finally:
        cur.close()
