"""Export a registered model as a self-contained artefact: SQL, PMML, source code, ONNX, compiled.

:func:`export` takes a model URI, proves the target against the native model on the
version's registered sample (the proof is :mod:`modelport.compile.proof`), and writes the
artefact with a short ``README.md`` saying how to call it. A model the target cannot
represent is refused with the reason, before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.compile.proof import check_python, check_reasons_sql, check_sql, proven_ir
from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    from modelport.compile.ir import ModelIR
    from modelport.compile.proof import Proof
    from modelport.registry import Registry, Version

TARGETS = ("sql", "pmml", "python", "javascript", "c", "java", "go", "onnx", "compiled", "bundle")
_STORED = {"onnx": ".onnx", "pmml": ".pmml", "compiled": ".compiled.json"}


def export(uri: str, format: str, out: str | Path, *, dialect: str = "postgresql",
           check_url: str | None = None, registry: Registry | None = None,
           explain: int | str | None = None) -> list[Path]:
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

    ``explain`` (a number of reasons, or its digits as text) adds each row's reasons (see
    :mod:`modelport.compile.explain`): for ``sql``, a linear model's top ``explain``
    reasons as one expression each (and, for PostgreSQL and MariaDB/MySQL, reason
    functions), proven on the sample like the score; for ``c`` and ``javascript``, a tree
    ensemble's ``explain`` and ``reasons`` functions. Other targets and models are refused
    with the reason.
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
    if explain is not None:
        explain = _check_explain(explain, format, version)
    if format == "bundle":
        from modelport.compile.bundle import write_bundle

        return write_bundle(reg, version, out)
    if format in _STORED:
        art = version.artefact(format)
        if art is None or art.status != "accepted":
            reason = art.reason if art is not None else "it was not converted at registration"
            raise UserError(f"{version.uri} cannot be exported as {format}: {reason}")
        files: Mapping[str, str | bytes] = {
            f"{name}{_STORED[format]}": reg.read_artefact(version, format)}
        note = _stored_note(format, name, version)
    else:
        model_ir, proof = proven_ir(reg, version)
        try:
            files, note = _compile(model_ir, proof, format, name, dialect, check_url, explain)
        except ConversionError as exc:
            raise UserError(f"{version.uri} cannot be exported as {format}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, data in {**files, "README.md": note}.items():
        path = out / fname
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        written.append(path)
    return written


def _check_explain(explain: int | str, format: str, version: Version) -> int:
    """The number of reasons ``explain`` asks for, refused (before anything is compiled)
    when it is not one or the target cannot give reasons."""
    from modelport.compile.explain import count
    from modelport.signature import Signature

    k = count(explain, Signature.from_dict(version.signature), "--explain")
    if format not in ("sql", "c", "javascript"):
        raise UserError(f"--explain is written for --format sql (linear models) and c or "
                        f"javascript (tree ensembles), not {format}: drop --explain, or "
                        "export one of those")
    return k


def _compile(model_ir: ModelIR, proof: Proof | None, format: str, name: str, dialect: str,
             check_url: str | None = None, explain: int | None = None
             ) -> tuple[dict[str, str], str]:
    from modelport.compile import codegen
    from modelport.compile.codegen.lowering import usage_returns

    if format == "sql":
        return _compile_sql(model_ir, proof, name, dialect, check_url, explain)
    try:
        if explain is not None:
            source = codegen.generate(model_ir, format, name, explain=True)
        else:
            source = codegen.generate(model_ir, format, name)
    except UserError as exc:  # a name or category the language cannot hold
        raise ConversionError(str(exc)) from None
    if format == "python":
        check_python(source, proof)
    fname = codegen.file_name(format, name)
    note = _code_note(model_ir, format, name, fname, usage_returns(model_ir))
    if explain is not None:
        note += _code_reasons_note(format, name, explain)
    return {fname: source}, note


def _compile_sql(model_ir: ModelIR, proof: Proof | None, name: str, dialect: str,
                 check_url: str | None, explain: int | None = None
                 ) -> tuple[dict[str, str], str]:
    import sqlite3

    from modelport.compile import sql

    expr = sql.to_sql(model_ir, dialect)
    files = {f"{name}_score.expr.sql": expr + "\n"}
    if dialect in ("postgresql", "mysql"):
        files[f"{name}_score.function.sql"] = sql.create_function(model_ir, dialect, name)
    base = None
    if explain is not None:
        if proof is None:
            raise ConversionError("reasons are measured from the mean of the version's "
                                  "registered sample, and this version has none")
        from modelport.compile.explain import explained_output, explainer_of
        from modelport.quoting.sql import identifier

        explainer = explainer_of(model_ir)
        means = explainer.feature_means(proof[0])
        listed = sql.reasons(model_ir, dialect, explain, means)
        bases = explainer.of_matrix(means[None, :], proof[0])[0]
        base = float(bases[explained_output(len(bases)) or 0])
        files[f"{name}_reasons.select.sql"] = ",\n".join(
            f"{e} AS {identifier(c, dialect)}" for c, e in listed) + "\n"
        if dialect in ("postgresql", "mysql"):
            files[f"{name}_reasons.function.sql"] = "\n".join(
                sql.create_reason_functions(model_ir, dialect, name, means))
    checked = []
    if proof is not None:
        memory = sqlite3.connect(":memory:")
        try:
            check_sql(memory, "sqlite", model_ir, proof, ("expression",))
            if explain is not None:
                check_reasons_sql(memory, "sqlite", model_ir, proof, explain, ("expression",))
        finally:
            memory.close()
        checked.append("SQLite")
    if check_url is not None:
        if proof is None:
            raise UserError("--check-url needs the version's registered sample to check "
                            "against, and this version has none: register it with sample=")
        checked.append(_check_in(check_url, dialect, model_ir, proof, explain))
    note = _sql_note(model_ir, name, dialect, checked)
    if explain is not None:
        note += _sql_reasons_note(model_ir, name, dialect, explain, base)
    return files, note


def _check_url_fits(url: str, format: str, dialect: str) -> None:
    """Refuse a --check-url that cannot check this export, before anything runs."""
    from modelport.io import urls
    from modelport.io.urls import redact

    if format != "sql":
        raise UserError(f"--check-url checks SQL exports: drop it, or export with --format sql "
                        f"(not {format})")
    kind = urls.dialect(url)
    if kind not in ("postgresql", "mysql"):
        raise UserError(f"--check-url {redact(url)} is not a PostgreSQL or MariaDB/MySQL URL: "
                        "write postgresql://user@host/db or mysql://user@host:3306/db (SQLite "
                        "is checked in memory on every export)")
    if kind != dialect:
        raise UserError(f"--check-url {redact(url)} is a {kind} database but --dialect is "
                        f"{dialect}: check in a database of the dialect you export")


def _check_in(url: str, dialect: str, model_ir: ModelIR, proof: Proof,
              explain: int | None = None) -> str:
    """Run the SQL on the sample in the database at ``url``; return what it is called."""
    from modelport.io.urls import engine as open_engine
    from modelport.io.urls import first_line, redact, scrubbed

    engine = open_engine(url)
    try:
        try:
            conn = engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - any driver's failure to connect
            raise UserError(f"--check-url: cannot connect to {redact(url)}: "
                            f"{scrubbed(first_line(exc), engine.url.password)}") from None
        try:
            cur = conn.cursor()
            cur.execute("SELECT VERSION()" if dialect == "mysql" else "SHOW server_version")
            row = cur.fetchone()
            assert row is not None  # both statements give one row
            server = str(row[0])
            cur.close()
            conn.rollback()
            check_sql(conn.dbapi_connection, dialect, model_ir, proof,
                      ("expression", "function"))
            if explain is not None:
                check_reasons_sql(conn.dbapi_connection, dialect, model_ir, proof, explain,
                                  ("expression", "function"))
        finally:
            conn.close()
    finally:
        engine.dispose()
    product = "MariaDB/MySQL" if dialect == "mysql" else "PostgreSQL"
    return f"{product} {server.split('-')[0].split()[0]} (--check-url)"


def _sql_note(model_ir: ModelIR, name: str, dialect: str, checked: list[str] | None = None) -> str:
    from modelport.compile.sql import function_name, result_kind
    from modelport.quoting.code import comment_text

    kind = result_kind(model_ir)
    if kind == "probability":
        assert model_ir.output is not None and model_ir.output.classes is not None  # a classifier's
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


def _sql_reasons_note(model_ir: ModelIR, name: str, dialect: str, k: int,
                      base: float | None) -> str:
    from modelport.compile.sql import reason_function_names
    from modelport.quoting.code import comment_text

    assert model_ir.output is not None  # set by every front end
    raw = ("the log-odds" if model_ir.output.task == "classification" else "the value")
    cols = ", ".join(comment_text(n) for n in model_ir.signature.names)
    text = (f"\n## Reasons\n\n`{name}_reasons.select.sql` lists {2 * k} expressions for a "
            f"SELECT: `reason_1..{k}`, the input column with the largest contributions to "
            f"{raw} (by size; equal sizes in input order), and `contribution_1..{k}`, each "
            "contribution: the coefficient times the distance from the registered sample's "
            f"mean, summed over the column's features. Every row starts from the base value "
            f"{base!r}; the base plus every "
            f"column's contribution is the row's {raw.split()[-1]}. Checked on the sample "
            "against modelport's reasons, as the score is.\n\n"
            f"```sql\nSELECT customer_id, <contents of {name}_score.expr.sql> AS score,\n"
            f"       <contents of {name}_reasons.select.sql>\nFROM customers;\n```\n")
    if dialect != "sqlite":
        reason_fn, contribution_fn = (comment_text(f) for f in reason_function_names(name))
        text += (f"\n`{name}_reasons.function.sql` creates `{reason_fn}(n, {cols})` and "
                 f"`{contribution_fn}(n, {cols})`, the `n`-th reason and its contribution:"
                 f"\n\n```sql\nSELECT {reason_fn}(1, {cols}), {contribution_fn}(1, {cols}) "
                 "FROM customers;\n```\n")
    return text


def _code_reasons_note(language: str, name: str, k: int) -> str:
    from modelport.compile.codegen import file_name, identifier
    from modelport.quoting.code import javascript_literal

    sym = identifier(name)
    path = javascript_literal("./" + file_name("javascript", name))
    call = (f"```js\nimport {{ reasons }} from {path};\nreasons({{...}}, {k});  "
            "// [{column, value, contribution}, ...], largest first\n```"
            if language == "javascript" else
            f"```c\nint column[{k}]; double contribution[{k}];\n"
            f"{sym}_reasons(num, cat, {k}, column, contribution);  "
            "/* input column indices, largest first */\n```")
    return (f"\n## Reasons\n\nThe source also explains each score: exact contributions of "
            "each input column to the raw score (path-dependent TreeSHAP over the trees' "
            "training covers), the same reasons every modelport surface gives.\n\n"
            f"{call}\n")


def _code_note(model_ir: ModelIR, language: str, name: str, fname: str, returns: str) -> str:
    from modelport.compile.codegen import class_name, identifier
    from modelport.quoting.code import comment_text, javascript_literal

    assert model_ir.output is not None  # set by every front end
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


def _stored_note(format: str, name: str, version: Version) -> str:
    art = version.artefact(format)
    assert art is not None  # export copies only an accepted artefact
    p = (art.parity or {})
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
