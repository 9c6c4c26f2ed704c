"""PMML artefacts: written by modelport's own compiler, or made elsewhere and imported.

A fitted model is read into the intermediate form (:mod:`modelport.compile`), the form is
proven equal to the native model on the registration sample in NumPy, and only then
written as PMML 4.4; such a file is scored by pypmml, which runs the PMML in a Java
process (one gateway per Python process, started on first use and shut down at exit), as
the independent check of the writer.

A PMML file made elsewhere (:func:`inspect` reads its signature) is read into the form by
:mod:`modelport.compile.from_pmml` when the form can say exactly what it computes, and then
scored by that form, with no JVM; the import stores the form as the version's ``compiled``
artefact (:func:`derived_artefacts`). The form is proven against the file's own
ModelVerification records when it has them. A file the reader cannot read is scored by
pypmml, with the reason kept; one whose records neither reproduces is refused.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from modelport.compile.from_pmml import MODEL_TAGS, canonical, read_pmml, top_model
from modelport.errors import ConversionError, UserError, require
from modelport.predictor import Predictor
from modelport.signature import Column, Signature

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    import pandas as pd

    from modelport.compile.fast import Prepared
    from modelport.compile.ir import ModelIR
    from modelport.registry import Artefact

NAME = "pmml"
EXTRA = "pmml"
TOLERANCE = 1e-6

#: how far the compiled form may be from the native model before it is refused
IR_TOLERANCE = {"float64": 1e-9, "float32": 1e-6}
#: how far the read form of a file made elsewhere may be from its ModelVerification records
VERIFY_TOLERANCE = 1e-9
#: ``auto`` (the read form when the file can be read, else pypmml), ``compiled`` or ``pypmml``
RUNTIME_ENV = "MODELPORT_PMML_RUNTIME"

_gateway_lock = threading.Lock()
_gateway_started = False


def available() -> bool:
    try:
        import pypmml  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    """PMML for fitted ``model``, after proving its compiled form on ``sample``.

    The form must match the native model within 1e-9 (1e-6 for models that compute in
    float32, as XGBoost does) with no label changed, else :class:`ConversionError` says by
    how much it differs.
    """
    from modelport.compile import evaluate, to_ir
    from modelport.compile.pmml import to_pmml
    from modelport.formats.native import NativePredictor
    from modelport.parity import compare

    model_ir = to_ir(model, signature)
    frame = signature.coerce(sample)
    if len(frame):
        reference = NativePredictor(model, signature)._run(frame)
        compiled = evaluate(model_ir, frame)
        tolerance = IR_TOLERANCE[model_ir.precision]
        result = compare(reference, compiled, signature.task, tolerance)
        if not result["passed"]:
            raise ConversionError(
                f"the compiled form of {type(model).__name__} differs from the native model "
                f"on the sample: {result['reason']}"
            )
    return to_pmml(model_ir).encode("utf-8")


def load(data: bytes, signature: Signature) -> PmmlPredictor:
    """A Predictor scoring PMML ``data``: with its read form when the file was made
    elsewhere and the reader can read it, else with pypmml."""
    return PmmlPredictor(data, signature)


def inspect(data: bytes) -> Signature:
    """The signature of a PMML document made elsewhere.

    Inputs are the active fields of the top model's MiningSchema, numeric when their
    DataField is continuous and not a string, categorical otherwise (with the DataField's
    Values as categories); the task comes from ``functionName`` and the classes from the
    target field's Values, else from the Output's probabilities, else from the classes the
    model itself names (score distributions, node scores, regression tables). Classes are
    integers when every one is a whole number (``1.0`` is the class ``1``).
    """
    root = read_pmml(data)
    fields = {f.get("name"): f for f in root.iter("DataField")}
    model = top_model(root)
    function = model.get("functionName")
    task = {"classification": "classification", "regression": "regression",
            "clustering": "clustering"}.get(function) if function is not None else None
    if task is None:
        raise UserError(f"PMML model function {function!r} is not supported: "
                        "use a classification, regression or clustering model")
    inputs, target = [], None
    schema = model.find("MiningSchema")
    for mf in [] if schema is None else schema.findall("MiningField"):
        name = mf.get("name")
        usage = mf.get("usageType", "active")
        if usage in ("target", "predicted"):
            target = target or name
            continue
        if usage != "active":
            continue
        df = fields.get(name)
        if df is None:
            raise UserError(f"PMML MiningField {name!r} has no DataField: the file is invalid")
        assert name is not None  # required by PMML
        values = [v.attrib["value"] for v in df.findall("Value")
                  if v.get("property", "valid") == "valid"]
        numeric = df.get("optype") == "continuous" and df.get("dataType") not in ("string",
                                                                                 "boolean")
        if numeric:
            inputs.append(Column(name=name, dtype="float64", kind="numeric", nullable=True))
        else:
            inputs.append(Column(name=name, dtype="string", kind="categorical", nullable=True,
                                 categories=[canonical(v, df.get("dataType")) for v in values]
                                 or None))
    classes = None
    if task == "classification":
        df = fields.get(target)
        data_type = df.get("dataType") if df is not None else None
        values = [] if df is None else [v.attrib["value"] for v in df.findall("Value")
                                        if v.get("property", "valid") == "valid"]
        if not values:
            # no declared target values: the classes the Output gives probabilities for
            values = [o.attrib["value"] for o in model.iter("OutputField")
                      if o.get("feature") == "probability" and o.get("value") is not None]
        if not values:
            values = _model_classes(model)
        classes = _typed_classes(values, data_type) or None
    return Signature(inputs=inputs, task=task, classes=classes)


def _model_classes(model: ET.Element) -> list[str]:
    """The classes a classifier names itself, in the order met."""
    seen: dict[str, None] = {}
    for tag, attr in (("ScoreDistribution", "value"), ("RegressionTable", "targetCategory"),
                      ("TargetValueCount", "value"), ("Node", "score")):
        for el in model.iter(tag):
            value = el.get(attr)
            if value is not None:
                seen.setdefault(value, None)
        if seen:
            # the first kind of element that names classes names them all
            return list(seen)
    return []


def _typed_classes(values: list[str], data_type: str | None) -> list:
    """Class labels: integers when the target is numeric and every class a whole number,
    floats for other numbers, text otherwise."""
    if data_type not in ("integer", "double", "float"):
        return list(values)
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return list(values)
    if all(n.is_integer() for n in numbers):
        return [int(n) for n in numbers]
    return numbers


# --- the read form: the runtime of PMML made elsewhere ----------------------------------------


def is_own(root: ET.Element) -> bool:
    """Whether modelport's own writer made this document (its Header says so)."""
    header = root.find("Header")
    app = header.find("Application") if header is not None else None
    return app is not None and app.get("name") == "modelport"


