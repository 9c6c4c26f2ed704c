"""Registering models: ``log_model`` for fitted estimators, ``import_model`` for files.

Registration takes the training rows, reads every one of them (in chunks) for the signature's
ranges and vocabularies and for the monitoring reference, converts the model to every
available format, proves each conversion against the native model on a bounded sub-sample
of the rows (:mod:`modelport.parity`), and records the version with that sub-sample, its
signature, metrics, lineage and the figures of every conversion, accepted or rejected.
"""

from __future__ import annotations

import hashlib
import io
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport import formats as F
from modelport.errors import ConversionError, MissingExtra, UserError
from modelport.parity import compare
from modelport.registry import Artefact, NewVersion, Registry, Version
from modelport.signature import CHUNK_ROWS, Signature, row_chunks, to_frame
from modelport.uri import check_name

if TYPE_CHECKING:
    import pandas as pd

    from modelport.predictor import Predictor

#: training rows kept with a version, and replayed through every format to prove it
SAMPLE_ROWS = 1000
_LIBRARIES = ("sklearn", "numpy", "pandas", "scipy", "lightgbm", "xgboost", "skl2onnx",
              "onnxruntime", "onnxmltools", "skops", "pypmml", "river", "flaml", "torch",
              "onnxscript")


def log_model(model: Any, name: str, sample: Any = None, *, task: str | None = None,
              metrics: dict[str, float] | None = None, params: dict[str, Any] | None = None,
              tags: dict[str, Any] | None = None, parent: int | None = None,
              formats: tuple[str, ...] | list[str] | None = None,
              description: str | None = None, data_fingerprint: str | None = None,
              lineage: dict[str, Any] | None = None, alias: str | None = None,
              registry: Registry | None = None, classes: list | None = None,
              output: str | None = None) -> Version:
    """Register a fitted scikit-learn-compatible model and return the new version.

    ``sample`` is the training set (a DataFrame, or an array for estimators fitted on
    arrays), all of it: the signature's ranges, vocabularies and nullable flags, the
    monitoring reference and the data fingerprint come from every row, read in chunks of
    ``CHUNK_ROWS``; a sub-sample of at most ``SAMPLE_ROWS`` rows (the same rows for the
    same data) proves every conversion and is stored with the version. ``alias`` (e.g.
    ``"production"``) points that alias at the new version. A PyTorch ``nn.Module`` is
    registered as its ONNX export (:mod:`modelport.formats.pytorch`): it needs ``task``,
    and a classifier takes ``classes`` and ``output`` (``"logits"`` or ``"proba"``).
    """
    from modelport.formats.mojo import is_h2o_model
    from modelport.formats.pytorch import is_module

    if is_h2o_model(model):
        return _log_h2o_model(model, name, sample, metrics=metrics, params=params, tags=tags,
                              description=description, alias=alias, registry=registry)
    if is_module(model):
        return _log_torch_module(
            model, name, sample, task=task, classes=classes, output=output, formats=formats,
            metrics=metrics, params=params, tags=tags, parent=parent, description=description,
            data_fingerprint=data_fingerprint, lineage=lineage, alias=alias, registry=registry)
    if classes is not None or output is not None:
        raise UserError(f"classes= and output= are for PyTorch modules: a "
                        f"{type(model).__name__} names its own classes; drop them")
    from modelport.formats.native import NativePredictor, classes_of, infer_task

    check_name(name)
    if sample is None:
        raise UserError(
            "log_model needs sample=: pass the training rows (e.g. sample=X_train) so "
            "modelport can record the signature and prove each format against the model"
        )
    if not hasattr(model, "predict"):
        raise UserError(f"cannot register a {type(model).__name__}: it has no predict method")
    frame = _frame(model, sample)
    task = task or infer_task(model)
    classes = classes_of(model) if task == "classification" else None
    try:
        signature = Signature.infer(frame, task, classes, chunk_rows=CHUNK_ROWS)
    except UnicodeEncodeError:
        raise UserError(_not_unicode(frame)) from None
    rows = _limit(frame)
    native = NativePredictor(model, signature)
    try:
        reference = native.run(rows)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"the model failed to score its own sample ({type(exc).__name__}: {exc}); "
            "is it fitted, and is sample= its training rows?"
        ) from exc
    artefacts, blobs = _convert_all(model, signature, rows, reference, formats)
    if not any(a.status == "accepted" for a in artefacts):
        reasons = "; ".join(f"{a.format}: {a.reason}" for a in artefacts)
        raise UserError(f"no format could store this model ({reasons})")
    new = NewVersion(
        task=task, signature=signature.to_dict(),
        native_format="joblib" if "joblib" in blobs else None,
        artefacts=artefacts, blobs=blobs, sample=_parquet(rows),
        metrics=_plain_dict(metrics), params=_plain_dict(params) if params else _params(model),
        tags=_plain_dict(tags), data_fingerprint=data_fingerprint or fingerprint(frame),
        library_versions=library_versions(), parent_version=parent, description=description,
        lineage=_plain_dict(lineage) or {"estimator": _estimator_name(model)},
    )
    reg = registry or Registry()
    version = reg.create_version(name, new)
    _record_reference(reg, version, frame, lambda: native)
    if alias:
        version = reg.set_alias(name, version.version, alias, reason="registered with alias")
    return version


