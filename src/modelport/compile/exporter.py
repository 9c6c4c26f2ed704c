"""Export a registered model as a self-contained artefact: SQL, PMML, source code, ONNX, compiled.

:func:`export` takes a model URI, proves the target against the native model on the
version's registered sample, and writes the artefact with a short ``README.md`` saying how
to call it. A model the target cannot represent is refused with the reason, before anything
is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.errors import ConversionError, UserError

TARGETS = ("sql", "pmml", "python", "javascript", "c", "java", "go", "onnx", "compiled", "bundle")
_STORED = {"onnx": ".onnx", "pmml": ".pmml", "compiled": ".compiled.json"}
_TOLERANCE = 1e-9


def export(uri: str, format: str, out: str | Path, *, dialect: str = "postgresql",
           check_url: str | None = None, registry=None) -> list[Path]:
    """Write model ``uri`` as ``format`` into folder ``out``; return the files written.

    ``format`` is one of :data:`TARGETS`; ``dialect`` (``postgresql``, ``mysql``,
    ``sqlite``) applies to ``sql``; ``bundle`` writes every in-app target at once (see
    :mod:`modelport.compile.bundle`). Stored formats (onnx, pmml, compiled) are copied from
    the registry only when they passed the parity check at registration; compiled targets
    (sql and source code) are compiled from the native model and their intermediate form
    is checked against it on the registered sample to 1e-9 first. The SQL is also run on
    the sample in SQLite and, when ``check_url`` names a PostgreSQL or MariaDB/MySQL
    database of the dialect, in that database (the function and the expression, in a
    transaction rolled back or under scratch names dropped again).
    """
    from modelport.registry import Registry

    if format not in TARGETS:
        raise UserError(f"unknown export format {format!r}: use one of {', '.join(TARGETS)}")
    if check_url is not None:
        _check_url_fits(check_url, format, dialect)
    reg = registry or Registry()
    version = reg.get(uri)
    name = version.name
    out = Path(out)
    if format == "bundle":
        from modelport.compile.bundle import write_bundle

        return write_bundle(reg, version, out)
    if format in _STORED:
        art = version.artefact(format)
        if art is None or art.status != "accepted":
            reason = art.reason if art is not None else "it was not converted at registration"
            raise UserError(f"{version.uri} cannot be exported as {format}: {reason}")
        files = {f"{name}{_STORED[format]}": reg.read_artefact(version, format)}
        note = _stored_note(format, name, version)
    else:
        model_ir, proof = proven_ir(reg, version)
        try:
            files, note = _compile(model_ir, proof, format, name, dialect, check_url)
        except ConversionError as exc:
            raise UserError(f"{version.uri} cannot be exported as {format}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, data in {**files, "README.md": note}.items():
        path = out / fname
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        written.append(path)
    return written


def proven_ir(reg, version):
    """The version's intermediate form checked against the native model, and the proof.

    The proof is ``(sample frame, native outputs)``, or ``None`` for a version registered
    without a sample; the generated Python and SQLite forms are checked on it too.
    """
    from modelport.compile import evaluate, to_ir
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
        reference = NativePredictor(predictor.model, signature)._run(frame)
        result = compare(reference, evaluate(model_ir, frame), signature.task, _TOLERANCE)
        if not result["passed"]:
            raise UserError(f"{version.uri} cannot be compiled exactly: {result['reason']}")
        proof = (frame, reference)
    return model_ir, proof


def _stored_ir(reg, version):
    """The stored compiled form of a version with no Python model (an imported H2O MOJO):
    it was proven against its native scorer at registration; the proof here is its own
    outputs on the registered sample, which every backend written from it must match."""
    import json

    from modelport.compile import ModelIR, evaluate
    from modelport.signature import Signature

    signature = Signature.from_dict(version.signature)
    model_ir = ModelIR.from_dict(json.loads(reg.read_artefact(version, "compiled")))
    model_ir.signature = signature
    proof = None
    if version.sample_sha256:
        frame = signature.coerce(reg.sample(version))
        proof = (frame, evaluate(model_ir, frame))
    return model_ir, proof


def _compile(model_ir, proof, format: str, name: str, dialect: str,
             check_url: str | None = None):
    from modelport.compile import codegen
    from modelport.compile.codegen.lowering import usage_returns

    if format == "sql":
        return _compile_sql(model_ir, proof, name, dialect, check_url)
    try:
        source = codegen.generate(model_ir, format, name)
    except UserError as exc:  # a name or category the language cannot hold
        raise ConversionError(str(exc)) from None
    if format == "python":
        check_python(source, proof)
    fname = codegen.file_name(format, name)
    return {fname: source}, _code_note(model_ir, format, name, fname, usage_returns(model_ir))


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


def check_python(source: str, proof) -> float | None:
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
        diff = np.max(np.abs(np.asarray(got, dtype=np.float64).reshape(expected.shape) - expected))
        if not diff <= _TOLERANCE:
            raise ConversionError(f"the generated Python differs by {diff:.3g}")
        return float(diff)
    return None


def _compile_sql(model_ir, proof, name: str, dialect: str, check_url: str | None):
    import sqlite3

    from modelport.compile import sql

    expr = sql.to_sql(model_ir, dialect)
    files = {f"{name}_score.expr.sql": expr + "\n"}
    if dialect in ("postgresql", "mysql"):
        files[f"{name}_score.function.sql"] = sql.create_function(model_ir, dialect, name)
    checked = []
    if proof is not None:
        memory = sqlite3.connect(":memory:")
        try:
            check_sql(memory, "sqlite", model_ir, proof, ("expression",))
        finally:
            memory.close()
        checked.append("SQLite")
    if check_url is not None:
        if proof is None:
            raise UserError("--check-url needs the version's registered sample to check "
                            "against, and this version has none: register it with sample=")
        checked.append(_check_in(check_url, dialect, model_ir, proof))
    return files, _sql_note(model_ir, name, dialect, checked)


def _check_url_fits(url: str, format: str, dialect: str) -> None:
    """Refuse a --check-url that cannot check this export, before anything runs."""
    from modelport.io.tables import redact

    if format != "sql":
        raise UserError(f"--check-url checks SQL exports: drop it, or export with --format sql "
                        f"(not {format})")
    backend = url.split(":", 1)[0].split("+", 1)[0].lower()
    kind = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
            "mariadb": "mysql"}.get(backend)
    if kind is None:
        raise UserError(f"--check-url {redact(url)} is not a PostgreSQL or MariaDB/MySQL URL: "
                        "write postgresql://user@host/db or mysql://user@host:3306/db (SQLite "
                        "is checked in memory on every export)")
    if kind != dialect:
        raise UserError(f"--check-url {redact(url)} is a {kind} database but --dialect is "
                        f"{dialect}: check in a database of the dialect you export")


def _check_in(url: str, dialect: str, model_ir, proof) -> str:
    """Run the SQL on the sample in the database at ``url``; return what it is called."""
    from modelport.io.tables import connect, first_line, redact

    if dialect == "mysql":
        url = "mysql+pymysql" + url[url.index(":"):]
    engine = connect(url, None)
    try:
        try:
            conn = engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - any driver's failure to connect
            raise UserError(f"--check-url: cannot connect to {redact(url)}: "
                            f"{_scrubbed(first_line(exc), engine.url.password)}") from None
        try:
            cur = conn.cursor()
            cur.execute("SELECT VERSION()" if dialect == "mysql" else "SHOW server_version")
            server = str(cur.fetchone()[0])
            cur.close()
            conn.rollback()
            check_sql(conn.dbapi_connection, dialect, model_ir, proof,
                      ("expression", "function"))
        finally:
            conn.close()
    finally:
        engine.dispose()
    product = "MariaDB/MySQL" if dialect == "mysql" else "PostgreSQL"
    return f"{product} {server.split('-')[0].split()[0]} (--check-url)"


def _scrubbed(text: str, password) -> str:
    return text.replace(str(password), "***") if password else text


def check_sql(conn, dialect: str, model_ir, proof,
              forms: tuple[str, ...] = ("expression",)) -> float | None:
    """Evaluate the model's SQL over the registered sample in the database behind the
    DB-API connection ``conn`` and return the largest difference from the native model.

    ``forms`` says what is evaluated: ``expression`` (:func:`~modelport.compile.sql.to_sql`),
    ``subquery`` (:func:`~modelport.compile.sql.to_sql_subquery`, what a SQLite trigger
    runs) and ``function`` (:func:`~modelport.compile.sql.create_function`, created under a
    scratch name). Nothing is left behind: PostgreSQL's work is rolled back, MariaDB's
    scratch function and SQLite's temporary table dropped. Raises
    :class:`~modelport.errors.ConversionError` naming the form when the database cannot
    evaluate it, or when it differs by more than 1e-9 or changes a label or cluster.
    """
    import uuid

    from modelport.compile import sql
    from modelport.io.tables import first_line
    from modelport.quoting.sql import identifier

    if proof is None:
        return None
    frame, ref = proof
    sig = model_ir.signature

    def q(name: str) -> str:
        return identifier(name, dialect, "column name")

    scratch = f"modelport_parity_{uuid.uuid4().hex[:12]}"
    selects, function = [], None
    for form in forms:
        if form == "expression":
            selects.append(sql.to_sql(model_ir, dialect))
        elif form == "subquery":
            selects.append(sql.to_sql_subquery(model_ir, dialect))
        else:
            function = sql.create_function(model_ir, dialect, scratch)
            selects.append(f"{q(sql.function_name(scratch))}("
                           f"{', '.join(q(c) for c in sig.names)})")
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
        return 0.0
    # psycopg and PyMySQL read a % in a statement with parameters as a placeholder
    names = ", ".join(q(c) for c in sig.names)
    insert = f"INSERT INTO {table} (row_id, {names}) VALUES "
    cur = conn.cursor()
    try:
        if function is not None:
            cur.execute(function)  # MariaDB commits around DDL: it is dropped in finally
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
        got = [list(r) for r in cur.fetchall()]
    except Exception as exc:  # noqa: BLE001 - any driver's error is the database's answer
        raise ConversionError(f"{dialect} could not evaluate the SQL: "
                              f"{first_line(exc)}") from None
    finally:
        _clean_up(conn, cur, dialect, table, function and q(sql.function_name(scratch)))
    kind = sql.result_kind(model_ir)
    worst = 0.0
    for at, form in enumerate(forms):
        what = {"expression": "the SQL expression", "subquery": "the SQL expression",
                "function": "the SQL function"}[form]
        values = [r[at] for r in got]
        if kind in ("probability", "value"):
            expected = ref["proba"][:, 1] if kind == "probability" else ref["value"]
            floats = np.asarray([np.nan if v is None else float(v) for v in values])
            diff = float(np.max(np.abs(floats - expected))) if len(floats) else 0.0
            if not diff <= _TOLERANCE:
                raise ConversionError(f"in {dialect}, {what} differs from the native model by "
                                      f"{diff:.3g} on the sample (allowed {_TOLERANCE:g})")
            worst = max(worst, diff)
        else:
            expected = ref["cluster"] if kind == "cluster" else ref["label"]
            flips = sum(str(a) != str(b) for a, b in zip(values, expected, strict=True))
            if flips:
                raise ConversionError(f"in {dialect}, {what} changes {flips} label(s) of the "
                                      "native model on the sample")
    return worst


def _clean_up(conn, cur, dialect: str, table: str, function: str | None) -> None:
    """Leave the database as it was: roll back, drop the scratch table and function."""
    try:
        conn.rollback()
        if dialect != "postgresql":  # PostgreSQL's rollback took both away
            cur.execute(f"DROP {'TEMPORARY ' if dialect == 'mysql' else ''}TABLE IF EXISTS "
                        f"{table}")
            if function:
                cur.execute(f"DROP FUNCTION IF EXISTS {function}")
            conn.commit()
    finally:
        cur.close()


def _sql_note(model_ir, name: str, dialect: str, checked: list[str] | None = None) -> str:
    from modelport.compile.sql import function_name, result_kind
    from modelport.quoting.code import comment_text

    kind = result_kind(model_ir)
    if kind == "probability":
        what = f"the probability of class {comment_text(str(model_ir.output.classes[-1]))!r}"
    else:
        what = {"value": "the predicted value", "cluster": "the cluster index (0-based)",
                "label": "the predicted label"}[kind]
    # names appear in their display form: the note is read, and pasted from
    cols = ", ".join(comment_text(n) for n in model_ir.signature.names)
    fn = comment_text(function_name(name))
    inputs = "\n".join(f"- `{comment_text(c.name)}` ({c.kind})" for c in model_ir.signature.inputs)
    where = f" (run in {' and in '.join(checked)})" if checked else ""
    text = (f"# {name}: SQL ({dialect})\n\nChecked against the native model on the registered "
            f"sample{where}.\n\n`{name}_score.expr.sql` is one SQL expression over the input "
            f"columns; it returns {what}. Use it in any SELECT, view, generated column or "
            "trigger body (missing values are NULL):\n\n"
            f"```sql\nSELECT <contents of {name}_score.expr.sql> AS score FROM customers;\n```\n\n"
            f"Inputs:\n\n{inputs}\n")
    if dialect != "sqlite":
        text += (f"\n`{name}_score.function.sql` creates `{fn}({cols})`, the same "
                 f"expression as a function taking the columns in this order:\n\n"
                 f"```sql\nSELECT {fn}({cols}) FROM customers;\n```\n")
    return text


def _code_note(model_ir, language: str, name: str, fname: str, returns: str) -> str:
    from modelport.compile.codegen import class_name, identifier
    from modelport.quoting.code import comment_text, javascript_literal

    sym = identifier(name)
    sig = model_ir.signature
    # names appear in their display form: the snippets are code users paste
    numeric, categorical = (", ".join(map(comment_text, names)) or "none"
                            for names in (sig.numeric, sig.categorical))
    calls = {
        "python": f"```python\nfrom {sym} import score\nscore({{...}})\n```",
        "javascript": f"```js\nimport {{ score }} from {javascript_literal('./' + fname)};\n"
                      "score({...});\n```",
        "java": f"```java\ndouble{'' if model_ir.output.task == 'regression' else '[]'} r = "
                f"{class_name(name)}.score(Map.of(...));  // Map<String, Object>\n```",
        "go": f"```go\nimport {sym} \"yourmodule/{sym}\"\nr := {sym}.Score(map[string]any{{...}})\n```",
        "c": (f"```c\ndouble num[] = {{...}};       /* {numeric} (NAN = missing) */\n"
              f"const char *cat[] = {{...}};  /* {categorical} (NULL = missing) */\n"
              f"double out[{sym.upper()}_N_OUTPUTS];\n{sym}_score(num, cat, out);\n```\n\n"
              f"Compile with `cc -O2 -c {fname}` and link with `-lm`."),
    }[language]
    inputs = "\n".join(f"- `{comment_text(c.name)}` ({c.kind})" for c in sig.inputs)
    escaped = any(comment_text(n) != n for n in sig.names)
    return (f"# {name}: {language}\n\nDependency-free source, checked against the native model "
            f"on the registered sample. `score(row)` takes one row keyed by input column name "
            f"(missing values: None / null / NaN) and returns {returns}.\n\n{calls}\n\n"
            "Inputs" + (" (characters outside letters, digits and simple punctuation shown "
                        "as %XX escapes; the source holds the names exactly)" if escaped else "")
            + f":\n\n{inputs}\n")


def _stored_note(format: str, name: str, version) -> str:
    p = (version.artefact(format).parity or {})
    how = {
        "onnx": "Score it with ONNX Runtime: one input tensor per column (float for numbers, "
                "string for categories).",
        "pmml": "Score it with any PMML 4.4 evaluator (pypmml, jpmml-evaluator).",
        "compiled": "Load it with `modelport.formats.compiled.load(data, signature)`; it is "
                    "the model's intermediate form as plain JSON.",
    }[format]
    return (f"# {name}: {format}\n\nCopied from {version.uri}; at registration it matched the "
            f"native model on the sample (max abs diff {p.get('max_abs_diff')}, label flips "
            f"{p.get('label_flips')}).\n\n{how}\n")