def read_form(data: bytes, signature: Signature
              ) -> tuple[ModelIR | None, dict[str, Any] | None, str | None]:
    """``(form, verification, refusal)``: the read form of a PMML file made elsewhere and
    its proof against the file's own ModelVerification records, or ``None`` and why not.

    A form that differs from the records by more than 1e-9 is not used. Files written by
    modelport are never read: pypmml scoring them is the independent check of the writer.
    """
    key = (hashlib.sha256(data).hexdigest(), json.dumps(signature.to_dict(), sort_keys=True))
    with _forms_lock:
        if key not in _forms:
            _forms[key] = _read_form(data, signature)
            while len(_forms) > 16:
                _forms.pop(next(iter(_forms)))
        return _forms[key]


_forms: dict = {}
_forms_lock = threading.Lock()


def _read_form(data: bytes, signature: Signature
               ) -> tuple[ModelIR | None, dict[str, Any] | None, str | None]:
    from modelport.compile import evaluate
    from modelport.compile.from_pmml import to_ir

    root = read_pmml(data)
    if is_own(root):
        return None, None, "written by modelport: scored by pypmml, the independent check " \
                           "of modelport's PMML writer"
    try:
        model_ir = to_ir(root, signature)
    except ConversionError as exc:
        return None, None, str(exc)
    records = verification(root, signature)
    if records is None:
        return model_ir, None, None
    frame, expected, _ = records
    result = check_records(expected, evaluate(model_ir, frame), signature)
    if not result["passed"]:
        return None, result, (f"the read form differs from the file's ModelVerification "
                              f"({result['reason']})")
    return model_ir, result, None