def import_model(path: str | Path, name: str, format: str | None = None, sample: Any = None, *,
                 task: str | None = None, classes: list | None = None,
                 metrics: dict | None = None, tags: dict | None = None,
                 description: str | None = None, alias: str | None = None,
                 registry: Registry | None = None, params: dict | None = None,
                 formats: tuple[str, ...] | list[str] | None = None) -> Version:
    """Register a model made elsewhere (``.onnx``, ``.pmml``, H2O MOJO ``.zip`` or H2O POJO
    ``.java`` file) and return the version.

    ``sample`` (optional) is the training set, all of it: the ranges, vocabularies and
    nullable flags recorded for the inputs and the monitoring reference come from every
    row, and a sub-sample of at most ``SAMPLE_ROWS`` rows is scored, used in the proofs
    and stored. A MOJO also gets the formats read from it (``compiled``, and ``pmml`` when
    installed; ``formats=`` limits them), proven against h2o-genmodel when its jar is at
    hand. An ONNX model may be a folder holding the ``.onnx`` file and its external data;
    ``task`` and ``classes`` say what its graph does not (a single probability output is a
    classifier's when either is given).
    """
    check_name(name)
    path = Path(path)
    if not path.exists():
        raise UserError(f"cannot read {path}: no such file")
    if path.is_dir() and format not in (None, "onnx"):
        raise UserError(f"{path} is a folder: pass the {format} file itself")
    fmt = format or ("onnx" if path.is_dir() else {
        ".onnx": "onnx", ".pmml": "pmml", ".xml": "pmml", ".zip": "mojo",
        ".java": "pojo"}.get(path.suffix.lower()))
    if fmt not in ("onnx", "pmml", "mojo", "pojo"):
        raise UserError(
            f"cannot tell the format of {path.name}: pass --format onnx, pmml, mojo or pojo"
        )
    module = F.get(fmt)
    if not module.available():
        raise MissingExtra(module.EXTRA, fmt, f"{fmt} models")
    notes: list[str] = []
    if fmt == "onnx":
        data = module.read(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                signature: Signature = module.inspect(data, task=task, classes=classes)
                predictor = module.load(data, signature)
            except UserError as exc:
                raise UserError(f"cannot import {path.name}: {exc}") from None
        notes = [str(w.message) for w in caught]
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=3)
    else:
        if classes is not None:
            raise UserError(f"{path.name} names its own classes: drop --classes (classes=)")
        data = path.read_bytes()
        # a POJO is compiled against the genmodel jar found beside it
        signature = module.inspect(data, source=path) if fmt == "pojo" else module.inspect(data)
        if task:
            signature = Signature(inputs=signature.inputs, task=task, classes=signature.classes)
        predictor = module.load(data, signature)
    frame = rows = None
    if sample is not None:
        frame = to_frame(sample)
        signature = _enrich(signature, frame)
        rows = _limit(frame)
        predictor = module.load(data, signature)
        # proves the imported model scores its sample, and reads its outputs as meant
        _check_probabilities(predictor.run(rows), path.name,
                             getattr(predictor, "proba_hint", None))
    del predictor
    art = Artefact(format=fmt, status="accepted", size=len(data),
                   parity={"imported": True, "source": path.name,
                           **({"notes": notes} if notes else {})})
    artefacts, blobs, params = [art], {fmt: data}, _plain_dict(params)
    derive = getattr(module, "derived_artefacts", None)
    if derive is not None:
        # formats read from the file itself (a MOJO's compiled form), each proven
        figures, more, more_blobs, own = derive(data, signature, rows, source=path,
                                                formats=formats)
        assert art.parity is not None  # set above
        art.parity.update(figures)
        artefacts += more
        blobs.update(more_blobs)
        params = {**_plain_dict(own), **params}
        if rows is not None and len(rows):
            for a in artefacts:
                if a.status == "accepted":
                    predictor = F.get(a.format).load(blobs[a.format], signature)
                    assert a.parity is not None  # an accepted artefact carries its figures
                    a.parity["single_row_us"] = _single_row_us(predictor, rows)
    new = NewVersion(
        task=signature.task, signature=signature.to_dict(), native_format=fmt,
        artefacts=artefacts, blobs=blobs,
        sample=_parquet(rows) if rows is not None else None,
        metrics=_plain_dict(metrics), tags=_plain_dict(tags), params=params,
        data_fingerprint=fingerprint(frame) if frame is not None else None,
        library_versions=library_versions(), description=description,
        lineage={"imported_from": str(path.name), "sha256": hashlib.sha256(data).hexdigest()},
    )
    reg = registry or Registry()
    version = reg.create_version(name, new)
    if frame is not None:
        _record_reference(reg, version, frame, lambda: module.load(data, signature))
    if alias:
        version = reg.set_alias(name, version.version, alias, reason="imported with alias")
    return version


