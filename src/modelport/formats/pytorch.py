"""PyTorch modules, registered as the ONNX graph ``torch.onnx.export`` makes of them.

A module that takes one float tensor ``[n, k]`` (the sample's columns, in order) is exported
with PyTorch's own exporter, its external data folded into one self-contained graph, and
proven against the module on the registered sample before the ONNX artefact is accepted.
Only ONNX is stored: rebuilding a module from its ``state_dict`` needs the code of its
class, and unpickling a whole module runs code, while the graph serves everywhere without
torch.

A classifier's module gives either ``logits`` (the default: softmax is applied, and a
single logit column is read as a binary sigmoid) or ``proba`` (probabilities, used as they
are); the graph always outputs probabilities, one column per class. A regressor gives one
value a row.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError, require
from modelport.predictor import Predictor
from modelport.signature import CHUNK_ROWS, Signature

if TYPE_CHECKING:
    import pandas as pd

EXTRA = "torch"
OUTPUTS = ("logits", "proba")
#: how far from 1 a row of probabilities may sum before the output is not probabilities
_SUM_TOLERANCE = 1e-3


def is_module(model: object) -> bool:
    """Whether ``model`` is a ``torch.nn.Module``, without importing torch: a module's
    owner has imported it already."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def describe(module: Any, sample: Any, task: str | None, classes: list | None,
             output: str | None) -> tuple[object, Signature, str | None]:
    """The sample as a float DataFrame, the module's signature, and the output kind.

    ``sample`` is a DataFrame of numeric columns or a 2-D array (columns ``x0``..); ``task``
    must be ``classification`` or ``regression``; a classifier's ``classes`` default to
    ``0..k-1`` (said with a ``UserWarning``) and its ``output`` to ``"logits"``.
    """
    torch = require("torch", EXTRA, "PyTorch modules")
    if task not in ("classification", "regression"):
        raise UserError(f"log_model needs task='classification' or 'regression' for a PyTorch "
                        f"module (got {task!r}): its outputs do not say which it is")
    if task == "regression":
        if output is not None or classes is not None:
            raise UserError("output= and classes= apply to classifiers: drop them for a "
                            "regression module")
    else:
        output = output or "logits"
        if output not in OUTPUTS:
            raise UserError(f"output={output!r}: pass 'logits' (softmax is applied) or 'proba' "
                            "(the module already gives probabilities)")
    frame = _frame(sample)
    raw = _forward(torch, module, frame.head(min(len(frame), 1000)).to_numpy())
    width = raw.shape[1]
    if task == "regression":
        if width != 1:
            raise UserError(f"the module gives {width} values a row: modelport registers "
                            "regression modules with one output")
        return frame, Signature.infer(frame, task, chunk_rows=CHUNK_ROWS), None
    k = 2 if width == 1 else width
    if classes is None:
        warnings.warn(f"classes= not given: the module's {k} output classes are named "
                      f"0..{k - 1}", UserWarning, stacklevel=5)
        classes = list(range(k))
    elif len(classes) != k:
        raise UserError(f"classes= names {len(classes)} classes but the module's output gives "
                        f"{k}: name one class per output column, in column order")
    assert output is not None  # a classifier's, set above
    _check_output(raw, output)
    return frame, Signature.infer(frame, task, list(classes), chunk_rows=CHUNK_ROWS), output


def convert(module: Any, signature: Signature, rows: pd.DataFrame, output: str | None) -> bytes:
    """The self-contained ONNX graph of ``module``, giving probabilities or values.

    Exported by ``torch.onnx.export`` (its dynamo exporter, rows as a dynamic dimension)
    into a temporary folder, then read back with its external data folded in. A module
    the exporter refuses is a :class:`UserError` quoting its reason.
    """
    torch = require("torch", EXTRA, "PyTorch modules")
    require("onnxscript", EXTRA, "exporting PyTorch modules to ONNX")
    from modelport.formats import onnx as onnx_format

    role = "value" if signature.task == "regression" else "proba"
    dtype = _dtype(torch, module)
    example = np.array(rows.to_numpy(dtype=np.float64)[:2])
    if len(example) < 2:  # a batch of one would be exported as a fixed size
        example = np.repeat(example[:1], 2, axis=0)
    graph = _scored(torch, module, output)
    with tempfile.TemporaryDirectory(prefix="modelport-torch-") as tmp, _quiet(), \
            _evaluating(module):
        graph.eval()  # the wrapper is made for the export: its mode needs no restoring
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                graph, (torch.as_tensor(example, dtype=dtype),), str(path), dynamo=True,
                external_data=True, input_names=["X"], output_names=[role],
                dynamic_shapes=({0: torch.export.Dim("rows")},), verbose=False)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            raise UserError(f"torch.onnx.export cannot export {type(module).__name__} "
                            f"({type(exc).__name__}: {reason}); modelport registers modules "
                            "whose forward takes one [n, k] float tensor") from None
        data = onnx_format.read(path)
    layout = onnx_format.Layout(inputs="matrix", names=["X"], columns=signature.names,
                                dtype=str(dtype).removeprefix("torch."),
                                outputs={role: role})
    return onnx_format.with_layout(data, layout)


