"""Which artefact serves a version: one policy for every surface.

A version holds several artefacts, each proved against the native model at registration
and either accepted or rejected. The surfaces that score a row at a time (HTTP, streams,
trigger workers, the online learner's checkpoints when served) take the accepted artefact
that scored one row fastest when it was registered (``single_row_us``); batch jobs take the
first accepted in :data:`BATCH_ORDER` (the order ``benchmarks/batch.py`` measures: the
compiled form walks trees in C and needs no pandas, ONNX computes in one call); a
``batch_rows_per_s`` figure recorded for an artefact would rank it first, but registration
records only ``single_row_us`` today. ``--format`` forces one, which must be accepted. An
artefact whose runtime is not installed here (onnxruntime for ``onnx``, a JVM for
``pmml``) is passed over with the reason kept.

``modelport models show`` prints :func:`describe`, so what it says is what the surfaces
will use.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from modelport.predictor import Predictor
    from modelport.registry import Registry, Version

log = logging.getLogger(__name__)

#: what scores a row at a time when nothing was timed at registration
ROW_ORDER = ("onnx", "compiled", "joblib", "skops", "pmml", "mojo", "pojo")
#: what scores a batch when no throughput was measured at registration
BATCH_ORDER = ("compiled", "onnx", "joblib", "skops", "pmml", "mojo", "pojo")
PURPOSES = ("row", "batch")


@dataclass(frozen=True)
class Choice:
    """The artefact chosen for a purpose, and why, in words."""

    format: str
    purpose: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"format": self.format, "purpose": self.purpose, "why": self.why}


def choose(version: Version, purpose: str = "row", forced: str | None = None) -> Choice:
    """The artefact to score ``version`` with, for ``purpose`` (``row`` or ``batch``).

    ``forced`` (``--format``) must name an accepted artefact. Otherwise the accepted
    artefacts whose runtime is installed here are ranked by what registration measured
    (one-row latency for ``row``, rows per second for ``batch``), untimed ones after
    timed ones in the fixed order of the purpose. No accepted artefact is a UserError.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r}: use row or batch")
    accepted = version.accepted_formats()
    if forced:
        if forced not in accepted:
            raise UserError(f"{version.uri} has no accepted {forced} artefact; it has: "
                            f"{', '.join(accepted) or 'none'} (use --format with one of them)")
        return Choice(forced, purpose, "forced by --format")
    ranked = _ranked(version, purpose)
    passed: list[str] = []
    for fmt, measured in ranked:
        missing = _unavailable(fmt)
        if missing:
            passed.append(f"{fmt} ({missing})")
            continue
        why = measured or "the first accepted in the default order (nothing was timed at " \
                          "registration)"
        if passed:
            why += "; passed over: " + ", ".join(passed)
        return Choice(fmt, purpose, why)
    if accepted:
        raise UserError(f"{version.uri}: no accepted artefact can be scored here: "
                        f"{'; '.join(passed)}")
    raise UserError(f"{version.uri} has no accepted artefact to score with")


def describe(version: Version) -> dict[str, Any]:
    """What every surface will score ``version`` with, and why: ``row`` (HTTP, streams,
    triggers) and ``batch`` (``modelport predict``), or the reason none can."""
    out: dict[str, Any] = {}
    for purpose in PURPOSES:
        try:
            out[purpose] = choose(version, purpose).as_dict()
        except UserError as exc:
            out[purpose] = {"format": None, "purpose": purpose, "why": str(exc)}
    return out


def _ranked(version: Version, purpose: str) -> list[tuple[str, str | None]]:
    """Accepted formats, best first, each with a sentence on its measurement (or None)."""
    key, order = ("single_row_us", ROW_ORDER) if purpose == "row" else \
        ("batch_rows_per_s", BATCH_ORDER)
    timed: list[tuple[float, str]] = []
    untimed: list[tuple[int, str]] = []
    for a in version.artefacts:
        if a.status != "accepted":
            continue
        figure = (a.parity or {}).get(key)
        if figure is not None:
            timed.append((float(figure), a.format))
        else:
            rank = order.index(a.format) if a.format in order else len(order)
            untimed.append((rank, a.format))
    if purpose == "row":
        timed.sort()
        measured: list[tuple[str, str | None]] = [
            (f, f"the fastest accepted: {t:,.1f} µs per row at registration") for t, f in timed]
    else:
        timed.sort(reverse=True)
        measured = [(f, f"the fastest accepted: {t:,.0f} rows/s at registration")
                    for t, f in timed]
    return measured + [(f, None) for _, f in sorted(untimed)]


def _unavailable(fmt: str) -> str | None:
    """Why the runtime of ``fmt`` cannot run here, or None when it can."""
    from modelport import formats

    try:
        module = formats.get(fmt)
        if module.available():
            return None
        extra = getattr(module, "EXTRA", None)
        return f"not installed: pip install 'modelport[{extra}]'" if extra else "not available"
    except Exception as exc:  # noqa: BLE001 - a runtime that fails to import is passed over
        return f"its runtime fails to load: {type(exc).__name__}"


def load(registry: Registry, version: Version, purpose: str = "row",
         forced: str | None = None) -> tuple[Predictor, Choice]:
    """The chosen artefact of ``version`` loaded into a Predictor and warmed up (one made-up
    row scored, so the first real row pays no lazy initialisation), with the
    :class:`Choice` that picked it."""
    chosen = choose(version, purpose, forced)
    predictor = registry.load(version, format=chosen.format)
    warm_up(predictor)
    if purpose == "row":
        compile_trees_later(predictor)
    return predictor, chosen


def compile_trees_later(predictor: Predictor) -> threading.Thread | None:
    """Start building the compiled trees of a large tree ensemble a row-at-a-time surface
    serves (:mod:`modelport.compile.ctrees`); return the thread, or None when there is
    nothing to build.

    One row walks a large ensemble several times faster in compiled C than by the NumPy
    walk, but the C compiler takes seconds to build it (once per machine: the library is
    cached). So the build runs in a background thread while the version already serves
    with the NumPy walk; the compiled trees take over once they are proven against it on
    probe rows. ``MODELPORT_TREES=numpy`` (or no C compiler) leaves the NumPy walk.
    """
    from modelport.compile import ctrees

    if not predictor.wants_compiled_trees(ctrees.ROW_MIN_NODES) or not ctrees.enabled():
        return None
    thread = threading.Thread(target=_compile_quietly, args=(predictor,), daemon=True,
                              name="modelport-compile-trees")
    thread.start()
    return thread


def _compile_quietly(predictor: Predictor) -> None:
    try:
        predictor.prepare_batch()
    except Exception:  # noqa: BLE001 - the version keeps serving with the NumPy walk
        log.warning("compiled trees for %s could not be built; scoring with the NumPy walk",
                    predictor.describe(), exc_info=True)


def warm_up(predictor: Predictor) -> None:
    """Score one made-up row inside the training ranges."""
    row: dict[str, Any] = {}
    for col in predictor.signature.inputs:
        if col.kind == "numeric":
            row[col.name] = col.min if col.min is not None else 0.0
        else:
            row[col.name] = col.categories[0] if col.categories else None
    try:
        predictor.run_checked({k: _column(v) for k, v in row.items()})
    except Exception:  # noqa: BLE001 - a model that cannot score the made-up row still serves
        pass


def _column(value: Any) -> np.ndarray:
    import numpy as np

    if value is None or isinstance(value, str):
        return np.array([np.nan if value is None else value], dtype=object)
    return np.array([value], dtype=np.float64)