def _check_probabilities(outputs: dict, source: str, hint: str | None = None) -> None:
    """Refuse an import whose probabilities on the sample are not probabilities (a graph
    giving logits, imported as a classifier), rather than serve them; ``hint`` says what
    to do instead when the format knows better."""
    proba = outputs.get("proba")
    if proba is None or not len(proba):
        return
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba[~np.isnan(proba).any(axis=1)]
    sums = proba.sum(axis=1)
    if len(proba) and (proba.min() < -1e-6 or proba.max() > 1 + 1e-6
                       or np.abs(sums - 1).max() > 1e-3):
        raise UserError(f"the probabilities {source} gives on the sample are not probabilities "
                        f"(row sums {sums.min():.4g} to {sums.max():.4g}): "
                        + (hint or "export the model with its softmax, or import it with "
                                   "--task regression"))


def _record_reference(registry: Registry, version: Version, frame: pd.DataFrame,
                      load_predictor: Callable[[], Predictor]) -> None:
    """Store the statistics of every training row and of the model's outputs on them, for
    monitoring; a failure here only means they are computed from the stored sample later,
    so it never fails the registration."""
    try:
        from modelport.monitor.reference import record_training

        run = load_predictor().run

        def score(chunk: pd.DataFrame) -> dict[str, np.ndarray]:
            # the model's own training rows, scored for their statistics only: input
            # warnings about them (say, identifiers past the vocabulary's 1,000 values),
            # once per chunk, would be noise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return run(chunk)

        record_training(registry, version, frame, score, CHUNK_ROWS)
    except Exception as exc:  # noqa: BLE001
        import logging

        logging.getLogger("modelport.register").warning(
            "training statistics of %s not stored (%s); monitoring computes them from the "
            "sample when first needed", version.uri, exc)


def _log_h2o_model(model: Any, name: str, sample: Any, **kwargs: Any) -> Version:
    """An H2O model is registered as its MOJO, exported by the h2o client for the purpose."""
    from modelport.formats.mojo import exported_mojo, h2o_sample

    check_name(name)
    if sample is None:
        raise UserError("log_model needs sample=: pass the training rows (an H2OFrame or a "
                        "DataFrame, e.g. sample=train) so modelport can record them and "
                        "prove the MOJO's reading on them")
    with exported_mojo(model) as path:
        return import_model(path, name, "mojo", sample=h2o_sample(sample), **kwargs)


