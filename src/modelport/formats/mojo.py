"""H2O MOJO artefacts: models trained in H2O, served without a JVM per prediction.

A MOJO is H2O's zip of model data (``model.download_mojo()``). modelport registers the zip
unchanged as the version's native artefact, its signature read from the MOJO's own columns
and category domains (:func:`inspect`), and scores it one of two ways:

- **read** (GBM, DRF, GLM: binomial, multinomial, regression): the trees or coefficients are
  read into the model compiler's intermediate form (:mod:`modelport.compile.from_mojo`) and
  run by the prepared NumPy runtime; the same form is stored as the ``compiled`` artefact
  (and written as PMML), so SQL, generated code and every serving mode work as for any
  other model;
- **h2o-genmodel** (any other MOJO): H2O's own scorer, ``EasyPredictModelWrapper``, in one
  long-lived JVM per process (JPype, ``pip install 'modelport[mojo]'``), a batch per call;
  it needs ``h2o-genmodel.jar``, named by ``MODELPORT_H2O_GENMODEL_JAR``. The JVM and the
  scorer are :mod:`modelport.formats.h2o_jvm`'s, shared with H2O POJOs
  (:mod:`modelport.formats.pojo`).

At import the read form is proven against h2o-genmodel itself (``PredictCsv``, run once over
the sample and probe rows built from the model's own split points and levels) when a
genmodel jar is at hand: the one beside the zip (``download_mojo(get_genmodel_jar=True)``
puts it there) or the one ``MODELPORT_H2O_GENMODEL_JAR`` names. A reading that differs by
more than 1e-9 is refused.

Two choices follow H2O's scorer and one does not: unseen category levels count as missing
values (as ``PredictCsv`` and ``h2o.mojo_predict_pandas`` treat them), and probabilities are
H2O's to the last bits; but a binomial model's ``label`` is the more probable class, as for
every modelport model, where H2O's ``predict`` column applies the threshold that maximised
F1 in training (kept in the version's params as ``h2o_default_threshold``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import ConversionError, UserError
from modelport.formats import h2o_jvm
from modelport.formats.h2o_jvm import GENMODEL_ENV, GENMODEL_JAR, genmodel_jar
from modelport.predictor import Predictor
from modelport.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

    from modelport.compile.fast import Prepared
    from modelport.compile.from_mojo import Mojo
    from modelport.compile.ir import ModelIR
    from modelport.registry import Artefact

NAME = "mojo"
#: the extra for the h2o-genmodel runtime (JPype); reading GBM, DRF and GLM needs nothing
EXTRA = "mojo"
TOLERANCE = 1e-9
#: ``auto`` (read when possible, else h2o-genmodel), ``compiled`` or ``jvm``
RUNTIME_ENV = "MODELPORT_MOJO_RUNTIME"
#: rows built from the model's split points and levels, added to the proof at import
PROBE_ROWS = 256
_PMML_TOLERANCE = 1e-6


def available() -> bool:
    return True


# --- the format contract ------------------------------------------------------------------


def convert(model: Any, signature: Signature, sample: Any) -> bytes:
    """The MOJO of a trained H2O model object (the h2o client exports it)."""
    if not is_h2o_model(model):
        raise ConversionError(f"only H2O models have a MOJO, not {type(model).__name__}")
    with exported_mojo(model) as path:
        return path.read_bytes()


def inspect(data: bytes) -> Signature:
    """The signature written in the MOJO: its input columns (categorical where the MOJO
    holds a domain, with the domain's levels), task and classes (the response domain)."""
    from modelport.compile.from_mojo import read_mojo, signature_of

    return signature_of(read_mojo(data))


def load(data: bytes, signature: Signature) -> MojoPredictor:
    """A Predictor over MOJO ``data``: read into the compiled runtime when the model type
    can be read, else h2o-genmodel in this process's JVM."""
    return MojoPredictor(data, signature)


class MojoPredictor(Predictor):
    """Scores a MOJO with its read form (``runtime == "compiled"``) or with h2o-genmodel."""

    format = NAME

    def __init__(self, data: bytes, signature: Signature, runtime: str | None = None) -> None:
        from modelport.compile.from_mojo import read_mojo

        super().__init__(signature)
        choice = runtime or os.environ.get(RUNTIME_ENV) or "auto"
        if choice not in ("auto", "compiled", "jvm"):
            raise UserError(f"{RUNTIME_ENV}={choice!r} is not a MOJO runtime: use auto, "
                            "compiled or jvm")
        mojo = read_mojo(data)
        self.algo = mojo.algo
        self.runtime: str | None = None
        self.reader_refusal: str | None = None
        self._prepared: Prepared | None = None
        self._genmodel: _Genmodel | None = None
        if choice != "jvm":
            from modelport.compile.fast import Prepared
            from modelport.compile.from_mojo import to_ir

            try:
                self._prepared = Prepared(to_ir(mojo, signature))
                self.runtime = "compiled"
            except ConversionError as exc:
                if choice == "compiled":
                    raise UserError(f"{RUNTIME_ENV}=compiled, but this MOJO cannot be read: "
                                    f"{exc}") from None
                self.reader_refusal = str(exc)
        if self._prepared is None:
            self._genmodel = _Genmodel(data, signature, mojo.category)
            self.runtime = "h2o-genmodel"

    def describe(self) -> str:
        return f"{super().describe()} [{self.runtime}]"

    def _run_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._prepared is not None:
            return self._prepared.run(cols)
        assert self._genmodel is not None  # set when the reader refused the MOJO
        return self._genmodel.run(cols)

    def _run(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return self._run_columns({c: frame[c].to_numpy() for c in frame.columns})


# --- import: the read form, its proof and the formats derived from it ---------------------


def derived_artefacts(data: bytes, signature: Signature, frame: pd.DataFrame | None = None,
                      *, source: str | Path | None = None, formats: Sequence[str] | None = None
                      ) -> tuple[dict[str, Any], list[Artefact], dict[str, bytes],
                                 dict[str, Any]]:
    """What importing MOJO ``data`` adds to its own artefact.

    Returns ``(mojo_parity, artefacts, blobs, params)``: the figures of the MOJO artefact
    (its runtime and its proof against h2o-genmodel), the derived artefacts (``compiled``,
    ``pmml``) with their blobs, and the model's H2O parameters. ``frame`` is the user's
    sample; ``source`` the imported file (a genmodel jar beside it is used for the proof);
    ``formats`` limits the derived formats (default: compiled, and PMML when installed).
    Raises :class:`UserError` when the read form differs from h2o-genmodel.
    """
    from modelport.compile import evaluate
    from modelport.compile.from_mojo import read_mojo, to_ir
    from modelport.parity import compare
    from modelport.registry import Artefact

    mojo = read_mojo(data)
    params = _h2o_params(mojo)
    wanted = ("compiled", "pmml") if formats is None else tuple(formats)
    forced = os.environ.get(RUNTIME_ENV) or "auto"
    model_ir, refusal = None, None
    if forced != "jvm":
        try:
            model_ir = to_ir(mojo, signature)
        except ConversionError as exc:
            refusal = str(exc)
    proof = proof_rows(signature, model_ir, frame)
    jar = genmodel_jar(Path(source).parent if source else None)
    reference = None
    if jar is not None and shutil.which("java") is not None:
        reference = genmodel_outputs(data, proof, signature, jar)
    parity: dict = {"imported": True, "runtime": "compiled" if model_ir else "h2o-genmodel",
                    "reference": "h2o-genmodel" if reference is not None else None}
    if source:
        parity["source"] = Path(source).name
    artefacts: list = []
    blobs: dict[str, bytes] = {}
    if model_ir is None:
        parity["reader"] = refusal or f"not read: {RUNTIME_ENV}=jvm"
        if "compiled" in wanted:
            reason = f"the MOJO cannot be read: {refusal}" if refusal else parity["reader"]
            artefacts.append(Artefact(format="compiled", status="rejected", reason=reason))
        return parity, artefacts, blobs, params
    ours = evaluate(model_ir, proof)
    if reference is not None:
        result = compare(_comparable(reference, signature), ours, signature.task, TOLERANCE)
        parity.update({k: result[k] for k in ("rows", "max_abs_diff", "max_rel_diff",
                                              "label_flips") if k in result})
        if not result["passed"]:
            raise UserError(
                f"modelport's reading of this {mojo.describe()} MOJO differs from h2o-genmodel "
                f"on {result['rows']} rows ({result['reason']}); nothing was registered. Set "
                f"{RUNTIME_ENV}=jvm (and {GENMODEL_ENV}) wherever it is imported and served "
                "to score it with h2o-genmodel instead")
    if "compiled" in wanted:
        compiled = json.dumps(model_ir.to_dict(), allow_nan=True).encode("utf-8")
        figures = {k: v for k, v in parity.items() if k not in ("imported", "source", "runtime")}
        artefacts.append(Artefact(format="compiled", status="accepted", size=len(compiled),
                                  parity={**figures, "derived_from": NAME}))
        blobs["compiled"] = compiled
    if "pmml" in wanted:
        art, blob = _pmml(model_ir, signature, proof, ours, required=formats is not None)
        if art is not None:
            artefacts.append(art)
            if blob is not None:
                blobs["pmml"] = blob
    return parity, artefacts, blobs, params


def _comparable(reference: dict, signature: Signature) -> dict:
    """genmodel's outputs with the label a modelport classifier gives: the likeliest class."""
    if signature.task != "classification":
        return reference
    classes = np.asarray(signature.classes, dtype=object)
    return {"label": classes[np.argmax(reference["proba"], axis=1)], "proba": reference["proba"]}


def _pmml(model_ir: ModelIR, signature: Signature, proof: pd.DataFrame,
          ours: dict[str, np.ndarray], required: bool) -> tuple[Artefact, bytes | None]:
    """The PMML artefact written from the read form, proven with pypmml (1e-6)."""
    from modelport import formats as F
    from modelport.compile.pmml import to_pmml
    from modelport.parity import compare
    from modelport.registry import Artefact

    module = F.get("pmml")
    if not module.available():
        if required:
            raise UserError("PMML was asked for but pypmml or Java is missing: "
                            "pip install 'modelport[pmml]' and install a Java runtime")
        return Artefact(format="pmml", status="skipped",
                        reason="not installed: pip install 'modelport[pmml]'"), None
    try:
        blob = to_pmml(model_ir).encode("utf-8")
        candidate = module.load(blob, signature).run(proof)
        result = compare(ours, candidate, signature.task, _PMML_TOLERANCE)
    except Exception as exc:  # a writer's or evaluator's failure rejects PMML only
        return Artefact(format="pmml", status="rejected",
                        reason=f"conversion failed: {type(exc).__name__}: {exc}"[:500]), None
    status = "accepted" if result["passed"] else "rejected"
    return (Artefact(format="pmml", status=status, size=len(blob), parity=result,
                     reason=result.get("reason")), blob if status == "accepted" else None)


def _h2o_params(mojo: Mojo) -> dict[str, Any]:
    keep = ("algo", "algorithm", "category", "h2o_version", "mojo_version", "n_classes",
            "n_trees", "distribution", "link_function", "family", "link", "init_f",
            "use_all_factor_levels")
    params = {k if k.startswith("h2o_") else f"h2o_{k}": mojo.info[k] for k in keep
              if mojo.info.get(k) is not None}
    if mojo.category == "Binomial" and mojo.info.get("default_threshold") is not None:
        params["h2o_default_threshold"] = mojo.info["default_threshold"]
    return params


def proof_rows(signature: Signature, model_ir: ModelIR | None,
               frame: pd.DataFrame | None) -> pd.DataFrame:
    """The user's sample plus probe rows: split points and the largest value below each,
    every level, missing values and an unseen level, mixed by a seeded generator."""
    import pandas as pd

    rng = np.random.default_rng(0)
    candidates: dict[str, list] = {}
    thresholds = _split_points(model_ir) if model_ir is not None else {}
    for col in signature.inputs:
        if col.kind == "categorical":
            candidates[col.name] = [*(col.categories or []), None, "modelport-unseen-level"]
            continue
        points = [0.0, 1.0, -1.0, math.nan]
        points += [v for v in (col.min, col.max) if v is not None]
        for t in thresholds.get(col.name, []):
            points += [t, float(np.nextafter(t, -np.inf))]
        candidates[col.name] = points
    probes = {}
    for name, values in candidates.items():
        picks = rng.integers(0, len(values), PROBE_ROWS)
        column = [values[i] for i in picks]
        probes[name] = column
    probe = signature.coerce(pd.DataFrame(probes))
    if frame is None or not len(frame):
        return probe
    return pd.concat([signature.coerce(frame), probe], ignore_index=True)


def _split_points(model_ir: ModelIR) -> dict[str, list[float]]:
    """Finite numeric split thresholds per input column of a tree ensemble."""
    from modelport.compile import ir

    node = model_ir.model
    if not isinstance(node, ir.TreeEnsemble):
        return {}
    out: dict[str, set] = {}
    for tree in node.trees:
        cats = tree.categories or [None] * len(tree.feature)
        for i, f in enumerate(tree.feature):
            if f >= 0 and cats[i] is None and math.isfinite(tree.threshold[i]):
                out.setdefault(node.features[f], set()).add(float(tree.threshold[i]))
    return {k: sorted(v) for k, v in out.items()}


# --- h2o-genmodel, the reference scorer and the runtime of MOJOs the reader cannot read ----------


def genmodel_outputs(data: bytes, frame: Any, signature: Signature,
                     jar: Path) -> dict[str, np.ndarray]:
    """What h2o-genmodel's ``PredictCsv`` gives for ``frame``, as Predictor outputs.

    One ``java`` run over a CSV of the rows (unseen levels become missing, as in
    ``mojo_predict_pandas``); numbers come back in hexadecimal, so they are exact. For
    classifiers ``label`` is H2O's ``predict`` column (thresholded for binomial models)
    and ``proba`` the class probabilities in the signature's class order.
    """
    with tempfile.TemporaryDirectory(prefix="modelport-mojo-") as tmp:
        path = Path(tmp) / "model.zip"
        path.write_bytes(data)
        return h2o_jvm.predict_csv(["--mojo", str(path)], [jar], frame, signature)


class _Genmodel(h2o_jvm.Scorer):
    """h2o-genmodel's scorer over MOJO ``data``, loaded from memory in this process's JVM."""

    def __init__(self, data: bytes, signature: Signature, category: str) -> None:
        jar = genmodel_jar()
        if jar is None:
            raise UserError(f"this MOJO is scored by h2o-genmodel, which needs its jar: set "
                            f"{GENMODEL_ENV} to h2o-genmodel.jar (download_mojo("
                            "get_genmodel_jar=True) writes it next to the MOJO)")
        h2o_jvm.jpype_module("scoring MOJOs through h2o-genmodel")
        import jpype

        factory = h2o_jvm.genmodel_class("hex.genmodel.MojoReaderBackendFactory", jar)
        caching = h2o_jvm.genmodel_class(
            "hex.genmodel.MojoReaderBackendFactory$CachingStrategy", jar)
        mojo_model = h2o_jvm.genmodel_class("hex.genmodel.MojoModel", jar)
        stream = jpype.JClass("java.io.ByteArrayInputStream")(jpype.JArray(jpype.JByte)(data))
        model = mojo_model.load(factory.createReaderBackend(stream, caching.MEMORY))
        super().__init__(model, signature, category, jar)


# --- H2O model objects -------------------------------------------------------------------------


def is_h2o_model(model: object) -> bool:
    """Whether ``model`` is a trained model of the h2o client (an H2O estimator)."""
    return type(model).__module__.split(".")[0] == "h2o" and hasattr(model, "download_mojo")


@contextlib.contextmanager
def exported_mojo(model: Any) -> Iterator[Path]:
    """A temporary folder holding ``model``'s MOJO and h2o-genmodel.jar; yields the MOJO."""
    with tempfile.TemporaryDirectory(prefix="modelport-h2o-") as tmp:
        try:
            path = model.download_mojo(path=tmp, get_genmodel_jar=True,
                                       genmodel_name=GENMODEL_JAR)
        except Exception as exc:
            text = str(exc)
            hint = (" (h2o 3.46.0.12 refuses MOJO export; 3.46.0.11 exports them)"
                    if "Secure" in text else "")
            raise UserError(f"H2O could not export the model as a MOJO{hint}: "
                            f"{text.splitlines()[0] if text else type(exc).__name__}") from None
        yield Path(path)


def h2o_sample(sample: Any) -> Any:
    """A pandas DataFrame of ``sample`` (an H2OFrame is fetched from the cluster)."""
    if type(sample).__module__.split(".")[0] == "h2o" and hasattr(sample, "as_data_frame"):
        return sample.as_data_frame()
    return sample
