"""Drift: how far logged traffic has moved from a version's training statistics.

Each feature (and the prediction) gets two tests against its reference
(:mod:`modelport.monitor.reference`):

- numbers: the **population stability index** over the reference's decile bins plus a
  missing-value bin (drifted above 0.2, the usual "significant shift" mark), and the
  **Kolmogorov-Smirnov** distance between the two distributions (drifted above 0.1 when
  its p-value is also below 0.05, so that a small window's noise is not called drift);
- categories: PSI over the categories (plus missing, plus unseen ones together), and
  Pearson's **chi-square** test of the two frequency tables (drifted when its p-value is
  below 0.01).

PSI uses add-one-half smoothing, so a bin that is empty on one side does not make it
infinite. Below ``min_rows`` rows a window's values are reported but never called drift:
PSI over ten bins of twenty rows is mostly noise.

:func:`change_points` runs a River drift detector (ADWIN by default) along the logged
score stream or error stream and returns where it fired, for models scoring in real time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import MissingExtra, UserError
from modelport.monitor.reference import MISSING, OTHER, bin_counts

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from river.base import DriftDetector

#: statistic -> (threshold, how a value compares with it to be called drift)
THRESHOLDS: dict[str, float] = {"psi": 0.2, "ks": 0.1, "chi2_p": 0.01}
KS_ALPHA = 0.05
MIN_ROWS = 100
DETECTORS = ("adwin", "kswin", "page-hinkley")


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two count vectors over the same bins."""
    r = np.asarray(reference, dtype=np.float64) + 0.5
    c = np.asarray(current, dtype=np.float64) + 0.5
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_counts(ref: dict[str, Any], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference, current) counts over the reference's bins, the missing bin last."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    current = np.append(bin_counts(finite, ref["edges"]), x.size - finite.size)
    reference = np.append(np.asarray(ref["counts"], dtype=np.float64), ref["missing"])
    return reference, current