def _log_torch_module(module: Any, name: str, sample: Any, *, task: str | None,
                      classes: list | None, output: str | None,
                      formats: tuple[str, ...] | list[str] | None,
                      metrics: dict[str, float] | None, params: dict[str, Any] | None,
                      tags: dict[str, Any] | None, parent: int | None,
                      description: str | None, data_fingerprint: str | None,
                      lineage: dict[str, Any] | None, alias: str | None,
                      registry: Registry | None) -> Version:
    """A PyTorch module is registered as its ONNX export, proven against the module on the
    sample; the module itself is not stored (serving needs only the graph)."""
    from modelport.formats import onnx as onnx_format
    from modelport.formats import pytorch

    check_name(name)
    if sample is None:
        raise UserError("log_model needs sample=: pass the training rows (a DataFrame of "
                        "numeric columns or a 2-D array) so modelport can record the signature "
                        "and prove the ONNX export against the module")
    if formats and list(formats) != ["onnx"]:
        raise UserError(f"a PyTorch module is stored as ONNX only, not {', '.join(formats)}: "
                        "drop formats= or pass formats=['onnx']")
    if not onnx_format.available():
        raise MissingExtra(onnx_format.EXTRA, "onnxruntime", "PyTorch modules")
    frame, signature, output = pytorch.describe(module, sample, task, classes, output)
    rows = _limit(frame)
    data = pytorch.convert(module, signature, rows, output)
    reference = pytorch.TorchPredictor(module, signature, output).run(rows)
    predictor = onnx_format.load(data, signature)
    parity = compare(reference, predictor.run(rows), signature.task, onnx_format.TOLERANCE)
    if not parity["passed"]:
        raise UserError(f"the ONNX export of {type(module).__name__} differs from the module on "
                        f"the sample ({parity['reason']}); nothing was registered")
    parity["single_row_us"] = _single_row_us(predictor, rows)
    new = NewVersion(
        task=signature.task, signature=signature.to_dict(), native_format="onnx",
        artefacts=[Artefact(format="onnx", status="accepted", size=len(data), parity=parity)],
        blobs={"onnx": data}, sample=_parquet(rows), metrics=_plain_dict(metrics),
        params=_plain_dict(params) or ({"output": output} if output else {}),
        tags=_plain_dict(tags), data_fingerprint=data_fingerprint or fingerprint(frame),
        library_versions=library_versions(), parent_version=parent, description=description,
        lineage=_plain_dict(lineage) or {"estimator": _estimator_name(module),
                                         "exported_with": "torch.onnx.export"},
    )
    reg = registry or Registry()
    version = reg.create_version(name, new)
    _record_reference(reg, version, frame, lambda: predictor)
    if alias:
        version = reg.set_alias(name, version.version, alias, reason="registered with alias")
    return version


def _convert_all(model: Any, signature: Signature, frame: pd.DataFrame,
                 reference: dict[str, np.ndarray], wanted: tuple[str, ...] | list[str] | None
                 ) -> tuple[list[Artefact], dict[str, bytes]]:
    artefacts: list[Artefact] = []
    blobs: dict[str, bytes] = {}
    for fmt in wanted or F.DEFAULT_FORMATS:
        try:
            module = F.get(fmt)
            if not module.available():
                raise MissingExtra(module.EXTRA, fmt)
            data = module.convert(model, signature, frame)
        except MissingExtra as exc:
            if wanted:
                raise
            artefacts.append(Artefact(format=fmt, status="skipped",
                                      reason=f"not installed: pip install 'modelport[{exc.extra}]'"))
            continue
        except ConversionError as exc:
            artefacts.append(Artefact(format=fmt, status="rejected", reason=str(exc)))
            continue
        except Exception as exc:  # a converter's own failure rejects that format only
            artefacts.append(Artefact(format=fmt, status="rejected",
                                      reason=f"conversion failed: {type(exc).__name__}: {exc}"[:500]))
            continue
        try:
            candidate = module.load(data, signature).run(frame)
            parity = compare(reference, candidate, signature.task, module.TOLERANCE)
        except Exception as exc:
            parity = {"passed": False, "reason": f"scoring failed: {type(exc).__name__}: {exc}"[:500]}
        status = "accepted" if parity["passed"] else "rejected"
        if status == "accepted" and len(frame):
            parity["single_row_us"] = _single_row_us(module.load(data, signature), frame)
        artefacts.append(Artefact(format=fmt, status=status, size=len(data), parity=parity,
                                  reason=parity.get("reason")))
        if status == "accepted":
            blobs[fmt] = data
    return artefacts, blobs


