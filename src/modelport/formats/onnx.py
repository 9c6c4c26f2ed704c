"""ONNX artefacts: a graph run by onnxruntime, converted with skl2onnx (and onnxmltools).

A model fitted on a DataFrame becomes a graph with one ``[None, 1]`` input per column
(float for numeric columns, string for categorical ones); a model fitted on an array becomes
a graph with one ``[None, k]`` float input ``X``. ONNX string inputs cannot hold a missing
value (a NaN fed to one is silently an unknown category), so missing categories are fed as a
sentinel string, and the copy of the model that is converted has its string imputers look
for that sentinel instead of NaN. How to feed and read the graph is kept in the model's
``metadata_props`` so the bytes alone are enough to load it.

The graph computes in float32, where a value can round onto a tree threshold and take the
other branch; the parity check at registration rejects such conversions. HistGradientBoosting
(which compares in float64) is converted with float64 inputs and float64 thresholds instead.

Graphs made elsewhere are read with :func:`read` (which folds weights kept in external data
files into the model, so the stored artefact is one self-contained file) and imported with
:func:`inspect`, which reads the input columns and the task from the graph itself, or takes
the task and classes the user names when the graph does not say (a PyTorch classifier whose
only output is its softmax).
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConversionError, UserError, require
from modelport.predictor import Predictor
from modelport.signature import Column, Signature

if TYPE_CHECKING:
    import onnxruntime as ort
    import pandas as pd
    from onnx import GraphProto, ModelProto, TensorProto

NAME = "onnx"
EXTRA = "onnx"
#: float32 arithmetic: probabilities and (relative) values agree to about 1e-6 when no
#: value lands on a threshold; 1e-4 leaves room for long sums and still catches a flip.
TOLERANCE = 1e-4

#: fed in place of a missing category (an ONNX string tensor cannot hold a missing value)
MISSING = "__modelport_missing__"
_META_KEY = "modelport"
#: opsets onnxruntime 1.17+ runs and onnxmltools' LightGBM/XGBoost converters accept
_TARGET_OPSET = {"": 15, "ai.onnx.ml": 3}
_LABEL_ATTRS = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")
_ELEM_FLOAT, _ELEM_STRING, _ELEM_INT64, _ELEM_DOUBLE = 1, 8, 7, 11
#: protobuf refuses to serialise a message of 2 GiB or more
_PROTOBUF_LIMIT = 2**31 - 1
_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(string)": None}


def available() -> bool:
    """Whether onnx, onnxruntime and skl2onnx are installed: looked up, not imported, since a
    server that only loads artefacts would otherwise import the converter (seconds)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None
                   for m in ("onnx", "onnxruntime", "skl2onnx"))
    except (ImportError, ValueError):  # a module set to None in sys.modules: hidden
        return False


@dataclass
class Layout:
    """How a graph is fed and read: kept as JSON in the model's metadata."""

    #: ``columns`` (one input per column) or ``matrix`` (one [None, k] input)
    inputs: str
    #: input tensor names, one per column (``columns``) or a single one (``matrix``)
    names: list[str]
    #: signature columns in the order the graph takes them
    columns: list[str]
    #: numpy dtype the numeric inputs were converted with (``float32`` or ``float64``)
    dtype: str = "float32"
    #: the string fed for a missing category
    missing: str = MISSING
    #: output name per role: label, proba, value, cluster
    outputs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Layout:
        return cls(**json.loads(text))