def categorical_counts(ref: dict[str, Any],
                       values: Iterable[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(categories, reference, current) counts; categories unseen in the reference are
    counted together as ``(other)``, missing values as ``(missing)``."""
    known = ref["frequencies"]
    current: dict[str, int] = {}
    missing = 0
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            missing += 1
            continue
        key = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        key = key if key in known else OTHER
        current[key] = current.get(key, 0) + 1
    cats = list(known) + [OTHER, MISSING]
    ref_counts = np.array([known[c] for c in known] + [0, ref["missing"]], dtype=np.float64)
    cur_counts = np.array([current.get(c, 0) for c in known] + [current.get(OTHER, 0), missing],
                          dtype=np.float64)
    return cats, ref_counts, cur_counts


def ks(ref: dict[str, Any], values: np.ndarray) -> tuple[float, float]:
    """Kolmogorov-Smirnov distance (and p-value) between the reference distribution and the
    finite ``values``; NaN when either side has no number."""
    from scipy.stats import distributions

    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[np.isfinite(x)]
    n_ref = ref["rows"] - ref["missing"]
    if not x.size or n_ref <= 0:
        return float("nan"), float("nan")
    if "values" in ref:
        points = np.asarray(ref["values"], dtype=np.float64)
        cdf = np.cumsum(ref["value_counts"]) / float(np.sum(ref["value_counts"]))
        grid = np.union1d(points, x)
        ref_cdf = np.concatenate([[0.0], cdf])[np.searchsorted(points, grid, side="right")]
    else:
        q = np.asarray(ref["quantiles"], dtype=np.float64)
        probs = np.linspace(0, 1, len(q))
        grid = np.union1d(q, x)
        q_unique, first = np.unique(q, return_index=True)
        last = np.append(first[1:] - 1, len(q) - 1)
        ref_cdf = np.interp(grid, q_unique, probs[last], left=0.0, right=1.0)
    cur_cdf = np.searchsorted(x, grid, side="right") / x.size
    d = float(np.max(np.abs(cur_cdf - ref_cdf)))
    en = n_ref * x.size / (n_ref + x.size)
    p = float(distributions.kstwo.sf(d, max(int(round(en)), 1)))
    return d, p


def chi2(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-square statistic and p-value of the 2 x k table of counts."""
    from scipy.stats import chi2_contingency

    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    stat, p, _, _ = chi2_contingency(table, correction=False)
    return float(stat), float(p)


def test_feature(name: str, ref: dict[str, Any], values: Iterable[Any] | np.ndarray,
                 thresholds: dict[str, float],
                 min_rows: int = MIN_ROWS, details: bool = True) -> list[dict[str, Any]]:
    """The drift tests of one column: a list of ``{feature, kind, statistic, value,
    threshold, drifted}`` (plus ``p_value`` for KS, ``chi2`` for chi-square and, with
    ``details``, the binned distributions the HTML report draws)."""
    values = list(values) if not isinstance(values, np.ndarray) else values
    n = len(values)
    judged = n >= min_rows
    rows: list[dict[str, Any]] = []
    if ref["kind"] == "numeric":
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
            x = values.astype(np.float64)
        else:  # numbers logged as text by a lenient source become NaN if not numbers
            import pandas as pd

            x = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
        r, c = numeric_counts(ref, x)
        value = psi(r, c)
        rows.append(_row(name, "numeric", "psi", value, thresholds["psi"],
                         judged and value > thresholds["psi"]))
        d, p = ks(ref, x)
        row = _row(name, "numeric", "ks", d, thresholds["ks"],
                   judged and d == d and d > thresholds["ks"] and p < KS_ALPHA)
        row["p_value"] = _round(p)
        rows.append(row)
        if details:
            rows[0]["bins"] = _numeric_bins(ref)
            rows[0]["reference"] = _shares(r)
            rows[0]["current"] = _shares(c)
            finite = x[np.isfinite(x)]
            rows[0]["current_mean"] = _round(float(finite.mean())) if finite.size else None
            rows[0]["reference_mean"] = _round(ref.get("mean"))
    else:
        cats, r, c = categorical_counts(ref, values)
        value = psi(r, c)
        rows.append(_row(name, "categorical", "psi", value, thresholds["psi"],
                         judged and value > thresholds["psi"]))
        stat, p = chi2(r, c)
        row = _row(name, "categorical", "chi2_p", p, thresholds["chi2_p"],
                   judged and p < thresholds["chi2_p"])
        row["chi2"] = _round(stat)
        rows.append(row)
        if details:
            rows[0]["bins"] = cats
            rows[0]["reference"] = _shares(r)
            rows[0]["current"] = _shares(c)
    if not judged:
        for row in rows:
            row["note"] = f"fewer than {min_rows} rows: not judged"
    return rows


def _row(feature: str, kind: str, statistic: str, value: float, threshold: float,
         drifted: bool) -> dict[str, Any]:
    return {"feature": feature, "kind": kind, "statistic": statistic, "value": _round(value),
            "threshold": threshold, "drifted": bool(drifted)}


def _round(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if v != v else round(v, 6)


def _shares(counts: np.ndarray) -> list[float]:
    total = float(np.sum(counts))
    return [round(float(c) / total, 6) if total else 0.0 for c in counts]


def _numeric_bins(ref: dict[str, Any]) -> list[str]:
    edges = ref["edges"]
    if not edges:
        return ["all", MISSING]
    labels = [f"<= {_fmt(edges[0])}"]
    labels += [f"{_fmt(a)} - {_fmt(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f"> {_fmt(edges[-1])}")
    return labels + [MISSING]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def parse_thresholds(items: list[str] | dict[str, Any] | None) -> dict[str, float]:
    """``["psi=0.25", "ks=0.15"]`` (or a dict) over the defaults in :data:`THRESHOLDS`."""
    out = dict(THRESHOLDS)
    if not items:
        return out
    pairs = items.items() if isinstance(items, dict) else \
        [item.partition("=")[::2] for item in items]
    for key, value in pairs:
        key = str(key).strip()
        if key not in THRESHOLDS:
            raise UserError(f"--threshold {key}={value}: unknown statistic; use "
                            f"{', '.join(THRESHOLDS)} (e.g. --threshold psi=0.25)")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise UserError(f"--threshold {key}={value}: the threshold must be a number") \
                from None
    return out


# -- change points in a stream -----------------------------------------------------------

def change_points(values: ArrayLike, detector: str = "adwin") -> list[int]:
    """Positions in ``values`` (in time order) where a River drift detector fired.

    ``adwin`` (ADWIN: a change in the mean of the stream), ``kswin`` (a sliding-window
    Kolmogorov-Smirnov test) or ``page-hinkley``. Needs ``pip install 'modelport[online]'``.
    """
    try:
        from river import drift as river_drift
    except ImportError:
        raise MissingExtra("online", "river", "change detection on the score stream") from None
    d: DriftDetector
    if detector == "adwin":
        d = river_drift.ADWIN()
    elif detector == "kswin":
        d = river_drift.KSWIN(seed=0)
    elif detector == "page-hinkley":
        d = river_drift.PageHinkley()
    else:
        raise UserError(f"--detector {detector!r}: use one of {', '.join(DETECTORS)}")
    found = []
    for i, v in enumerate(np.asarray(values, dtype=np.float64).tolist()):
        if v != v:
            continue
        d.update(v)
        if d.drift_detected:
            found.append(i)
    return found
