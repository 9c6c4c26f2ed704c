"""An app-ready bundle: everything an application needs to run a registered model in-process.

``modelport export churn@production --format bundle --out DIR`` writes one folder:

- ``<name>.compiled.json``, the model's intermediate form, and ``modelport_inapp.py``, the
  NumPy-only runtime that scores it (:mod:`modelport.kernel`, copied);
- ``<name>.onnx`` when the version has an accepted ONNX artefact;
- dependency-free source from the model compiler: ``<name>.py`` (the name as a Python
  module name: ``churn-v2`` gives ``churn_v2.py``), ``<name>.mjs``
  (JavaScript, browser or Node), ``<Name>.java``, ``<name>.c`` with ``<name>.h``, ``<name>.go``;
- ``signature.json`` (input names, kinds, categories, ranges; task and classes),
  ``parity.json`` (how each artefact was checked against the native model, and by how much
  it differs), ``bundle.json`` (the manifest :func:`modelport.inapp.load` reads) and a
  ``README.md`` with copy-paste usage for every target.

Every compiled target comes from one intermediate form, checked against the native model
on the version's registered sample to 1e-9 before anything is written; the runtime and the
generated Python (in a separate interpreter: nothing generated runs in this process) are
then run on that sample themselves. Nothing is written when the model
can be neither compiled nor loaded from ONNX.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelport.errors import ConversionError, UserError

if TYPE_CHECKING:
    from modelport.compile.ir import ModelIR
    from modelport.compile.proof import Proof
    from modelport.registry import Registry, Version

#: generated source in the bundle, in README order
LANGUAGES = ("javascript", "java", "c", "go", "python")
RUNTIME_FILE = "modelport_inapp.py"
TOLERANCE = 1e-9


def write_bundle(reg: Registry, version: Version, out: str | Path) -> list[Path]:
    """Write the bundle of ``version`` (of registry ``reg``) into folder ``out``; return the files."""
    from modelport.compile.proof import proven_ir

    name = version.name
    signature = version.signature
    files: dict[str, str | bytes] = {}
    roles: dict[str, str] = {}
    targets: dict[str, dict] = {}
    try:
        model_ir, proof = proven_ir(reg, version)
        compile_error = None
    except UserError as exc:
        model_ir, proof, compile_error = None, None, str(exc)
    rows = 0 if proof is None else len(proof[0])

    example = example_row(signature)
    returns = None
    if model_ir is not None:
        ir_json = json.dumps(model_ir.to_dict(), allow_nan=True)
        roles["compiled"] = f"{name}.compiled.json"
        files[roles["compiled"]] = ir_json
        roles["runtime"] = RUNTIME_FILE
        files[RUNTIME_FILE] = _runtime_source()
        targets["compiled"] = {"file": roles["compiled"], **_check_runtime(ir_json, signature, proof)}
        try:
            returns, code_targets = _generate(model_ir, name, proof, files, roles)
        except ConversionError as exc:
            raise UserError(f"{version.uri} cannot be bundled: {exc}") from None
        targets.update(code_targets)

    layout = None
    onnx = version.artefact("onnx")
    if onnx is not None and onnx.status == "accepted":
        data = reg.read_artefact(version, "onnx")
        roles["onnx"] = f"{name}.onnx"
        files[roles["onnx"]] = data
        layout = _onnx_layout(data)
        p = onnx.parity or {}
        targets["onnx"] = {
            "file": roles["onnx"], "checked": "onnxruntime at registration, on the sample",
            "rows": p.get("rows"), "max_abs_diff": p.get("max_abs_diff"),
            "label_flips": p.get("label_flips"), "tolerance": p.get("tolerance"),
        }
    if model_ir is None and "onnx" not in roles:
        assert compile_error is not None  # set when the model did not compile
        raise UserError(f"{version.uri} cannot be bundled: {compile_error.split(': ', 1)[-1]}; "
                        "and it has no accepted ONNX artefact")

    roles["signature"] = "signature.json"
    roles["parity"] = "parity.json"
    roles["readme"] = "README.md"
    manifest = {
        "model": name, "version": version.version, "uri": version.uri,
        "task": signature["task"], "classes": signature.get("classes"),
        "inputs": [c["name"] for c in signature["inputs"]],
        "returns": returns, "files": roles,
    }
    if layout is not None:
        manifest["onnx"] = layout
    parity = {"model": version.uri, "sample_rows": rows, "targets": targets}
    if compile_error:
        parity["not_compiled"] = compile_error
    files["signature.json"] = json.dumps(signature, indent=2) + "\n"
    files["parity.json"] = json.dumps(parity, indent=2, allow_nan=True) + "\n"
    files["bundle.json"] = json.dumps(manifest, indent=2) + "\n"
    files["README.md"] = readme(manifest, signature, parity, example,
                                _example_score(files, roles, signature, example))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, content in files.items():
        path = out / fname
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        written.append(path)
    return written


def _runtime_source() -> str:
    from modelport import kernel

    return Path(kernel.__file__).read_text(encoding="utf-8")


def _check_runtime(ir_json: str, signature: dict, proof: Proof | None) -> dict:
    """Score the sample with the in-app runtime exactly as an application would load it."""
    from modelport.kernel import InputWarning, Model, Program
    from modelport.parity import compare

    check = {"checked": "modelport.inapp on the registered sample", "tolerance": TOLERANCE}
    if proof is None:
        return {**check, "checked": "not checked: the version has no sample"}
    frame, reference = proof
    # the sample defines the signature's ranges and categories, so only the arithmetic is
    # on trial here
    model = Model(Program({**json.loads(ir_json), "signature": signature}), signature,
                  format="compiled", unseen_categories="warn", out_of_range="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        outputs = model.run(frame)
    result = compare(reference, outputs, signature["task"], TOLERANCE)
    if not result["passed"]:
        raise UserError(f"the in-app runtime differs from the native model: {result['reason']}")
    return {**check, "rows": result["rows"], "max_abs_diff": result["max_abs_diff"],
            "label_flips": result["label_flips"]}


def _generate(model_ir: ModelIR, name: str, proof: Proof | None, files: dict, roles: dict
              ) -> tuple[str, dict]:
    from modelport.compile import codegen
    from modelport.compile.codegen.lowering import usage_returns
    from modelport.compile.proof import check_python

    targets = {}
    for language in LANGUAGES:
        try:
            source = codegen.generate(model_ir, language, name)
        except UserError as exc:  # a name or category the language cannot hold
            raise ConversionError(str(exc)) from None
        fname = codegen.file_name(language, name)
        files[fname] = source
        roles[language] = fname
        if language == "python" and proof is not None:
            targets[language] = {"file": fname, "checked": "run on the registered sample "
                                 "in a separate interpreter",
                                 "rows": len(proof[0]), "tolerance": TOLERANCE,
                                 "max_abs_diff": check_python(source, proof)}
        else:
            targets[language] = {"file": fname, "checked": "generated from the intermediate "
                                 "form checked on the sample; computes in float64 in the same "
                                 "order"}
    header = codegen.identifier(name) + ".h"
    files[header] = c_header(model_ir, name)
    roles["c_header"] = header
    return usage_returns(model_ir), targets


def c_header(model_ir: ModelIR, name: str) -> str:
    """Declarations for the generated C file, with the input names in the order it reads them."""
    from modelport.compile.codegen import file_name, identifier
    from modelport.compile.codegen.c import CLowering
    from modelport.compile.codegen.lowering import shown
    from modelport.quoting.code import c_literal, comment, comment_text

    sym = identifier(name)
    up = sym.upper()
    sig = model_ir.signature

    def names(cols: list[str]) -> str:
        return "{" + ", ".join([c_literal(c) for c in cols] + ["NULL"]) + "}"

    title = (f"Declarations for {comment_text(file_name('c', name))}, the model {shown(name)} "
             "compiled to C by modelport.")
    return (f"{comment('c', title)}\n"
            f"#ifndef {up}_H\n#define {up}_H\n\n#include <stddef.h>\n\n"
            f"#define {up}_N_OUTPUTS {CLowering(model_ir).n_out()}\n"
            f"#define {up}_N_NUMERIC {len(sig.numeric)}\n"
            f"#define {up}_N_CATEGORICAL {len(sig.categorical)}\n\n"
            f"/* num[i] is the input named {up}_NUMERIC[i] (NAN for missing), cat[i] the one "
            f"named\n   {up}_CATEGORICAL[i] (NULL for missing); both lists end with NULL. */\n"
            f"static const char *const {up}_NUMERIC[] = {names(sig.numeric)};\n"
            f"static const char *const {up}_CATEGORICAL[] = {names(sig.categorical)};\n\n"
            f"void {sym}_score(const double *num, const char *const *cat, double *out);\n\n"
            f"#endif\n")


def _onnx_layout(data: bytes) -> dict | None:
    """How the graph is fed and read (modelport keeps it in the graph's metadata)."""
    try:
        import onnx
    except ImportError:
        try:
            import onnxruntime as ort
        except ImportError:
            return None
        meta = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).get_modelmeta()
        text = meta.custom_metadata_map.get("modelport")
        return json.loads(text) if text else None
    for prop in onnx.load_from_string(data).metadata_props:
        if prop.key == "modelport":
            return json.loads(prop.value)
    return None


