"""PMML artefacts, written by modelport's own compiler and scored by pypmml.

A model is read into the intermediate form (:mod:`modelport.compile`), the form is proven
equal to the native model on the registration sample in NumPy, and only then written as
PMML 4.4. Scoring goes through pypmml, which runs the PMML in a Java process: one gateway
per Python process, started on first use and shut down at exit. PMML files made elsewhere
can be imported: :func:`inspect` reads their signature.
"""

from __future__ import annotations

import atexit
import json
import shutil
import threading
import xml.etree.ElementTree as ET

import numpy as np

from modelport.errors import ConversionError, UserError, require
from modelport.predictor import Predictor
from modelport.signature import Column, Signature

NAME = "pmml"
EXTRA = "pmml"
TOLERANCE = 1e-6

#: how far the compiled form may be from the native model before it is refused
IR_TOLERANCE = {"float64": 1e-9, "float32": 1e-6}

_gateway_lock = threading.Lock()
_gateway_started = False


def available() -> bool:
    try:
        import pypmml  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


def convert(model, signature: Signature, sample) -> bytes:
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
    """A Predictor scoring PMML ``data`` with pypmml."""
    return PmmlPredictor(data, signature)


def inspect(data: bytes) -> Signature:
    """The signature of a PMML document made elsewhere.

    Inputs are the active fields of the top model's MiningSchema, numeric when their
    DataField is continuous and not a string, categorical otherwise (with the DataField's
    Values as categories); the task comes from ``functionName`` and the classes from the
    target field's Values.
    """
    root = _parse(data)
    ns = _namespace(root)
    fields = {f.get("name"): f for f in root.iter(f"{ns}DataField")}
    model = _top_model(root, ns)
    function = model.get("functionName")
    task = {"classification": "classification", "regression": "regression",
            "clustering": "clustering"}.get(function)
    if task is None:
        raise UserError(f"PMML model function {function!r} is not supported: "
                        "use a classification, regression or clustering model")
    inputs, target = [], None
    for mf in model.find(f"{ns}MiningSchema"):
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
        values = [v.get("value") for v in df.findall(f"{ns}Value")
                  if v.get("property", "valid") == "valid"]
        numeric = df.get("optype") == "continuous" and df.get("dataType") not in ("string",
                                                                                 "boolean")
        if numeric:
            inputs.append(Column(name=name, dtype="float64", kind="numeric", nullable=True))
        else:
            inputs.append(Column(name=name, dtype="string", kind="categorical", nullable=True,
                                 categories=values or None))
    classes = None
    if task == "classification":
        df = fields.get(target)
        data_type = df.get("dataType") if df is not None else None
        values = [] if df is None else [v.get("value") for v in df.findall(f"{ns}Value")
                                        if v.get("property", "valid") == "valid"]
        if not values:
            # no declared target values: the classes the Output gives probabilities for
            values = [o.get("value") for o in model.iter(f"{ns}OutputField")
                      if o.get("feature") == "probability" and o.get("value") is not None]
        classes = [_typed(v, data_type) for v in values] or None
    return Signature(inputs=inputs, task=task, classes=classes)