# --------------------------------------------------------------------------- converting


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    """The serialized ONNX ModelProto of a fitted scikit-learn, LightGBM or XGBoost model.

    Raises :class:`ConversionError` naming the step no converter can represent.
    """
    require("skl2onnx", EXTRA, "ONNX conversion")
    require("onnxruntime", EXTRA, "ONNX conversion")
    steps = list(_steps(model))
    _check_steps(steps)
    if any(type(s).__module__.split(".")[0] in ("lightgbm", "xgboost") for s in steps):
        _register_gbm_converters()
    by_name = hasattr(model, "feature_names_in_")
    columns = [str(c) for c in model.feature_names_in_] if by_name else signature.names
    unknown = [c for c in columns if c not in signature.names]
    if unknown:
        raise ConversionError(f"onnx: the sample lacks model input column(s) {unknown}")
    kinds = {c.name: c.kind for c in signature.inputs}
    model = _convertible(model, steps)
    steps = list(_steps(model))
    # Per-column inputs let a ColumnTransformer pick columns by name and carry strings;
    # everything else takes one matrix, which is also the cheapest to feed.
    per_column = by_name and (
        any(kinds[c] == "categorical" for c in columns)
        or any(type(s).__name__ == "ColumnTransformer" for s in steps)
    )
    if not per_column and any(kinds[c] == "categorical" for c in columns):
        raise ConversionError("onnx: a model fitted on an array cannot take string columns")
    hgb = [s for s in steps if type(s).__name__.startswith("HistGradientBoosting")]
    attempts = ["float64", "float32"] if len(hgb) == 1 else ["float32"]
    error: Exception | None = None
    for dtype in attempts:
        try:
            proto = _convert(model, steps, columns, kinds, per_column, dtype)
        except ConversionError:
            raise
        except Exception as exc:  # the float64 route is an improvement; float32 is the rule
            error = exc
            continue
        if dtype == "float64":
            try:
                _thresholds_to_double(proto, hgb[0])
                _imputers_to_double(proto, steps)
            except ConversionError as exc:
                error = exc
                continue
        task = signature.task
        outs = [o.name for o in proto.graph.output]
        layout = Layout(
            inputs="columns" if per_column else "matrix",
            names=list(columns) if per_column else ["X"],
            columns=list(columns), dtype=dtype, outputs=_output_roles(model, task, outs),
        )
        _set_layout(proto, layout)
        data = proto.SerializeToString()
        try:
            _session(data)
        except Exception as exc:
            error = exc
            continue
        return data
    raise ConversionError(f"onnx: conversion failed: {type(error).__name__}: {error}"[:500])


def _convert(model: Any, steps: list[Any], columns: list[str], kinds: dict[str, str],
             per_column: bool, dtype: str) -> ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        StringTensorType,
    )
    from sklearn.base import is_classifier

    number = DoubleTensorType if dtype == "float64" else FloatTensorType
    if per_column:
        initial = [(c, StringTensorType([None, 1]) if kinds[c] == "categorical"
                    else number([None, 1])) for c in columns]
    else:
        initial = [("X", number([None, len(columns)]))]
    # ZipMap turns probabilities into a list of dicts: slow, and not a tensor
    options = {id(s): {"zipmap": False} for s in steps
               if is_classifier(s) and not hasattr(s, "steps")}
    with warnings.catch_warnings():
        # protobuf 6 warns about skl2onnx's boolean tree attributes; nothing a user can fix
        warnings.filterwarnings("ignore", message=".*got a boolean", category=DeprecationWarning)
        return convert_sklearn(model, initial_types=initial, options=options or None,
                               target_opset=_TARGET_OPSET)


def _output_roles(model: Any, task: str, outs: list[str]) -> dict[str, str]:
    if task == "classification":
        roles = {"label": outs[0]}
        if hasattr(model, "predict_proba") and len(outs) > 1:
            roles["proba"] = outs[1]
        return roles
    if task == "regression":
        return {"value": outs[0]}
    return {"cluster": outs[0]}


def _steps(model: Any) -> Iterator[Any]:
    """Every estimator inside ``model``: pipeline steps, column transformers, unions."""
    yield model
    if hasattr(model, "steps"):
        for _, step in model.steps:
            if step is not None and step != "passthrough":
                yield from _steps(step)
    for attr in ("transformers_", "transformer_list"):
        for item in getattr(model, attr, None) or []:
            step = item[1]
            if not isinstance(step, str):
                yield from _steps(step)