def verification(root: ET.Element, signature: Signature
                 ) -> tuple[pd.DataFrame, dict[str, np.ndarray],
                            dict[str, tuple[float, float]]] | None:
    """The file's ModelVerification as ``(inputs frame, expected outputs, precision)``, or
    ``None``.

    Expected outputs map ``proba`` (when every class has a probability field), ``label``,
    ``value`` or ``cluster`` to arrays; a record without the field holds no answer there
    (NaN, or None for labels). ``precision`` maps ``proba`` and ``value`` to the
    ``(precision, zeroThreshold)`` the file states for them.
    """
    import pandas as pd

    from modelport.compile.from_pmml import verification_records

    rows, vfields = verification_records(root)
    if not rows:
        return None
    model = top_model(root)
    data_types = {f.get("name"): f.get("dataType") for f in root.iter("DataField")}
    columns: dict[str, list] = {}
    for col in signature.inputs:
        texts = [r.get(col.name) for r in rows]
        if col.kind == "numeric":
            columns[col.name] = [float(t) if t is not None else np.nan for t in texts]
        else:
            columns[col.name] = [canonical(t, data_types.get(col.name)) if t is not None
                                 else None for t in texts]
    frame = signature.coerce(pd.DataFrame(columns))
    outputs = {o.get("name"): o for o in root.iter("OutputField")}
    targets = {mf.get("name") for mf in model.iter("MiningField")
               if mf.get("usageType") in ("target", "predicted")}
    predicted, proba = None, {}
    classes = signature.classes or []
    for name in vfields:
        if name in signature.names:
            continue
        of = outputs.get(name)
        feature = of.get("feature", "predictedValue") if of is not None else (
            "predictedValue" if name in targets else None)
        if feature == "predictedValue" and predicted is None:
            predicted = name
        elif feature == "probability" and of is not None and of.get("value") is not None \
                and classes:
            try:
                proba[_class_position(of.get("value"), classes)] = name
            except ValueError:
                continue
    expected: dict[str, np.ndarray] = {}
    task = signature.task
    if task == "classification":
        if proba and sorted(proba) == list(range(len(classes))):
            expected["proba"] = np.array([[_float(r.get(proba[k])) for k in range(len(classes))]
                                          for r in rows], dtype=np.float64)
        if predicted is not None:
            expected["label"] = np.array([_class_of(r.get(predicted), classes) for r in rows],
                                         dtype=object)
    elif predicted is not None and task == "regression":
        expected["value"] = np.array([_float(r.get(predicted)) for r in rows])
    elif predicted is not None:
        ids = cluster_ids(root)
        expected["cluster"] = np.array([ids.get(r[predicted], -1) if r.get(predicted)
                                        is not None else -1 for r in rows], dtype=np.int64)
    if not expected:
        return None
    precision = {}
    if "proba" in expected:
        stated = [vfields[n] for n in proba.values()]
        precision["proba"] = (max(f["precision"] for f in stated), max(f["zero"] for f in stated))
    if "value" in expected:
        precision["value"] = (vfields[predicted]["precision"], vfields[predicted]["zero"])
    return frame, expected, precision