class PmmlPredictor(Predictor):
    """Scores a PMML document with pypmml, a batch (one JSON document) per call."""

    format = NAME

    def __init__(self, data: bytes, signature: Signature) -> None:
        super().__init__(signature)
        _start_gateway()
        from pypmml import Model

        self._model = Model.fromString(data.decode("utf-8") if isinstance(data, bytes)
                                       else str(data))
        self._primary_column, self._proba_columns = self._output_columns(data)
        # a clustering model may name its clusters: cluster ids are their positions
        root = _parse(data)
        clusters = list(root.iter(f"{_namespace(root)}Cluster"))
        self._cluster_ids = {}
        for i, c in enumerate(clusters):
            for key in (c.get("id"), c.get("name")):
                if key is not None:
                    self._cluster_ids.setdefault(key, i)
        for i in range(len(clusters)):  # unnamed clusters are numbered from 1
            self._cluster_ids.setdefault(str(i + 1), i)

    def _gives_proba(self) -> bool:
        return self._proba_columns is not None

    def _output_columns(self, data: bytes) -> tuple[str | None, list[str] | None]:
        """The result column of the prediction and those of each class's probability.

        Named by the top model's Output element when it has one; else pypmml's own names
        (``predicted_<target>``, ``probability_<class>``).
        """
        root = _parse(data)
        ns = _namespace(root)
        primary, by_class = None, {}
        output = _top_model(root, ns).find(f"{ns}Output")
        for field in [] if output is None else output.findall(f"{ns}OutputField"):
            feature = field.get("feature", "predictedValue")
            if feature == "predictedValue" and primary is None:
                primary = field.get("name")
            elif feature == "probability" and field.get("value") is not None:
                by_class.setdefault(field.get("value"), field.get("name"))
        names = set(self._model.outputNames)
        if primary is None:
            primary = next((n for n in self._model.outputNames if n.startswith("predicted_")),
                           None)
        if self.signature.task != "classification" or not self.signature.classes:
            return primary, None
        columns = []
        for c in self.signature.classes:
            name = by_class.get(str(c), f"probability_{c}")
            if name not in names:
                return primary, None
            columns.append(name)
        return primary, columns

    def _run(self, frame) -> dict[str, np.ndarray]:
        result = self._score(frame)
        task = self.signature.task
        if task == "classification":
            if self._proba_columns is not None:
                proba = np.column_stack([_floats(result[c]) for c in self._proba_columns])
                return {"label": self._labels_from_proba(proba), "proba": proba}
            return {"label": self._labels(result[self._primary(result)])}
        if task == "regression":
            return {"value": _floats(result[self._primary(result)])}
        clusters = result[self._primary(result)]
        return {"cluster": np.asarray([self._cluster_ids.get(_text(c), -1) for c in clusters],
                                      dtype=np.int64)}

    def _primary(self, result: dict) -> str:
        if self._primary_column in result:
            return self._primary_column
        return next(iter(result))

    def _labels(self, values) -> np.ndarray:
        by_text = {str(c): c for c in self.signature.classes or []}
        return np.asarray([by_text.get(_text(v), v) for v in values])

    def _score(self, frame) -> dict[str, list]:
        # pypmml's own DataFrame path writes numbers with 10 decimals; JSON written here
        # keeps every double exact and sends missing values as null
        columns = [_json_column(frame[c].to_numpy()) for c in frame.columns]
        payload = json.dumps({"columns": list(frame.columns), "data": list(zip(*columns, strict=True))},
                             allow_nan=False)
        with _gateway_lock:
            text = self._model.call("predict", payload)
        out = json.loads(text)
        names = out["columns"]
        rows = out["data"]
        return {n: [r[j] for r in rows] for j, n in enumerate(names)}


def _json_column(values: np.ndarray) -> list:
    """A column as JSON values: Python floats or strings, ``None`` for missing."""
    import pandas as pd

    missing = pd.isna(values)
    out = values.astype(object)
    out[missing] = None
    return out.tolist()


def _text(value) -> str:
    """A predicted value as PMML writes it (JSON may give ``1.0`` for the category ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _floats(values) -> np.ndarray:
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


def _parse(data: bytes) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise UserError(f"the file is not valid PMML (XML error: {exc})") from None


def _namespace(root: ET.Element) -> str:
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


_MODEL_TAGS = ("RegressionModel", "TreeModel", "MiningModel", "ClusteringModel",
               "GeneralRegressionModel", "NaiveBayesModel", "NeuralNetwork",
               "SupportVectorMachineModel", "NearestNeighborModel", "Scorecard",
               "RuleSetModel", "BayesianNetworkModel", "GaussianProcessModel")


def _top_model(root: ET.Element, ns: str) -> ET.Element:
    for child in root:
        if child.tag.removeprefix(ns) in _MODEL_TAGS:
            return child
    raise UserError("the PMML file holds no model element this format can score")


def _typed(value: str, data_type: str | None):
    if data_type == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if data_type in ("double", "float"):
        try:
            return float(value)
        except ValueError:
            return value
    return value