def _single_row_us(predictor: Predictor, frame: pd.DataFrame, runs: int = 200, budget_s: float = 0.25) -> float | None:
    """Median microseconds to score one row given as a dict, the way a service calls it.

    Up to ``runs`` calls, stopping after ``budget_s`` seconds (at least 5 calls), so slow
    runtimes do not slow registration down.
    """
    import time

    row = {k: (None if v != v else v) for k, v in frame.iloc[0].items()}
    try:
        predictor.run(row)  # the first call may load lazily
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < runs and (len(times) < 5 or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            predictor.run(row)
            times.append(time.perf_counter() - t0)
    except Exception:
        return None  # a format that cannot score a lone row is simply not timed
    return round(float(np.median(times)) * 1e6, 1)


def _frame(model: Any, sample: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(sample, pd.DataFrame):
        return sample.reset_index(drop=True)
    names = getattr(model, "feature_names_in_", None)
    frame = to_frame(sample, list(names) if names is not None else None)
    if names is None:
        # an estimator fitted on a plain array takes numbers only
        frame = frame.astype("float64")
    return frame.reset_index(drop=True)


def _limit(frame: pd.DataFrame) -> pd.DataFrame:
    """At most ``SAMPLE_ROWS`` rows of ``frame``, in their order: the same rows for the same
    data, chosen without a permutation of every row, so a large training set is not
    copied."""
    if len(frame) > SAMPLE_ROWS:
        at = np.random.default_rng(0).choice(len(frame), size=SAMPLE_ROWS, replace=False)
        frame = frame.iloc[np.sort(at)]
    return frame.reset_index(drop=True)


def _enrich(signature: Signature, frame: pd.DataFrame) -> Signature:
    missing = [n for n in signature.names if n not in frame.columns]
    if missing:
        raise UserError(f"the sample lacks column(s) {', '.join(map(repr, missing))}; the "
                        f"model reads: {', '.join(signature.names)}")
    inferred = Signature.infer(frame[signature.names], signature.task, signature.classes,
                               chunk_rows=CHUNK_ROWS)
    by_name = {c.name: c for c in inferred.inputs}
    for col in signature.inputs:
        seen = by_name[col.name]
        col.nullable, col.min, col.max = seen.nullable, seen.min, seen.max
        if col.kind == "categorical" and not col.categories:
            col.categories = seen.categories
    return signature


def _parquet(frame: pd.DataFrame | None) -> bytes | None:
    if frame is None:
        return None
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf, index=False)
    except UnicodeEncodeError:
        raise UserError(_not_unicode(frame)) from None
    return buf.getvalue()


def _not_unicode(frame: pd.DataFrame) -> str:
    """The message for training rows holding text that is not Unicode (a lone surrogate,
    which no file or database can store), naming the column."""
    def bad(text: object) -> bool:
        try:
            str(text).encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True

    where = next((f"the column name {str(c).encode('utf-8', 'backslashreplace').decode()!r}"
                  for c in frame.columns if bad(c)), None)
    if where is None:
        where = next((f"column {str(c)!r}" for c in frame.columns
                      if frame[c].dtype == object and frame[c].dropna().map(bad).any()),
                     "the rows")
    return (f"{where} holds text that is not Unicode (a lone surrogate, such as \\ud800): "
            "no artefact can store it; fix the text, or drop it before registering")


def fingerprint(frame: pd.DataFrame) -> str:
    """A sha256 over a DataFrame's column names, dtypes and row hashes, hashed in chunks
    of rows (row hashes do not depend on the chunking, so neither does the digest)."""
    import pandas as pd

    h = hashlib.sha256()
    h.update("|".join(f"{c}:{frame[c].dtype}" for c in frame.columns).encode())
    for chunk in row_chunks(frame, CHUNK_ROWS):
        h.update(pd.util.hash_pandas_object(chunk, index=False).to_numpy().tobytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    from importlib.metadata import PackageNotFoundError, version

    try:
        out["modelport"] = version("modelport")
    except PackageNotFoundError:
        pass
    for mod in _LIBRARIES:
        m = sys.modules.get(mod)
        if m is not None and getattr(m, "__version__", None):
            out["scikit-learn" if mod == "sklearn" else mod] = str(m.__version__)
    return out


def _estimator_name(model: Any) -> str:
    t = type(model)
    return f"{t.__module__}.{t.__qualname__}"


def _params(model: Any) -> dict[str, Any]:
    try:
        params = model.get_params(deep=False)
    except Exception:
        return {}
    return {k: v for k, v in _plain_dict(params).items() if v is not None}


def _plain_dict(d: dict | None) -> dict:
    if not d:
        return {}
    return {str(k): _plain(v) for k, v in d.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, dict):
        return _plain_dict(v)
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return repr(v)[:200]