def check_records(expected: dict, got: dict, signature: Signature,
                  tolerance: float = VERIFY_TOLERANCE, precision: dict | None = None) -> dict:
    """Compare outputs with the expected ones of ModelVerification records.

    Probabilities within ``tolerance``, values within ``tolerance`` relative to their size,
    labels and clusters exactly; a record with no answer matches a row with none (NaN).
    With ``precision`` (see :func:`verification`) numbers are compared as the file states
    instead: within ``precision`` relative to the expected one, or both under the zero
    threshold.
    """
    rows = len(next(iter(expected.values())))
    worst, wrong, why = 0.0, np.zeros(rows, dtype=bool), []
    for key, want in expected.items():
        have = got.get(key)
        if have is None:
            return {"rows": rows, "passed": False, "max_abs_diff": None, "label_flips": None,
                    "reason": f"gives no {key}, which the records hold"}
        if key in ("proba", "value"):
            a = np.asarray(want, dtype=np.float64).reshape(rows, -1)
            b = np.asarray(have, dtype=np.float64).reshape(rows, -1)
            both_nan = np.isnan(a) & np.isnan(b)
            delta = np.where(both_nan, 0.0, np.abs(a - b))
            delta[np.isnan(delta)] = np.inf
            size = np.abs(np.nan_to_num(a))
            if precision is not None and key in precision:
                relative, zero = precision[key]
                near_zero = (size <= zero) & (np.abs(np.nan_to_num(b)) <= zero)
                bad = ((delta > relative * size) & ~near_zero).any(axis=1)
            elif key == "value":
                bad = (delta / np.maximum(1.0, size) > tolerance).any(axis=1)
            else:
                bad = (delta > tolerance).any(axis=1)
            worst = max(worst, float(delta.max()) if rows else 0.0)
            if bad.any():
                why.append(f"{key} differs on {int(bad.sum())} of {rows} records, by up to "
                           f"{float(delta[bad].max()):.3g}")
        else:
            answered = np.array([w is not None and w != -1 for w in want])
            bad = answered & (np.asarray([str(v) for v in want])
                              != np.asarray([str(v) for v in have]))
            if key == "label" and "proba" in expected:
                # where the probabilities agree the label follows them (ties aside)
                continue
            if bad.any():
                why.append(f"{key} differs on {int(bad.sum())} of {rows} records")
        wrong |= bad
    out: dict[str, object] = {"rows": rows, "max_abs_diff": worst,
                              "label_flips": int(wrong.sum()), "tolerance": tolerance,
                              "passed": not wrong.any()}
    if why:
        out["reason"] = "; ".join(why)
    return out


def cluster_ids(root: ET.Element) -> dict[str, int]:
    """A clustering model's cluster ids and names, each to the cluster's position."""
    clusters = list(root.iter("Cluster"))
    ids: dict[str, int] = {}
    for i, c in enumerate(clusters):
        for key in (c.get("id"), c.get("name")):
            if key is not None:
                ids.setdefault(key, i)
    for i in range(len(clusters)):  # unnamed clusters are numbered from 1
        ids.setdefault(str(i + 1), i)
    return ids


def _float(text: str | None) -> float:
    return float(text) if text is not None else np.nan


def _class_position(text: str | None, classes: list) -> int:
    from modelport.compile.from_pmml import class_index

    try:
        return class_index(text, classes)
    except ConversionError:
        raise ValueError(text) from None


def _class_of(text: str | None, classes: list) -> object:
    if text is None:
        return None
    try:
        return classes[_class_position(text, classes)]
    except ValueError:
        return text


# --- import ----------------------------------------------------------------------------------