def example_row(signature: dict) -> dict:
    """A row for usage examples made from the signature alone (never a training row): the
    first known category and the middle of the seen range."""
    row = {}
    for c in signature["inputs"]:
        if c["kind"] == "categorical":
            row[c["name"]] = (c.get("categories") or [None])[0]
        elif c.get("min") is not None and c.get("max") is not None:
            mid = (c["min"] + c["max"]) / 2
            row[c["name"]] = (int(round(mid)) if c.get("dtype") in ("int64", "bool")
                              else round(mid, 2))
        else:
            row[c["name"]] = 0.0
    return row


def _example_score(files: dict, roles: dict, signature: dict, example: dict
                   ) -> list[float] | None:
    if "compiled" not in roles:
        return None
    from modelport.kernel import Model, Program

    ir = json.loads(files[roles["compiled"]])
    model = Model(Program({**ir, "signature": signature}), signature, format="compiled")
    try:
        out = model.run(example)
    except ValueError:  # a signature too thin to make a scorable row from
        return None
    values = out.get("proba", out.get("value"))
    if values is None:
        return None
    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


# --------------------------------------------------------------------------- README


def readme(manifest: dict, signature: dict, parity: dict, example: dict,
           score: list[float] | None) -> str:
    """Copy-paste usage of every target in the bundle.

    Names and categories come from the model: in prose they appear in the display form of
    :func:`~modelport.quoting.code.comment_text`, in snippets as the target's literals, and
    the Node command line is quoted for the shell as one word.
    """
    import shlex

    from modelport.quoting.code import comment_text, java_literal, javascript_literal

    name, files = manifest["model"], manifest["files"]
    js_row = _js(example)
    lines = [
        f"# {manifest['uri']}: in-app bundle",
        "",
        f"Everything needed to score `{name}` inside an application, with no server and no "
        "network hop. Written by `modelport export`; every file below was checked against "
        f"the native model on the version's registered sample ({parity['sample_rows']} rows; "
        "figures in `parity.json`).",
        "",
        "| file | what |",
        "| --- | --- |",
    ]
    what = {
        "compiled": "the model's intermediate form (JSON), scored by `modelport_inapp.py`",
        "runtime": "the in-app runtime: one Python file needing only NumPy",
        "onnx": "ONNX graph for onnxruntime / onnxruntime-web (float32 or float64 inputs, see "
                "`bundle.json`)",
        "javascript": "ES module, no dependencies: `score(row)`",
        "java": "one Java class, no dependencies: `score(Map<String, Object>)`",
        "c": "C99, needs only libm: `score(num, cat, out)`",
        "c_header": "its declarations and the order of its inputs",
        "go": "one Go file, no dependencies: `Score(map[string]any)`",
        "python": "pure Python, standard library only: `score(row)`",
        "signature": "input names, kinds, categories and ranges; task and classes",
        "parity": "how each file was checked, and its largest difference on the sample",
        "readme": "this file",
    }
    for role, fname in files.items():
        lines.append(f"| `{fname}` | {what.get(role, role)} |")
    lines += [
        "",
        "## Inputs",
        "",
        "One row is keyed by input name; a missing value is `null` / `None` / `NaN`.",
        "",
    ]
    for c in signature["inputs"]:
        if c["kind"] == "categorical":
            cats = c.get("categories") or []
            shown = (", ".join(f"`{comment_text(str(v))}`" for v in cats[:12])
                     + (", ..." if len(cats) > 12 else ""))
            lines.append(f"- `{comment_text(c['name'])}`: category ({shown})")
        else:
            rng = (f", seen in training: {c['min']:g} to {c['max']:g}"
                   if c.get("min") is not None and c.get("max") is not None else "")
            lines.append(f"- `{comment_text(c['name'])}`: number{rng}")
    if any(comment_text(str(v)) != str(v) for c in signature["inputs"]
           for v in [c["name"], *(c.get("categories") or [])[:12]]):
        lines += ["", "Characters outside letters, digits and simple punctuation are shown "
                  "above as %XX escapes (UTF-8 bytes); the generated code and `signature.json` "
                  "hold the exact text."]
    returns = manifest.get("returns") or "the model's outputs"
    shown_score = ""
    if score is not None:
        shown_score = " gives `[" + ", ".join(f"{v:.6g}" for v in score) + "]`"
    lines += [
        "",
        f"The example row used below{shown_score}. Generated code returns {returns}.",
        "",
        "`modelport_inapp.py` checks every row as modelport's web service does: an unknown "
        "or absent field, text in a numeric field, a category not seen in training or a "
        "number outside the range seen in training is refused with an error naming the "
        "field (`unseen_categories=\"warn\"` / `out_of_range=\"warn\"` let the last two "
        "through). Generated code does not check: a category it has not seen takes the "
        "model's own handling (a one-hot encoder that ignores unknown categories scores it "
        "as none of the known ones), so check against `signature.json` where input comes "
        "from users.",
    ]
    if "runtime" in files:
        lines += [
            "",
            "## Python: modelport.inapp (NumPy only)",
            "",
            "```python",
            "import modelport_inapp as inapp        # this folder on sys.path; or: from "
            "modelport import inapp",
            "",
            f"model = inapp.load(\"{name}-bundle\")    # this folder",
            f"model.predict_proba({_py(example)})" if signature["task"] == "classification"
            else f"model.predict({_py(example)})",
            "```",
            "",
            "`predict` and `predict_proba` take a dict (one row), a list of dicts, a dict of "
            "columns or a 2-D array in input order. Needs `numpy` (and `onnxruntime` for "
            "`inapp.load(..., format=\"onnx\")`).",
        ]
    if "javascript" in files:
        lines += [
            "",
            "## JavaScript (browser or Node)",
            "",
            "```html",
            "<script type=\"module\">",
            f"  import {{ score }} from {javascript_literal('./' + files['javascript'])};",
            f"  const out = score({js_row});",
            "</script>",
            "```",
            "",
            "Node:",
            "",
            "```sh",
            "node --input-type=module -e " + shlex.quote(
                f"import {{score}} from {javascript_literal('./' + files['javascript'])}; "
                f"console.log(score({js_row}))"),
            "```",
        ]
    if "java" in files:
        cls = files["java"][:-5]
        lines += [
            "",
            "## Java (JVM 8+)",
            "",
            "```java",
            "Map<String, Object> row = new HashMap<>();",
            *[f"row.put({java_literal(k)}, {_java(v)});" for k, v in example.items()],
            f"double{'' if signature['task'] == 'regression' else '[]'} out = {cls}.score(row);",
            "```",
            "",
            f"`javac {files['java']} YourApp.java && java YourApp`",
        ]
    if "c" in files:
        from modelport.compile.codegen import identifier

        sym = identifier(name)
        nums = [c for c in signature["inputs"] if c["kind"] == "numeric"]
        cats = [c for c in signature["inputs"] if c["kind"] == "categorical"]
        lines += [
            "",
            "## C (C99, libm)",
            "",
            "```c",
            f"#include \"{files['c_header']}\"",
            "",
            f"double num[] = {{{', '.join(_c_num(example[c['name']]) for c in nums) or '0'}}};"
            f"  /* {sym.upper()}_NUMERIC order; NAN = missing */",
            f"const char *cat[] = {{{', '.join(_c_str(example[c['name']]) for c in cats) or 'NULL'}}};"
            f"  /* {sym.upper()}_CATEGORICAL order; NULL = missing */",
            f"double out[{sym.upper()}_N_OUTPUTS];",
            f"{sym}_score(num, cat, out);",
            "```",
            "",
            f"`cc -O2 -std=c99 your_app.c {files['c']} -lm`",
        ]
    if "go" in files:
        from modelport.compile.codegen import identifier
        from modelport.quoting.code import go_literal

        sym = identifier(name)
        lines += [
            "",
            "## Go",
            "",
            f"Put `{files['go']}` in a package folder `{sym}/` of your module, then:",
            "",
            "```go",
            f"out := {sym}.Score(map[string]any{{"
            f"{', '.join(f'{go_literal(k)}: {_go(v)}' for k, v in example.items())}}})",
            "```",
        ]
    if "python" in files:
        lines += [
            "",
            "## Python, standard library only",
            "",
            "```python",
            f"from {files['python'][:-3]} import score",
            f"score({_py(example)})",
            "```",
        ]
    if "onnx" in files:
        lay = manifest.get("onnx") or {}
        lines += [
            "",
            "## ONNX (onnxruntime, onnxruntime-web)",
            "",
            "```python",
            "import modelport_inapp as inapp",
            f"model = inapp.load(\"{name}-bundle\", format=\"onnx\")   # needs onnxruntime",
            "```",
            "",
            "Fed directly, the graph takes "
            + ("one `[N, 1]` tensor per input (numbers as "
               f"`{lay.get('dtype', 'float32')}`, categories as strings; a missing category is "
               f"the string `{lay.get('missing')}`)" if lay.get("inputs") == "columns"
               else f"one `[N, {len(signature['inputs'])}]` tensor `{(lay.get('names') or ['X'])[0]}`"
               f" of `{lay.get('dtype', 'float32')}`")
            + "; the outputs are "
            + ", ".join(f"`{v}` ({k})" for k, v in (lay.get("outputs") or {}).items())
            + ". `bundle.json` holds this layout for code that feeds the graph itself (as "
            "the onnxruntime-web example in modelport's `examples/inapp/` does). It "
            "computes in the precision of its inputs; `parity.json` says how far it is from "
            "the native model.",
        ]
    return "\n".join(lines) + "\n"