def _check_steps(steps: Iterable[Any]) -> None:
    from skl2onnx._parse import sklearn_operator_name_map

    for step in steps:
        kind = type(step)
        if kind.__name__ == "FunctionTransformer" and step.func is not None:
            name = getattr(step.func, "__name__", type(step.func).__name__)
            name = "lambda" if name == "<lambda>" else name
            raise ConversionError(f"onnx: no converter for FunctionTransformer({name})")
        if kind.__module__.split(".")[0] in ("lightgbm", "xgboost"):
            continue
        if kind not in sklearn_operator_name_map:
            raise ConversionError(f"onnx: no converter for {kind.__name__}")


def _convertible(model: Any, steps: list[Any]) -> Any:
    """A copy of ``model`` adjusted for the converters, or ``model`` if none is needed.

    String imputers look for the missing-category sentinel instead of NaN (skl2onnx cannot
    impute NaN in strings), and XGBoost boosters fitted on a DataFrame forget their column
    names (onnxmltools reads features only as ``f0``, ``f1``...).
    """

    def string_imputer(step: Any) -> bool:
        return (type(step).__name__ == "SimpleImputer"
                and getattr(step, "_fit_dtype", np.dtype(float)).kind in "OUS"
                and _is_nan(step.missing_values))

    def named_booster(step: Any) -> bool:
        return (type(step).__module__.startswith("xgboost")
                and hasattr(step, "get_booster") and step.get_booster().feature_names)

    if not any(string_imputer(s) or named_booster(s) for s in steps):
        return model
    model = copy.deepcopy(model)
    for step in _steps(model):
        if string_imputer(step):
            step.missing_values = MISSING
        elif named_booster(step):
            step.get_booster().feature_names = None
    return model


def _is_nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or \
        type(value).__name__ in ("NAType", "NaTType")


_gbm_registered = False


def _register_gbm_converters() -> None:
    """Teach skl2onnx LightGBM and XGBoost (also inside pipelines), once per process."""
    global _gbm_registered
    if _gbm_registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier",
                                    calculate_linear_classifier_output_shapes, convert_lightgbm,
                                    options=classifier_options)
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor",
                                    calculate_linear_regressor_output_shapes, convert_lightgbm,
                                    options={"split": None})
    except ImportError:
        pass
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier",
                                    calculate_linear_classifier_output_shapes, convert_xgboost,
                                    options=classifier_options)
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor",
                                    calculate_linear_regressor_output_shapes, convert_xgboost)
    except ImportError:
        pass
    _gbm_registered = True