def derived_artefacts(data: bytes, signature: Signature, frame: pd.DataFrame | None = None,
                      *, source: str | Path | None = None, formats: Sequence[str] | None = None
                      ) -> tuple[dict[str, Any], list[Artefact], dict[str, bytes],
                                 dict[str, Any]]:
    """What importing PMML ``data`` adds to its own artefact.

    Returns ``(pmml_parity, artefacts, blobs, params)``: the figures of the PMML artefact
    (which runtime scores it and the proofs), the derived ``compiled`` artefact (accepted
    when the file's form was read and reproduces its ModelVerification, else rejected with
    the reason) and no parameters. Raises :class:`UserError` when neither the read form
    nor pypmml reproduces the file's own ModelVerification records.
    """
    from modelport.compile import evaluate
    from modelport.parity import compare
    from modelport.registry import Artefact

    wanted = ("compiled",) if formats is None else tuple(formats)
    forced = os.environ.get(RUNTIME_ENV) or "auto"
    model_ir, proof, refusal = read_form(data, signature)
    if forced == "pypmml":
        model_ir, refusal = None, refusal or f"not read: {RUNTIME_ENV}=pypmml"
    parity: dict = {"runtime": "compiled" if model_ir is not None else "pypmml"}
    if proof is not None:
        parity["verification"] = {k: proof[k] for k in ("rows", "max_abs_diff", "label_flips")
                                  if k in proof}
    if model_ir is None:
        parity["reader"] = refusal
        what = Path(source).name if source else "the PMML file"
        root = read_pmml(data)
        mistakes = pypmml_mistakes(root)
        if mistakes:
            raise UserError(
                f"cannot import {what}: modelport does not read it (reader: {refusal}) and "
                f"pypmml, which would score it, gets it wrong: {'; '.join(mistakes)}; nothing "
                "was registered")
        records = verification(root, signature)
        if records is not None:
            evaluator = _Pypmml(data, signature)
            try:
                # pypmml computes as the file's producer did: proven as the file says
                check = check_records(records[1], evaluator.run(records[0]), signature,
                                      precision=records[2])
            except Exception as exc:  # an evaluator's failure is its disagreement
                check = {"passed": False, "reason": f"pypmml failed: {type(exc).__name__}: "
                                                    f"{str(exc)[:200]}"}
            parity["pypmml_verification"] = {k: check[k] for k in
                                             ("rows", "max_abs_diff", "label_flips")
                                             if k in check}
            if not check["passed"]:
                raise UserError(
                    f"cannot import {what}: neither modelport's reading nor pypmml reproduces "
                    f"its own ModelVerification records (the reader: {refusal}; pypmml: "
                    f"{check['reason']}); nothing was registered")
        artefacts = []
        if "compiled" in wanted:
            artefacts.append(Artefact(format="compiled", status="rejected",
                                      reason=f"the file cannot be read into the form: {refusal}"))
        return parity, artefacts, {}, {}
    rows = signature.coerce(frame) if frame is not None and len(frame) else None
    if rows is not None:
        # pypmml on the sample, for the record: where it differs, the form follows the PMML
        # specification (and the file's own records when it has them)
        try:
            ours = evaluate(model_ir, rows)
            theirs = _Pypmml(data, signature).run(rows)
            figures = compare(ours, theirs, signature.task, TOLERANCE)
            parity["pypmml"] = {k: figures[k] for k in ("rows", "max_abs_diff", "label_flips")
                                if k in figures}
            if not figures["passed"]:
                parity["notes"] = [f"pypmml differs from the read form on the sample "
                                   f"({figures['reason']})"]
        except Exception as exc:  # noqa: BLE001 - pypmml's trouble is only noted
            parity["notes"] = [f"pypmml could not score the sample: {type(exc).__name__}"]
    artefacts, blobs = [], {}
    if "compiled" in wanted:
        compiled = json.dumps(model_ir.to_dict(), allow_nan=True).encode("utf-8")
        figures = {"derived_from": NAME,
                   "reference": "ModelVerification" if proof is not None else None}
        if proof is not None:
            figures.update({k: proof[k] for k in ("rows", "max_abs_diff", "label_flips",
                                                  "tolerance")})
        artefacts.append(Artefact(format="compiled", status="accepted", size=len(compiled),
                                  parity=figures))
        blobs["compiled"] = compiled
    return parity, artefacts, blobs, {}


