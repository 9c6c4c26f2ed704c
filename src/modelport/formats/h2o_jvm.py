"""h2o-genmodel, H2O's own scorer, for the H2O formats (MOJO and POJO).

Both H2O formats are scored by the same Java library, ``h2o-genmodel.jar``, in two ways:

- in this process, through ``EasyPredictModelWrapper`` in one long-lived JVM (JPype,
  ``pip install 'modelport[mojo]'``), a batch per call under one lock (:class:`Scorer`);
  the JVM starts on first use with the jar on its class path and stays for the life of the
  process;
- as a reference, by running ``hex.genmodel.tools.PredictCsv`` once over a CSV of rows
  (:func:`predict_csv`), which writes hexadecimal doubles, so what it says is exact.

The jar is the one ``MODELPORT_H2O_GENMODEL_JAR`` names, else one beside the imported file
(:func:`genmodel_jar`). Unseen category levels count as missing values in both ways, as
``PredictCsv`` and ``h2o.mojo_predict_pandas`` treat them.
"""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError, require
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

#: the pip extra that brings JPype
EXTRA = "mojo"
GENMODEL_ENV = "MODELPORT_H2O_GENMODEL_JAR"
GENMODEL_JAR = "h2o-genmodel.jar"
#: the model categories whose outputs are class probabilities
PROBABILISTIC = ("Binomial", "Multinomial", "Ordinal")