def _thresholds_to_double(proto: ModelProto, hgb: Any) -> None:
    """Give a HistGradientBoosting tree ensemble float64 thresholds, as scikit-learn uses.

    skl2onnx writes thresholds as float32 even for float64 inputs, so a value between the
    float32 and the float64 threshold takes the wrong branch; ``ai.onnx.ml`` opset 3 holds
    them as a double tensor. The trees' float32 outputs are cast back to float64.
    """
    from onnx import TensorProto, helper, numpy_helper

    trees = [n for n in proto.graph.node
             if n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
    if len(trees) != 1:
        raise ConversionError("onnx: expected one tree ensemble for HistGradientBoosting")
    node = trees[0]
    attrs = {a.name: a for a in node.attribute}
    per_iteration = hgb.n_trees_per_iteration_
    thresholds = np.array([
        hgb._predictors[t // per_iteration][t % per_iteration].nodes["num_threshold"][i]
        for t, i in zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, strict=True)
    ], dtype=np.float64)
    if np.abs(thresholds - np.asarray(attrs["nodes_values"].floats)).max(initial=0) > 1e-3 * (
            1 + np.abs(thresholds).max(initial=0)):
        raise ConversionError("onnx: tree thresholds do not match HistGradientBoosting nodes")
    kept = [a for a in node.attribute if a.name != "nodes_values"]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(
        helper.make_attribute("nodes_values_as_tensor", numpy_helper.from_array(thresholds)))
    scores = 1 if node.op_type == "TreeEnsembleClassifier" else 0
    original = node.output[scores]
    node.output[scores] = original + "_float32"
    index = list(proto.graph.node).index(node)
    proto.graph.node.insert(index + 1, helper.make_node(
        "Cast", [node.output[scores]], [original], to=TensorProto.DOUBLE,
        name=original + "_to_double"))
    for imp in proto.opset_import:
        if imp.domain == "ai.onnx.ml":
            imp.version = max(imp.version, 3)


def _imputers_to_double(proto: ModelProto, steps: list[Any]) -> None:
    """Replace float-only ``Imputer`` nodes by IsNaN/Where over float64 values.

    onnxruntime implements ``ai.onnx.ml.Imputer`` for float32 only; the fill values are
    taken from the matching SimpleImputer so they are exactly scikit-learn's.
    """
    from onnx import helper, numpy_helper

    imputers = [s for s in steps if type(s).__name__ == "SimpleImputer"
                and getattr(s, "statistics_", None) is not None
                and s.statistics_.dtype.kind == "f"]
    for node in [n for n in proto.graph.node if n.op_type == "Imputer"]:
        attrs = {a.name: a for a in node.attribute}
        replaced = attrs.get("replaced_value_float")
        if replaced is None or replaced.f == replaced.f or "imputed_value_floats" not in attrs:
            raise ConversionError("onnx: only imputers of NaN can run in float64")
        floats = np.asarray(attrs["imputed_value_floats"].floats, dtype=np.float32)
        exact = [s.statistics_ for s in imputers if s.statistics_.shape == floats.shape
                 and np.array_equal(s.statistics_.astype(np.float32), floats)]
        fill = np.asarray(exact[0] if exact else floats, dtype=np.float64)
        name = node.output[0]
        proto.graph.initializer.append(numpy_helper.from_array(fill, name + "_fill"))
        index = list(proto.graph.node).index(node)
        proto.graph.node.remove(node)
        proto.graph.node.insert(index, helper.make_node(
            "IsNaN", [node.input[0]], [name + "_isnan"], name=name + "_isnan"))
        proto.graph.node.insert(index + 1, helper.make_node(
            "Where", [name + "_isnan", name + "_fill", node.input[0]], [name],
            name=name + "_where"))


def with_layout(data: bytes, layout: Layout) -> bytes:
    """The serialized model ``data`` with ``layout`` in its metadata, so that :func:`load`
    feeds and reads it as the layout says (a graph exported by another library)."""
    onnx = require("onnx", EXTRA, "ONNX models")
    proto = _parse(onnx, data)
    _set_layout(proto, layout)
    return proto.SerializeToString()


def _set_layout(proto: ModelProto, layout: Layout) -> None:
    kept = [p for p in proto.metadata_props if p.key != _META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = _META_KEY, layout.to_json()


# --------------------------------------------------------------------------- loading


class OnnxPredictor(Predictor):
    """Scores with one onnxruntime InferenceSession, created when the model is loaded."""

    format = NAME

    def __init__(self, session: ort.InferenceSession, layout: Layout,
                 signature: Signature) -> None:
        super().__init__(signature)
        self._session = session
        self._layout = layout
        self._roles = list(layout.outputs)
        self._fetch = [layout.outputs[r] for r in self._roles]
        # numpy dtype (None for strings) and shape of each input, read from the graph:
        # graphs made elsewhere may take int64 or double columns, or [None] vectors
        graph = {i.name: i for i in session.get_inputs()}
        self._feeds = [(name, col, _NUMPY.get(graph[name].type, np.float32),
                        (-1,) if len(graph[name].shape) == 1 else (-1, 1))
                       for name, col in zip(layout.names, layout.columns, strict=False)]
        self._matrix = layout.inputs == "matrix"
        classes = signature.classes
        self._classes = np.asarray(classes) if classes is not None else None
        self._proba = "proba" in layout.outputs and classes is not None

    def _gives_proba(self) -> bool:
        return self._proba

    def _feed(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._matrix:
            name, _, dtype, _ = self._feeds[0]
            return {name: np.column_stack([cols[c] for c in self._layout.columns]).astype(
                dtype, copy=False)}
        feed = {}
        for name, col, dtype, shape in self._feeds:
            values = cols[col]
            if dtype is None:
                missing = values != values  # NaN is the only value unequal to itself
                if missing.any():
                    values = values.copy()
                    values[missing] = self._layout.missing
                feed[name] = values.reshape(shape)
            else:
                feed[name] = values.astype(dtype, copy=False).reshape(shape)
        return feed

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self._run_columns({c: frame[c].to_numpy() for c in frame.columns})

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raw = dict(zip(self._roles, self._session.run(self._fetch, self._feed(cols)),
                       strict=True))
        task = self.signature.task
        if task == "regression":
            return {"value": np.asarray(raw["value"], dtype=np.float64).reshape(-1)}
        if task == "clustering":
            return {"cluster": np.asarray(raw["cluster"], dtype=np.int64).reshape(-1)}
        if self._proba:
            proba = np.asarray(raw["proba"], dtype=np.float64)
            return {"label": self._labels_from_proba(proba), "proba": proba}
        return {"label": self._as_classes(np.asarray(raw["label"]).reshape(-1))}

    def _as_classes(self, labels: np.ndarray) -> np.ndarray:
        """The graph's labels as values of ``signature.classes`` (same values and dtype)."""
        if self._classes is None:
            return labels
        keys = self._classes.astype(str)
        order = np.argsort(keys)
        found = np.searchsorted(keys[order], labels.astype(str))
        found = np.minimum(found, len(keys) - 1)
        pos = order[found]
        if not np.array_equal(keys[pos], labels.astype(str)):
            return labels
        return self._classes[pos]


def load(data: bytes, signature: Signature) -> OnnxPredictor:
    """An :class:`OnnxPredictor` over the serialized graph ``data``.

    A graph onnxruntime cannot run (an operator or opset it does not know, a malformed
    node) is a :class:`UserError` quoting onnxruntime's reason.
    """
    require("onnxruntime", EXTRA, "ONNX models")
    onnx = require("onnx", EXTRA, "ONNX models")
    proto = _parse(onnx, data)
    layout = _stored_layout(proto)
    if layout is None:
        if _drop_zipmap(proto):
            data = proto.SerializeToString()
        layout = _graph_layout(proto, signature)
    try:
        session = _session(data)
    except Exception as exc:
        raise UserError(f"onnxruntime cannot run the ONNX graph ({_one_line(exc)}); re-export "
                        "it with an opset and operators onnxruntime supports, or upgrade "
                        "onnxruntime") from None
    return OnnxPredictor(session, layout, signature)


def _session(data: bytes) -> ort.InferenceSession:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Serving scales out over processes (one session per worker) and batch jobs over
    # chunks: a thread pool per session would only contend for the same cores, and waking
    # it costs more than a single row takes to score.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _stored_layout(proto: ModelProto) -> Layout | None:
    for prop in proto.metadata_props:
        if prop.key == _META_KEY:
            return Layout.from_json(prop.value)
    return None


# --------------------------------------------------------------------------- importing


def read(path: str | Path) -> bytes:
    """The bytes of the ONNX model at ``path``, self-contained.

    ``path`` is a ``.onnx`` file, or a folder holding exactly one. Weights the exporter kept
    in external data files (PyTorch writes ``model.onnx.data`` by default) are read from
    beside the model and folded into it, so the artefact needs no side files; a missing
    data file, or a model too big for one protobuf message (2 GB), is a :class:`UserError`.
    """
    onnx = require("onnx", EXTRA, "ONNX models")
    from onnx.external_data_helper import load_external_data_for_model

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            what = "no .onnx file" if not found else f"{len(found)} .onnx files"
            raise UserError(f"the folder {path} holds {what}: pass the .onnx file itself, or a "
                            "folder holding one model and its data files")
        path = found[0]
    data = path.read_bytes()
    proto = _parse(onnx, data, path.name)
    external = sorted({loc for loc in map(_external_location, _tensors(proto.graph))
                       if loc is not None})
    if not external:
        return data
    try:
        load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:
        missing = [loc for loc in external if not (path.parent / loc).is_file()]
        named = ", ".join(missing or external)
        raise UserError(f"{path.name} keeps its weights in {named}, which cannot be read "
                        f"beside it ({_one_line(exc)}): put the data file(s) in {path.parent} "
                        "or import the folder that holds the model and its data") from None
    size = proto.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise UserError(f"{path.name} with its external data is {size / 2**30:.1f} GiB: a "
                        "self-contained ONNX model is one protobuf message, which cannot exceed "
                        "2 GiB; export a smaller model (e.g. with float16 weights)")
    return proto.SerializeToString()


def inspect(data: bytes, *, task: str | None = None, classes: list | None = None) -> Signature:
    """The signature of a graph made elsewhere, read from its inputs and outputs.

    One ``[None, 1]`` input per column (float: numeric, string: categorical), or one
    ``[None, k]`` float input read as numeric columns ``x0``..``x{k-1}`` (or the names in
    a ``feature_names`` metadata entry). A label and a probabilities output make a
    classifier (classes from the graph's ``classlabels_*`` attributes, else ``0..k-1``),
    a label computed by ArgMin a clustering, a single float output a regressor. ``task``
    and ``classes`` say what the graph cannot: a single ``[None, k]`` float output is read
    as the probabilities of a classifier when either is given (``classes`` must then be
    the graph's own when it names them). Classes assumed to be ``0..k-1`` are said so with
    a ``UserWarning``.
    """
    onnx = require("onnx", EXTRA, "ONNX models")
    proto = _parse(onnx, data)
    external = sorted({loc for loc in map(_external_location, _tensors(proto.graph))
                       if loc is not None})
    if external:
        raise UserError(f"the ONNX model keeps its weights in {', '.join(external)}: import the "
                        ".onnx file from the folder that holds them, so they are folded in")
    stored = _stored_layout(proto)
    named = _graph_classes(proto)
    _drop_zipmap(proto)
    inputs = _graph_inputs(proto)
    if stored is not None:
        kinds = {i[0]: i[1] for i in inputs}
        if stored.inputs == "columns":
            columns = [_column(c, kinds.get(c, _ELEM_FLOAT)) for c in stored.columns]
        else:
            columns = [_column(c, _ELEM_FLOAT) for c in stored.columns]
    elif len(inputs) == 1 and inputs[0][2] not in (None, 1):
        name, elem, width = inputs[0]
        if elem == _ELEM_STRING:
            raise UserError(f"ONNX input {name!r} is a string matrix: modelport takes strings "
                            "only as one [None, 1] input per column")
        names = _feature_names(proto, width)
        columns = [_column(n, elem) for n in names]
    else:
        wide = [i[0] for i in inputs if i[2] not in (None, 1)]
        if wide or any(i[2] is None for i in inputs if len(inputs) > 1):
            raise UserError(
                f"ONNX inputs {wide or [i[0] for i in inputs]} have several or unknown columns; "
                "modelport imports graphs with one [None, k] input or one [None, 1] input per "
                "column"
            )
        columns = [_column(name, elem) for name, elem, _ in inputs]
    found, width, scores = _graph_task(proto)
    if task is None and classes is not None:
        task = "classification"
    task = task or found
    if found == "regression" and task == "classification":
        # the graph's float output is read as probabilities: one column per class
        if width is None and classes is None:
            raise UserError(f"the ONNX output {scores!r} has no fixed number of columns: pass "
                            "--classes (classes=) naming one class per column")
        if width is not None and width < 2:
            raise UserError(f"the ONNX output {scores!r} has {width} column: a classifier's "
                            "probabilities need one column per class; import it with --task "
                            "regression, or export [n, k] probabilities")
    return Signature(inputs=columns, task=task,
                     classes=_classes(task, classes, named, width, scores))


def _classes(task: str, given: list | None, named: list | None, width: int | None,
             scores: str | None) -> list | None:
    """The classes of an imported classifier: given, named by the graph, else 0..k-1."""
    if task != "classification":
        if given is not None:
            raise UserError(f"classes are given but the task is {task}: pass --task "
                            "classification, or drop --classes")
        return None
    if named is not None and width is not None and len(named) != width:
        named = None
    if given is not None:
        given = list(given)
        if named is not None:
            if [str(c) for c in given] != [str(c) for c in named]:
                raise UserError(f"--classes {','.join(map(str, given))} differ from the classes "
                                f"the ONNX graph names ({','.join(map(str, named))}): drop "
                                "--classes, or list the graph's classes in its order")
            return named
        if width is not None and len(given) != width:
            raise UserError(f"--classes names {len(given)} classes but the ONNX output "
                            f"{scores!r} gives {width} probabilities a row: name one class per "
                            "column, in column order")
        return given
    if named is not None:
        return named
    if width:
        warnings.warn(f"the ONNX graph names no classes: the columns of its output {scores!r} "
                      f"are read as classes 0..{width - 1} (pass --classes, or classes=, to "
                      "name them)", UserWarning, stacklevel=3)
        return list(range(width))
    return None


def _parse(onnx: ModuleType, data: bytes, source: str = "the file") -> ModelProto:
    """The ModelProto in ``data``, or a :class:`UserError` saying it is not one."""
    try:
        return onnx.load_from_string(data)
    except Exception as exc:
        raise UserError(f"{source} is not an ONNX model ({_one_line(exc)}): pass a .onnx file "
                        "written by an ONNX exporter") from None


def _one_line(exc: Exception, limit: int = 300) -> str:
    """An exception as one line, without onnxruntime's source locations and C++ signatures
    (which push the reason past any sensible length)."""
    import re

    text = " ".join(str(exc).split()) or "no reason given"
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"\S*/onnxruntime\S*:\d+ .*?\)\s(?=[A-Z])", "", text)
    opset = re.search(r"Opset (\d+) is under development.*support for domain (\S+) is till "
                      r"opset (\d+)", text)
    if opset:
        text = (f"the graph's opset {opset[1]} of {opset[2]} is newer than this onnxruntime "
                f"runs: up to {opset[3]}")
    return f"{type(exc).__name__}: {text}"[:limit]


def _tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Every tensor a graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _external_location(tensor: TensorProto) -> str | None:
    from onnx import TensorProto

    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    return next((e.value for e in tensor.external_data if e.key == "location"), "?")


def _column(name: str, elem: int) -> Column:
    if elem == _ELEM_STRING:
        return Column(name=name, dtype="string", kind="categorical", nullable=True)
    dtype = "int64" if elem == _ELEM_INT64 else "float64"
    return Column(name=name, dtype=dtype, kind="numeric", nullable=True)


def _graph_inputs(proto: ModelProto) -> list[tuple[str, int, int | None]]:
    """(name, element type, width) of each graph input that is not an initializer."""
    constants = {t.name for t in proto.graph.initializer}
    out = []
    for value in proto.graph.input:
        if value.name in constants:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        width = 1 if len(dims) <= 1 else dims[1]
        out.append((value.name, tensor.elem_type, width))
    return out


def _feature_names(proto: ModelProto, width: int | None) -> list[str]:
    if width is None:
        raise UserError("the ONNX input has an unknown number of columns; export it with a "
                        "fixed width, e.g. FloatTensorType([None, k])")
    for prop in proto.metadata_props:
        if prop.key in ("feature_names", "features"):
            names = [n.strip() for n in prop.value.replace(";", ",").split(",") if n.strip()]
            if len(names) == width:
                return names
    return [f"x{i}" for i in range(width)]


def _graph_classes(proto: ModelProto) -> list | None:
    """Class labels from a ZipMap or the classifier node, if the graph names them."""
    found = None
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name in _LABEL_ATTRS:
                if attr.name == "classlabels_strings":
                    values = [s.decode() for s in attr.strings]
                else:
                    values = [int(i) for i in attr.ints]
                if values:
                    found = values
        if node.op_type == "ZipMap" and found:
            return found
    return found


def _drop_zipmap(proto: ModelProto) -> bool:
    """Replace a ZipMap output (a list of dicts) by the probability tensor feeding it."""
    from onnx import TensorProto, helper

    zipmaps = [n for n in proto.graph.node if n.op_type == "ZipMap"]
    if not zipmaps:
        return False
    for node in zipmaps:
        labels = [a for a in node.attribute if a.name in _LABEL_ATTRS]
        width = len(labels[0].ints or labels[0].strings) if labels else None
        outputs = list(proto.graph.output)
        kept = [o for o in outputs if o.name != node.output[0]]
        del proto.graph.output[:]
        proto.graph.output.extend(kept)
        proto.graph.output.append(
            helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, [None, width]))
        proto.graph.node.remove(node)
    return True


def _graph_task(proto: ModelProto) -> tuple[str, int | None, str | None]:
    """The task a graph's outputs describe, and the width and name of its score output."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    outs = []
    for value in proto.graph.output:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        outs.append((value.name, tensor.elem_type, dims))
    floats = [o for o in outs if o[1] in (_ELEM_FLOAT, _ELEM_DOUBLE)]
    labels = [o for o in outs if o[1] in (_ELEM_INT64, _ELEM_STRING)]
    width = floats[0][2][1] if floats and len(floats[0][2]) > 1 else None
    scores = floats[0][0] if floats else None
    if labels and floats:
        node = producers.get(labels[0][0])
        if node is not None and node.op_type == "ArgMin":
            return "clustering", width, scores
        return "classification", width, scores
    if labels:
        return "clustering" if labels[0][1] == _ELEM_INT64 else "classification", None, None
    if floats:
        return "regression", width, scores
    raise UserError("the ONNX graph has no tensor output modelport can read "
                    "(expected labels and probabilities, or one float output)")


def _graph_layout(proto: ModelProto, signature: Signature) -> Layout:
    """How to feed and read a graph made elsewhere."""
    inputs = _graph_inputs(proto)
    names = signature.names
    if len(inputs) == 1 and (inputs[0][2] != 1 or inputs[0][0] not in names):
        layout = Layout(inputs="matrix", names=[inputs[0][0]], columns=names)
    else:
        missing = [i[0] for i in inputs if i[0] not in names]
        if missing:
            raise UserError(f"ONNX inputs {missing} are not columns of the signature "
                            f"({', '.join(names)})")
        layout = Layout(inputs="columns", names=[i[0] for i in inputs],
                        columns=[i[0] for i in inputs], missing="")
    outs = [(v.name, v.type.tensor_type.elem_type) for v in proto.graph.output]
    floats = [n for n, e in outs if e in (_ELEM_FLOAT, _ELEM_DOUBLE)]
    labels = [n for n, e in outs if e in (_ELEM_INT64, _ELEM_STRING)]
    if signature.task == "regression":
        if not floats:
            raise UserError("the ONNX graph has no float output to read as a regression value")
        layout.outputs = {"value": floats[0]}
    elif signature.task == "clustering":
        if not labels:
            raise UserError("the ONNX graph has no integer output to read as a cluster id")
        layout.outputs = {"cluster": labels[0]}
    else:
        if labels:
            layout.outputs["label"] = labels[0]
        if floats:
            layout.outputs["proba"] = floats[0]
        if not labels and not floats:
            raise UserError("the ONNX graph has no label or probability output")
    return layout