def pypmml_mistakes(root: ET.Element) -> list[str]:
    """What pypmml is known to score wrongly in this document, one line per PMML construct.

    Each rule names an element or attribute and what pypmml does with it where
    JPMML-Evaluator, the reference, follows the specification (found on files made by
    other tools); a file holding one is refused at import rather than scored wrongly,
    unless modelport reads it itself. Empty when the document holds none of them.
    """
    found: dict[str, None] = {}
    doubles = {f.get("name") for f in root.iter("DataField") if f.get("dataType") == "double"}
    derived = {df.get("name") for df in root.iter("DerivedField")}
    integers = [f.get("name") for f in root.iter("DataField") if f.get("dataType") == "integer"]
    for el in root.iter():
        tag = el.tag
        if tag in MODEL_TAGS and (el.get("x-mathContext") or el.get("mathContext")) == "float" \
                and _reads(el, doubles):
            found["x-mathContext=\"float\" over double fields: pypmml compares and sums the "
                  "double values, where the file's float arithmetic rounds them to float32 "
                  "first"] = None
        if tag in ("Scorecard", "RuleSetModel") and _may_be_missing(el, integers):
            found[f"{tag} over a dataType=\"integer\" field: pypmml reads a missing value of "
                  "it as 0 (a Scorecard takes another Attribute, a rule fires), where PMML "
                  "has it missing"] = None
        if tag == "NearestNeighborModel" and _may_be_missing(
                el, [k.get("field") for k in el.iter("KNNInput")]):
            found["NearestNeighborModel: pypmml gives no answer for a row with a missing "
                  "input, which PMML leaves out of the distance"] = None
        elif tag == "GeneralRegressionModel" and el.get("functionName") == "classification" \
                and _may_be_missing(el):
            found["GeneralRegressionModel classifier: pypmml answers a row whose predictor is "
                  "missing, which PMML gives no answer for"] = None
        elif tag == "TextIndex" and el.get("x-wordRE") is not None:
            found["TextIndex x-wordRE: pypmml ignores the word pattern, so it counts other "
                  "terms than the file's"] = None
        elif tag == "Discretize" and (el.get("defaultValue") is not None
                                      or el.get("mapMissingTo") is not None):
            found["Discretize with defaultValue or mapMissingTo: pypmml leaves a value outside "
                  "every bin, or a missing one, missing instead of giving it that bin"] = None
        elif tag == "Apply" and el.get("function") == "*" and sum(
                a.tag == "FieldRef" and a.get("field") in derived for a in el) == 2:
            found["Apply '*' of two derived fields (an interaction): pypmml gives 0 for some "
                  "such products where PMML gives 1 or -1"] = None
    return list(found)


def _reads(model: ET.Element, names: set) -> bool:
    """Whether the model's MiningSchema takes one of ``names`` as an active field."""
    schema = model.find("MiningSchema")
    return any(mf.get("name") in names and mf.get("usageType", "active") == "active"
               for mf in ([] if schema is None else schema.findall("MiningField")))


def _may_be_missing(model: ET.Element, names: Collection[str | None] | None = None) -> bool:
    """Whether one of the model's active fields (of ``names``, when given) can reach it
    missing: it has no ``missingValueReplacement``."""
    schema = model.find("MiningSchema")
    for mf in [] if schema is None else schema.findall("MiningField"):
        if mf.get("usageType", "active") != "active":
            continue
        if names is not None and mf.get("name") not in names:
            continue
        if mf.get("missingValueReplacement") is None:
            return True
    return False


# --- scoring -----------------------------------------------------------------------------------


class PmmlPredictor(Predictor):
    """Scores a PMML document: its read form (``runtime == "compiled"``) or pypmml."""

    format = NAME

    def __init__(self, data: bytes, signature: Signature, runtime: str | None = None) -> None:
        super().__init__(signature)
        choice = runtime or os.environ.get(RUNTIME_ENV) or "auto"
        if choice not in ("auto", "compiled", "pypmml"):
            raise UserError(f"{RUNTIME_ENV}={choice!r} is not a PMML runtime: use auto, "
                            "compiled or pypmml")
        self._prepared: Prepared | None = None
        self._pypmml: _Pypmml | None = None
        self.reader_refusal: str | None = None
        if choice != "pypmml":
            from modelport.compile.fast import Prepared

            model_ir, _, refusal = read_form(data, signature)
            if model_ir is not None:
                self._prepared = Prepared(model_ir)
                assert model_ir.output is not None  # set by every front end
                self._proba = model_ir.output.gives_proba
                self.runtime = "compiled"
            elif choice == "compiled":
                raise UserError(f"{RUNTIME_ENV}=compiled, but this PMML file cannot be read "
                                f"into the form: {refusal}")
            else:
                self.reader_refusal = refusal
        if self._prepared is None:
            self._pypmml = _Pypmml(data, signature)
            self.runtime = "pypmml"

    def describe(self) -> str:
        return f"{super().describe()} [{self.runtime}]"

    @property
    def proba_hint(self) -> str | None:
        """What to tell a user whose import is refused for the probabilities it gives."""
        if self.runtime != "pypmml" or self.reader_refusal is None:
            return None
        return (f"pypmml scores this file, since modelport cannot read it "
                f"({self.reader_refusal}); nothing was registered")

    def _gives_proba(self) -> bool:
        if self._prepared is not None:
            return self._proba
        assert self._pypmml is not None  # set when there is no read form
        return self._pypmml.gives_proba

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._prepared is not None:
            return self._prepared.run(cols)
        return super()._run_columns(cols)

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if self._prepared is not None:
            return self._prepared.run({c: frame[c].to_numpy() for c in frame.columns})
        assert self._pypmml is not None  # set when there is no read form
        return self._pypmml.run(frame)


