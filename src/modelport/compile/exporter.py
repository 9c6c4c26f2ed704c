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
           registry=None) -> list[Path]:
    """Write model ``uri`` as ``format`` into folder ``out``; return the files written.

    ``format`` is one of :data:`TARGETS`; ``dialect`` (``postgresql``, ``mysql``,
    ``sqlite``) applies to ``sql``; ``bundle`` writes every in-app target at once (see
    :mod:`modelport.compile.bundle`). Stored formats (onnx, pmml, compiled) are copied from
    the registry only when they passed the parity check at registration; compiled targets
    (sql and source code) are compiled from the native model and their intermediate form
    is checked against it on the registered sample to 1e-9 first.
    """
    from modelport.registry import Registry

    if format not in TARGETS:
        raise UserError(f"unknown export format {format!r}: use one of {', '.join(TARGETS)}")
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
            files, note = _compile(model_ir, proof, format, name, dialect)
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


def _compile(model_ir, proof, format: str, name: str, dialect: str):
    from modelport.compile import codegen
    from modelport.compile.codegen.lowering import usage_returns

    if format == "sql":
        from modelport.compile import sql

        expr = sql.to_sql(model_ir, dialect)
        _check_sqlite(model_ir, proof)
        files = {f"{name}_score.expr.sql": expr + "\n"}
        if dialect in ("postgresql", "mysql"):
            files[f"{name}_score.function.sql"] = sql.create_function(model_ir, dialect, name)
        return files, _sql_note(model_ir, name, dialect)
    source = codegen.generate(model_ir, format, name)
    if format == "python":
        _check_python(source, proof)
    fname = codegen.file_name(format, name)
    return {fname: source}, _code_note(model_ir, format, name, fname, usage_returns(model_ir))


def _check_python(source: str, proof) -> float | None:
    """The generated Python's largest difference from the native model on the sample."""
    if proof is None:
        return None
    frame, ref = proof
    ns: dict = {}
    exec(compile(source, "<generated>", "exec"), ns)  # noqa: S102 - our own generated code
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    got = [ns["score"](r) for r in rows]
    expected = ref.get("proba", ref.get("value"))
    if expected is not None:
        diff = np.max(np.abs(np.asarray(got, dtype=np.float64).reshape(expected.shape) - expected))
        if not diff <= _TOLERANCE:
            raise ConversionError(f"the generated Python differs by {diff:.3g}")
        return float(diff)
    return None


def _check_sqlite(model_ir, proof) -> None:
    """Run the SQLite form of the expression over the sample: the SQL logic, proven."""
    import sqlite3

    from modelport.compile import sql

    if proof is None:
        return
    frame, ref = proof
    sig = model_ir.signature
    conn = sqlite3.connect(":memory:")
    try:
        cols = ", ".join(f'"{c.name}" {"REAL" if c.kind == "numeric" else "TEXT"}'
                         for c in sig.inputs)
        conn.execute(f"CREATE TABLE t (row_id INTEGER PRIMARY KEY, {cols})")
        names = ", ".join(f'"{c}"' for c in sig.names)
        conn.executemany(
            f"INSERT INTO t (row_id, {names}) VALUES ({', '.join('?' * (len(sig.names) + 1))})",
            [(i, *[None if (v is None or v != v) else v for v in r])
             for i, r in enumerate(frame.itertuples(index=False))])
        got = [r[0] for r in conn.execute(f"SELECT {sql.to_sql(model_ir, 'sqlite')} FROM t "
                                          "ORDER BY row_id")]
    finally:
        conn.close()
    kind = sql.result_kind(model_ir)
    if kind in ("probability", "value"):
        expected = ref["proba"][:, 1] if kind == "probability" else ref["value"]
        diff = np.max(np.abs(np.asarray(got, dtype=np.float64) - expected))
        if not diff <= _TOLERANCE:
            raise ConversionError(f"the SQL expression differs by {diff:.3g} on the sample")
    else:
        expected = ref["cluster"] if kind == "cluster" else ref["label"]
        flips = sum(str(a) != str(b) for a, b in zip(got, expected, strict=True))
        if flips:
            raise ConversionError(f"the SQL expression changes {flips} label(s) on the sample")


def _columns(model_ir) -> str:
    return "\n".join(f"- `{c.name}` ({c.kind})" for c in model_ir.signature.inputs)


def _sql_note(model_ir, name: str, dialect: str) -> str:
    from modelport.compile.sql import result_kind

    kind = result_kind(model_ir)
    what = {"probability": f"the probability of class {model_ir.output.classes[-1]!r}",
            "value": "the predicted value", "cluster": "the cluster index (0-based)",
            "label": "the predicted label"}[kind]
    cols = ", ".join(model_ir.signature.names)
    text = (f"# {name}: SQL ({dialect})\n\nChecked against the native model on the registered "
            f"sample.\n\n`{name}_score.expr.sql` is one SQL expression over the input columns; "
            f"it returns {what}. Use it in any SELECT, view, generated column or trigger body "
            "(missing values are NULL):\n\n"
            f"```sql\nSELECT <contents of {name}_score.expr.sql> AS score FROM customers;\n```\n\n"
            f"Inputs:\n\n{_columns(model_ir)}\n")
    if dialect != "sqlite":
        text += (f"\n`{name}_score.function.sql` creates `{name}_score({cols})`, the same "
                 f"expression as a function taking the columns in this order:\n\n"
                 f"```sql\nSELECT {name}_score({cols}) FROM customers;\n```\n")
    return text


def _code_note(model_ir, language: str, name: str, fname: str, returns: str) -> str:
    from modelport.compile.codegen import class_name, identifier

    sym = identifier(name)
    calls = {
        "python": f"```python\nfrom {fname[:-3]} import score\nscore({{...}})\n```",
        "javascript": f"```js\nimport {{ score }} from \"./{fname}\";\nscore({{...}});\n```",
        "java": f"```java\ndouble{'' if model_ir.output.task == 'regression' else '[]'} r = "
                f"{class_name(name)}.score(Map.of(...));  // Map<String, Object>\n```",
        "go": f"```go\nimport {sym} \"yourmodule/{sym}\"\nr := {sym}.Score(map[string]any{{...}})\n```",
        "c": (f"```c\ndouble num[] = {{...}};       /* {', '.join(model_ir.signature.numeric)} "
              f"(NAN = missing) */\nconst char *cat[] = {{...}};  /* "
              f"{', '.join(model_ir.signature.categorical)} (NULL = missing) */\n"
              f"double out[{sym.upper()}_N_OUTPUTS];\n{sym}_score(num, cat, out);\n```\n\n"
              f"Compile with `cc -O2 -c {fname}` and link with `-lm`."),
    }[language]
    return (f"# {name}: {language}\n\nDependency-free source, checked against the native model "
            f"on the registered sample. `score(row)` takes one row keyed by input column name "
            f"(missing values: None / null / NaN) and returns {returns}.\n\n{calls}\n\n"
            f"Inputs:\n\n{_columns(model_ir)}\n")


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