class TorchPredictor(Predictor):
    """Scores with the module itself, in eval mode and without gradients: the reference the
    exported graph is proven against."""

    format = "torch"

    def __init__(self, module: Any, signature: Signature, output: str | None) -> None:
        super().__init__(signature)
        self.module = module
        self.output = output

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        torch = require("torch", EXTRA, "PyTorch modules")
        raw = _forward(torch, self.module, frame[self.signature.names].to_numpy())
        if self.signature.task == "regression":
            return {"value": raw.reshape(-1)}
        proba = _probabilities(raw, self.output)
        return {"label": self._labels_from_proba(proba), "proba": proba}


def _frame(sample: Any) -> pd.DataFrame:
    """The sample as a float64 DataFrame: numeric columns by name, or array columns x0.."""
    import pandas as pd

    if type(sample).__module__.startswith("torch"):
        sample = sample.detach().cpu().numpy()
    if isinstance(sample, pd.DataFrame):
        frame = sample.reset_index(drop=True)
        words = [str(c) for c in frame.columns
                 if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
        if words:
            raise UserError(f"sample= columns {', '.join(words)} are not numbers: a PyTorch "
                            "module takes one float tensor, so encode them (e.g. one-hot) and "
                            "pass the encoded columns")
        frame.columns = [str(c) for c in frame.columns]
    else:
        array = np.asarray(sample)
        if array.ndim != 2 or not array.size:
            raise UserError(f"sample= must be a DataFrame of numeric columns or a 2-D array "
                            f"(rows x inputs) with rows; got shape {array.shape}")
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise UserError("sample= holds values that are not numbers: a PyTorch module "
                            "takes one float tensor") from None
        frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    if not len(frame):
        raise UserError("sample= has no rows: pass the training rows")
    return frame.astype(np.float64)


def _dtype(torch: ModuleType, module: Any) -> Any:
    """The float dtype the module computes in (float32 unless its weights say otherwise)."""
    for param in module.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


def _forward(torch: ModuleType, module: Any, values: np.ndarray) -> np.ndarray:
    """The module's raw output on ``values`` as a float64 ``[n, width]`` array."""
    with torch.no_grad(), _evaluating(module):
        x = torch.as_tensor(np.array(values, dtype=np.float64), dtype=_dtype(torch, module))
        try:
            out = module(x)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:300]
            raise UserError(f"{type(module).__name__} failed on the sample ({type(exc).__name__}: "
                            f"{reason}); its forward must take one [n, k] float tensor of the "
                            "sample's columns") from None
    if not isinstance(out, torch.Tensor):
        raise UserError(f"{type(module).__name__} returns a {type(out).__name__}: modelport "
                        "registers modules that return one tensor")
    return out.detach().cpu().double().numpy().reshape(len(x), -1)


def _probabilities(raw: np.ndarray, output: str | None) -> np.ndarray:
    """Class probabilities from the module's output, as the exported graph computes them."""
    if raw.shape[1] == 1:
        p = 1 / (1 + np.exp(-raw)) if output == "logits" else raw
        return np.hstack([1 - p, p])
    if output == "logits":
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return raw


def _check_output(raw: np.ndarray, output: str) -> None:
    """Refuse an output kind the module's values contradict: probabilities declared as
    logits would be softmaxed again, logits declared as probabilities served as such."""
    in_range = raw.min() >= 0 and raw.max() <= 1
    sums_to_one = raw.shape[1] > 1 and np.abs(raw.sum(axis=1) - 1).max() <= _SUM_TOLERANCE
    if output == "logits" and in_range and sums_to_one:
        raise UserError("the module's outputs on the sample are probabilities (each row sums "
                        "to 1): pass output='proba'")
    if output == "proba" and not (in_range and (sums_to_one or raw.shape[1] == 1)):
        raise UserError("output='proba' but the module's outputs on the sample are not "
                        "probabilities (outside [0, 1], or rows not summing to 1): pass "
                        "output='logits'")


def _scored(torch: Any, module: Any, output: str | None) -> Any:
    """``module`` followed by what turns its output into probabilities, for the export."""
    if output is None:
        return module

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: Any) -> Any:
            y = self.inner(x)
            if y.shape[1] == 1:
                p = torch.sigmoid(y) if output == "logits" else y
                return torch.cat([1 - p, p], dim=1)
            return torch.softmax(y, dim=1) if output == "logits" else y

    return Probabilities()


@contextlib.contextmanager
def _evaluating(module: Any) -> Iterator[Any]:
    """The module in eval mode (dropout off, batch-norm statistics frozen), restored after."""
    training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(training)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, optional-operator notices and deprecation warnings
    kept off the user's terminal: none of them is something a user can act on."""
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