class _Pypmml:
    """A PMML document scored by pypmml, a batch (one JSON document) per call."""

    def __init__(self, data: bytes, signature: Signature) -> None:
        _start_gateway()
        from pypmml import Model

        self.signature = signature
        root = read_pmml(data)
        text, self._primary_column, by_class = _for_pypmml(data, root, signature)
        self._model = Model.fromString(text)
        names = set(self._model.outputNames)
        self._proba_columns: list[str] | None = None
        if signature.task == "classification" and signature.classes and by_class:
            columns = [by_class.get(k) for k in range(len(signature.classes))]
            if all(c is not None and c in names for c in columns):
                self._proba_columns = cast("list[str]", columns)  # none is None: checked above
        if self._primary_column not in names:
            self._primary_column = next((n for n in self._model.outputNames
                                         if n.startswith("predicted_")), None)
        self._cluster_ids = cluster_ids(root)
        # scoring reads a boolean column as 0 and 1, which pypmml does not take for booleans
        self._booleans = {f.get("name") for f in root.iter("DataField")
                          if f.get("dataType") == "boolean"}

    @property
    def gives_proba(self) -> bool:
        return self._proba_columns is not None

    def run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        result = self._score(frame)
        task = self.signature.task
        if task == "classification":
            if self._proba_columns is not None:
                proba = np.column_stack([_floats(result[c]) for c in self._proba_columns])
                classes = np.asarray(self.signature.classes)
                return {"label": classes[np.argmax(proba, axis=1)], "proba": proba}
            return {"label": self._labels(result[self._primary(result)])}
        if task == "regression":
            return {"value": _floats(result[self._primary(result)])}
        clusters = result[self._primary(result)]
        return {"cluster": np.asarray([self._cluster_ids.get(_text(c), -1) for c in clusters],
                                      dtype=np.int64)}

    def _primary(self, result: dict[str, list]) -> str:
        if self._primary_column in result:
            return self._primary_column
        return next(iter(result))

    def _labels(self, values: Iterable[Any]) -> np.ndarray:
        classes = self.signature.classes or []
        out = []
        for v in values:
            try:
                out.append(classes[_class_position(_text(v), classes)])
            except ValueError:
                out.append(v)
        return np.asarray(out)

    def _score(self, frame: pd.DataFrame) -> dict[str, list]:
        # pypmml's own DataFrame path writes numbers with 10 decimals; JSON written here
        # keeps every double exact and sends missing values as null
        columns = [_json_column(frame[c].to_numpy()) for c in frame.columns]
        for j, name in enumerate(frame.columns):
            if name in self._booleans:
                columns[j] = [v if v is None else canonical(str(v), "boolean")
                              for v in columns[j]]
        payload = json.dumps({"columns": list(frame.columns), "data": list(zip(*columns, strict=True))},
                             allow_nan=False)
        with _gateway_lock:
            text = self._model.call("predict", payload)
        out = json.loads(text)
        names = out["columns"]
        rows = out["data"]
        return {n: [r[j] for r in rows] for j, n in enumerate(names)}


