"""Training statistics: what a version saw when it was registered, to compare traffic with.

At registration (:func:`modelport.log_model`, :func:`modelport.import_model` with a
sample) the rows of the registration sample and the model's outputs on them are summed
up per feature and stored in the registry (table ``mp_references``):

- a number: the share missing, decile bin edges and the count in each bin (the bins PSI
  is computed over), the exact value counts when it takes at most 100 distinct values
  or else 201 quantiles (the distribution Kolmogorov-Smirnov is computed against), mean,
  standard deviation, minimum and maximum;
- a category: the share missing and the count of each category;
- the prediction: the score (probability of the positive class, the value of a
  regression) as a number and the predicted label as a category.

A version registered before modelport kept statistics gets them computed from its stored
sample the first time it is monitored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelport.errors import UserError

#: decile edges: ten bins (fewer when values repeat) plus one for missing values
BIN_QUANTILES = np.linspace(0.1, 0.9, 9)
#: a number with at most this many distinct values keeps its exact value counts
DISCRETE = 100
QUANTILES = 201
MISSING = "(missing)"
OTHER = "(other)"


# -- computing ---------------------------------------------------------------------------

def numeric(values) -> dict[str, Any]:
    """The statistics of one numeric column (NaN is missing)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    out: dict[str, Any] = {"kind": "numeric", "rows": int(x.size),
                           "missing": int(x.size - finite.size)}
    if not finite.size:
        out.update(edges=[], counts=[0], missing_count=out["missing"])
        return out
    edges = np.unique(np.quantile(finite, BIN_QUANTILES))
    out["edges"] = edges.tolist()
    out["counts"] = bin_counts(finite, edges).tolist()
    distinct, counts = np.unique(finite, return_counts=True)
    if distinct.size <= DISCRETE:
        out["values"] = distinct.tolist()
        out["value_counts"] = counts.tolist()
    else:
        out["quantiles"] = np.quantile(finite, np.linspace(0, 1, QUANTILES)).tolist()
    out.update(mean=float(finite.mean()), std=float(finite.std()), min=float(finite.min()),
               max=float(finite.max()))
    return out


def categorical(values) -> dict[str, Any]:
    """The statistics of one categorical column (None or NaN is missing)."""
    words = _words(values)
    present = [w for w in words if w is not None]
    cats, counts = np.unique(np.asarray(present, dtype=object).astype(str), return_counts=True) \
        if present else (np.array([]), np.array([]))
    return {"kind": "categorical", "rows": len(words), "missing": len(words) - len(present),
            "frequencies": {str(c): int(n) for c, n in zip(cats, counts, strict=True)}}


def bin_counts(finite: np.ndarray, edges) -> np.ndarray:
    """Counts of finite values in the bins (-inf, e0], (e0, e1], ..., (ek, inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def scores(outputs: dict[str, Any], task: str) -> np.ndarray | None:
    """The score of each row: positive-class (or top) probability, or the regression value."""
    if "proba" in outputs and outputs["proba"] is not None:
        p = np.asarray(outputs["proba"], dtype=np.float64)
        if p.ndim == 2 and p.shape[1]:
            return p[:, 1] if p.shape[1] == 2 else p.max(axis=1)
    if task == "regression" and "value" in outputs:
        return np.asarray(outputs["value"], dtype=np.float64)
    return None


def compute(frame, outputs: dict[str, Any], signature) -> dict[str, Any]:
    """The statistics of a sample (a DataFrame holding the signature's inputs) and of the
    model's ``outputs`` on it."""
    features = {}
    for col in signature.inputs:
        if col.name not in frame.columns:
            continue
        values = frame[col.name]
        if col.kind == "numeric":
            features[col.name] = numeric(np.asarray(values.to_numpy(dtype=np.float64,
                                                                     na_value=np.nan)))
        else:
            features[col.name] = categorical(values.to_numpy(dtype=object))
    prediction: dict[str, Any] = {}
    s = scores(outputs, signature.task)
    if s is not None:
        prediction["score"] = numeric(s)
    label = outputs.get("label", outputs.get("cluster"))
    if label is not None:
        prediction["label"] = categorical(np.asarray(label, dtype=object))
    return {"rows": int(len(frame)), "task": signature.task, "classes": signature.classes,
            "features": features, "prediction": prediction}


def _words(values) -> list:
    """Categories as strings, the way the signature reads them (2.0 -> "2"), None if missing."""
    out = []
    for v in np.asarray(values, dtype=object).tolist():
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


# -- storing -----------------------------------------------------------------------------

def _identity(version) -> dict[str, Any]:
    # a model deleted and registered again reuses version numbers: statistics belong to
    # the version that had this sample and creation time
    return {"sample_sha256": version.sample_sha256, "created_at": version.created_at}


def record(registry, version, statistics: dict[str, Any]) -> None:
    """Store ``statistics`` as the reference of ``version`` (replacing any older row)."""
    from sqlalchemy import delete, insert

    from modelport.registry import schema as S

    stats = {**statistics, "version": _identity(version)}
    t = S.references
    with S.write_txn(registry.engine) as conn:
        conn.execute(delete(t).where(t.c.model == version.name, t.c.version == version.version))
        conn.execute(insert(t).values(model=version.name, version=version.version,
                                      statistics=stats, created_at=datetime.now(UTC)))


def record_sample(registry, version, frame, outputs: dict[str, Any]) -> None:
    """Compute and store the reference of a version just registered with ``frame``."""
    from modelport.signature import Signature

    record(registry, version, compute(frame, outputs, Signature.from_dict(version.signature)))


def load(registry, version) -> dict[str, Any]:
    """The reference statistics of ``version``: stored, or computed from its sample (and
    stored) for versions registered without them."""
    from sqlalchemy import select

    from modelport.registry import schema as S

    t = S.references
    with registry.engine.connect() as conn:
        stored = conn.execute(select(t.c.statistics).where(
            t.c.model == version.name, t.c.version == version.version)).scalar()
    if stored and stored.get("version") == _identity(version):
        return stored
    if not version.sample_sha256:
        raise UserError(f"{version.uri} was registered without a sample, so there are no "
                        "training statistics to compare with; use --reference VERSION with a "
                        "version registered with a sample")
    frame = registry.sample(version)
    predictor = registry.load(version)
    stats = compute(frame, predictor.run(frame), predictor.signature)
    try:
        record(registry, version, stats)
    except Exception:  # noqa: BLE001 - a read-only registry still gets its answer
        pass
    return {**stats, "version": _identity(version)}