def genmodel_jar(near: Path | None = None) -> Path | None:
    """``h2o-genmodel.jar``: the one ``MODELPORT_H2O_GENMODEL_JAR`` names, else one in ``near``."""
    import os

    named = os.environ.get(GENMODEL_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise UserError(f"{GENMODEL_ENV}={named} is not a file: point it at "
                            "h2o-genmodel.jar (download_mojo(get_genmodel_jar=True) writes one)")
        return path
    if near is not None and (Path(near) / GENMODEL_JAR).is_file():
        return Path(near) / GENMODEL_JAR
    return None


# --- PredictCsv: the reference, one java run over a CSV ---------------------------------------


def predict_csv(model_args: list[str], classpath: list[Path], frame: Any,
                signature: Signature) -> dict[str, np.ndarray]:
    """What ``PredictCsv`` gives for ``frame``, as Predictor outputs.

    ``model_args`` names the model (``["--mojo", path]`` or ``["--pojo", class_name]``) and
    ``classpath`` holds the genmodel jar (and a POJO's compiled classes). For classifiers
    ``label`` is H2O's ``predict`` column (thresholded for binomial models) and ``proba``
    the class probabilities in the signature's class order.
    """
    java = shutil.which("java")
    if java is None:
        raise UserError("h2o-genmodel runs in Java but no 'java' is on PATH: install a Java "
                        "runtime (8-17)")
    with tempfile.TemporaryDirectory(prefix="modelport-genmodel-") as tmp_name:
        tmp = Path(tmp_name)
        write_csv(tmp / "in.csv", signature.coerce(frame), signature)
        done = subprocess.run(
            [java, "-cp", ":".join(str(p) for p in classpath), "hex.genmodel.tools.PredictCsv",
             *model_args, "--input", str(tmp / "in.csv"), "--output", str(tmp / "out.csv")],
            capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not (tmp / "out.csv").is_file():
            raise UserError(f"h2o-genmodel could not score the sample: "
                            f"{(done.stdout + done.stderr).strip()[-500:]}")
        with open(tmp / "out.csv", newline="") as fh:
            rows = list(csv.reader(fh))
    return read_predictions(rows[0], rows[1:], signature)


def read_predictions(header: list[str], body: list[list[str]],
                     signature: Signature) -> dict[str, np.ndarray]:
    """Predictor outputs from the rows of a predictions CSV of H2O (``PredictCsv``'s
    hexadecimal doubles or the cluster's decimal ones): ``predict`` then one column per
    class, or a single value or cluster column."""
    values = np.array([[_number(v) for v in r[1:]] if len(r) > 1 else [_number(r[0])]
                       for r in body], dtype=np.float64).reshape(len(body), -1)
    if signature.task == "classification":
        assert signature.classes is not None  # a classifier's
        by_text = {str(c): c for c in signature.classes}
        labels = np.asarray([by_text.get(r[0], r[0]) for r in body], dtype=object)
        # one probability column per class in domain order, named by its level (binomial
        # models name them p0, p1)
        names, wanted = header[1:], [str(c) for c in signature.classes]
        if set(wanted) <= set(names):
            values = values[:, [names.index(w) for w in wanted]]
        return {"label": labels, "proba": values}
    if signature.task == "clustering":
        return {"cluster": values[:, 0].astype(np.int64)}
    return {"value": values[:, 0]}


def write_csv(path: Path, frame: pd.DataFrame, signature: Signature) -> None:
    """``frame`` as the CSV ``PredictCsv`` reads: the signature's columns, missing as empty."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(signature.names)
        for row in frame.itertuples(index=False):
            out.writerow(["" if _missing(v) else _csv_number(v) if isinstance(v, float) else v
                          for v in row])


def _csv_number(v: float) -> str:
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(float(v))


def _number(text: str) -> float:
    if text in ("NA", ""):
        return math.nan
    return float.fromhex(text) if "0x" in text.lower() else float(text)


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# --- the JVM of this process -------------------------------------------------------------------

_JVM_LOCK = threading.Lock()
_LOADERS: dict[str, object] = {}


def jpype_module(what: str) -> ModuleType:
    """JPype, or a :class:`~modelport.errors.MissingExtra` naming ``what`` needs it."""
    return require("jpype", EXTRA, what)


def genmodel_class(name: str, jar: Path) -> Any:
    """A class of h2o-genmodel, starting this process's JVM with the jar on first use."""
    jpype = jpype_module("scoring H2O models through h2o-genmodel")
    loader = _loader(jar)
    return jpype.JClass(name, loader=loader) if loader is not None else jpype.JClass(name)


def _loader(jar: Path) -> Any:
    """The class loader that sees ``jar`` (None: the JVM's own class path)."""
    jpype = jpype_module("scoring H2O models through h2o-genmodel")
    with _JVM_LOCK:
        if not jpype.isJVMStarted():
            try:
                jpype.startJVM(classpath=[str(jar)], convertStrings=False)
            except Exception as exc:  # JVMNotFoundException and kin: no usable Java
                raise UserError(f"h2o-genmodel runs in Java, but no JVM could be started "
                                f"({type(exc).__name__}): install a Java runtime (8-17) or "
                                "set JAVA_HOME") from None
        key = str(jar)
        if key not in _LOADERS:
            try:
                jpype.JClass("hex.genmodel.GenModel")
                _LOADERS[key] = None  # on the JVM's own class path
            except Exception:
                # a JVM started by something else: load the jar through its own class loader
                url = jpype.JClass("java.io.File")(key).toURI().toURL()
                _LOADERS[key] = jpype.JClass("java.net.URLClassLoader")([url])
        return _LOADERS[key]


def load_class(name: str, folder: Path, jar: Path) -> Any:
    """Class ``name`` compiled into ``folder`` (a POJO), loaded beside h2o-genmodel."""
    jpype = jpype_module("scoring H2O POJOs")
    parent = _loader(jar)
    if parent is None:
        parent = jpype.JClass("java.lang.ClassLoader").getSystemClassLoader()
    url = jpype.JClass("java.io.File")(str(folder)).toURI().toURL()
    loader = jpype.JClass("java.net.URLClassLoader")([url], parent)
    return jpype.JClass(name, loader=loader)


class Scorer:
    """``EasyPredictModelWrapper`` over a loaded ``GenModel`` (a MOJO's or a POJO's), scored
    a batch at a time under one lock: unseen levels count as missing, as ``PredictCsv``
    treats them."""

    def __init__(self, model: Any, signature: Signature, category: str, jar: Path) -> None:
        import jpype

        wrapper = genmodel_class("hex.genmodel.easy.EasyPredictModelWrapper", jar)
        config = genmodel_class("hex.genmodel.easy.EasyPredictModelWrapper$Config", jar)
        self._wrapper = wrapper(config().setModel(model).setConvertUnknownCategoricalLevelsToNa(True))
        self._row = genmodel_class("hex.genmodel.easy.RowData", jar)
        self._names = [jpype.JString(n) for n in signature.names]
        self._numeric = [c.kind == "numeric" for c in signature.inputs]
        self._category = category
        self._signature = signature
        self._lock = threading.Lock()

    def run(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sig = self._signature
        columns = [cols[n] for n in sig.names]
        n = len(columns[0])
        probs = self._category in PROBABILISTIC
        if probs:
            assert sig.classes is not None  # a classifier's
            width = len(sig.classes)
        else:
            width = 1
        out = np.empty((n, width), dtype=np.float64)
        with self._lock:
            for i in range(n):
                row = self._row()
                for name, numeric, values in zip(self._names, self._numeric, columns, strict=True):
                    v = values[i]
                    if numeric:
                        if v == v:
                            row.put(name, float(v))
                    elif v.__class__ is str:
                        row.put(name, v)
                p = self._wrapper.predict(row)
                if probs:
                    out[i] = np.asarray(p.classProbabilities, dtype=np.float64)
                elif self._category == "Clustering":
                    out[i, 0] = int(p.cluster)
                else:
                    out[i, 0] = float(p.value)
        if probs:
            return {"label": np.asarray(sig.classes)[np.argmax(out, axis=1)], "proba": out}
        if sig.task == "clustering":
            return {"cluster": out[:, 0].astype(np.int64)}
        return {"value": out[:, 0]}