#: the output field modelport adds for pypmml when a file's Output names no prediction
_PREDICTED = "modelport-predicted-value"


def _for_pypmml(data: bytes, root: ET.Element, signature: Signature
                ) -> tuple[str, str | None, dict[int, str | None]]:
    """``(document, predicted column, probability column by class position)``.

    The result fields are the top model's Output fields, or, in a model chain, those of
    its last model (where a boosting converter puts the probabilities). When they name no
    predicted value (a nearest-neighbour model listing only its neighbours' ids), one is
    added to a copy of the document, so the prediction is never a neighbour's id.
    """
    model = top_model(root)
    fields = []
    node: ET.Element | None = model
    while node is not None:
        output = node.find("Output")
        fields += [] if output is None else output.findall("OutputField")
        seg = node.find("Segmentation")
        if seg is None or seg.get("multipleModelMethod") != "modelChain":
            break
        segments = seg.findall("Segment")
        node = next((c for c in segments[-1] if c.tag in MODEL_TAGS), None) if segments else None
    primary: str | None = None
    by_class: dict[int, str | None] = {}
    classes = signature.classes or []
    for f in fields:
        feature = f.get("feature", "predictedValue")
        value = f.get("value")
        if feature == "predictedValue" and primary is None:
            primary = f.get("name")
        elif feature == "probability" and value is not None and classes:
            try:
                by_class.setdefault(_class_position(value, classes), f.get("name"))
            except ValueError:
                continue
    text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
    if primary is None and model.find("Output") is not None:
        text = _add_predicted(text)
        primary = _PREDICTED
    if not fields and classes:
        # no Output: pypmml names the probabilities after the classes as the model writes them
        for k, c in enumerate(classes):
            by_class[k] = f"probability_{c}"
        for name in _model_classes(model):
            try:
                by_class[_class_position(name, classes)] = f"probability_{name}"
            except ValueError:
                continue
    return text, primary, by_class


def _add_predicted(text: str) -> str:
    """``text`` with a predicted-value OutputField added to the top model's Output.

    The text is edited in place rather than re-serialised, so the document keeps its
    namespace prefixes (inline tables name their columns by prefix).
    """
    tags = "|".join(MODEL_TAGS)
    top = re.search(rf"<(\w+:)?({tags})[\s>]", text)
    assert top is not None  # the caller found the model
    output = re.compile(r"<((?:\w+:)?)Output(\s[^>]*?)?(/?)>").search(text, top.start())
    assert output is not None  # the caller found its Output
    prefix, closed = output.group(1), output.group(3) == "/"
    field = f'<{prefix}OutputField name="{_PREDICTED}" feature="predictedValue"/>'
    if closed:
        return (text[:output.start()] + f"<{prefix}Output{output.group(2) or ''}>{field}"
                f"</{prefix}Output>" + text[output.end():])
    return text[:output.end()] + field + text[output.end():]


def _json_column(values: np.ndarray) -> list:
    """A column as JSON values: Python floats or strings, ``None`` for missing."""
    import pandas as pd

    missing = pd.isna(values)
    out = values.astype(object)
    out[missing] = None
    return out.tolist()


def _text(value: object) -> str:
    """A predicted value as PMML writes it (JSON may give ``1.0`` for the category ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _floats(values: Iterable[Any]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _start_gateway() -> None:
    """Start pypmml's Java gateway once per process and stop it when the process exits."""
    global _gateway_started
    require("pypmml", EXTRA, "PMML scoring")
    if shutil.which("java") is None:
        raise UserError("PMML scoring runs in Java but no 'java' is on PATH: install a Java "
                        "runtime (11 or later) or score another format of this model")
    with _gateway_lock:
        if _gateway_started:
            return
        from pypmml.base import PMMLContext

        PMMLContext.getOrCreate()
        atexit.register(_stop_gateway)
        _gateway_started = True


def _stop_gateway() -> None:
    global _gateway_started
    from pypmml.base import PMMLContext

    with _gateway_lock:
        PMMLContext.shutdown()
        _gateway_started = False