# values of the example row in each language: text through modelport.quoting.code


def _py(row: dict) -> str:
    from modelport.quoting.code import python_literal

    def value(v: object) -> str:
        return python_literal(v) if isinstance(v, str) else repr(v)

    return "{" + ", ".join(f"{python_literal(k)}: {value(v)}" for k, v in row.items()) + "}"


def _js(row: dict) -> str:
    from modelport.quoting.code import javascript_literal

    def value(v: str | float | None) -> str:
        if v is None:
            return "null"
        return javascript_literal(v) if isinstance(v, str) else repr(float(v))

    return "{" + ", ".join(f"{javascript_literal(k)}: {value(v)}" for k, v in row.items()) + "}"


def _java(v: str | float | None) -> str:
    from modelport.quoting.code import java_literal

    if v is None:
        return "null"
    if isinstance(v, str):
        return java_literal(v)
    return repr(float(v))


def _go(v: str | float | None) -> str:
    from modelport.quoting.code import go_literal

    if v is None:
        return "nil"
    if isinstance(v, str):
        return go_literal(v)
    return repr(float(v))


def _c_num(v: float | None) -> str:
    return "NAN" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _c_str(v: str | None) -> str:
    from modelport.quoting.code import c_literal

    if v is None:
        return "NULL"
    # an example category C cannot hold is shown as missing rather than cut at its NUL
    return "NULL" if "\0" in v else c_literal(v)
