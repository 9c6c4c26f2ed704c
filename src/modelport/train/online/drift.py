"""Drift detection on the error stream, with River's detectors.

Every learnt event adds one value to the detector: 1 or 0 for a wrong or right
classification, the absolute error of a regression, the squared distance of a clustered
event to its centre. What happens when the detector fires is the spec's ``drift.action``:

- ``alert``: the drift is logged, counted and recorded among the model's registry events;
- ``reset``: the learner starts afresh (its preprocessing too) from the next event on;
- ``challenger``: a fresh learner trains beside the current one on the same events; once
  both have predicted ``drift.min_events`` events, the challenger replaces the learner if
  its windowed metric is better, and is dropped if it has not won after
  ``drift.max_events``.

Detectors are named as in River (``ADWIN``, ``PageHinkley``, ``KSWIN``; the binary ones
``DDM``, ``EDDM``, ``HDDM_A``, ``HDDM_W``, ``FHDDM`` take only classification errors) or by a
dotted path, imported only from the modules specs may import from
(:func:`modelport.train.imports.import_class`); ``drift.params`` are passed to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import UserError, require

if TYPE_CHECKING:
    from modelport.train.online.config import OnlineSpec

_BINARY = ("DDM", "EDDM", "HDDM_A", "HDDM_W", "FHDDM")


def make_detector(spec: OnlineSpec) -> Detector:
    """A fresh detector as the spec names it."""
    drift = require("river.drift", "online", "drift detection")
    name = spec.drift_detector
    assert name is not None  # called only when the spec names a detector
    cls: type | None
    if "." in name:
        from modelport.train.imports import import_class

        cls = import_class(name, spec.label, "drift.detector")
    else:
        cls = next((c for c in (getattr(drift, name, None), getattr(drift.binary, name, None))
                    if isinstance(c, type)), None)
        if cls is None:
            known = [n for n in dir(drift) if n[:1].isupper() and n not in
                     ("DriftRetrainingClassifier", "DummyDriftDetector", "NoDrift")]
            raise UserError(f"{spec.label}: drift.detector: River has no detector {name!r}; "
                            f"use one of {', '.join(known + list(_BINARY))} or a dotted path")
    binary = cls.__name__ in _BINARY or "binary" in cls.__module__
    if binary and spec.task != "classification":
        raise UserError(f"{spec.label}: drift.detector: {cls.__name__} watches right/wrong "
                        f"answers only; for {spec.task} use ADWIN, PageHinkley or KSWIN")
    try:
        detector = cls(**spec.drift_params)
    except TypeError as exc:
        raise UserError(f"{spec.label}: drift.params: {cls.__name__} does not accept these "
                        f"parameters ({exc})") from None
    if not hasattr(detector, "update") or not hasattr(detector, "drift_detected"):
        raise UserError(f"{spec.label}: drift.detector: {cls.__name__} is not a River drift "
                        "detector (no update / drift_detected)")
    return Detector(detector, binary)


class Detector:
    """A River detector and whether it takes right/wrong values rather than numbers."""

    def __init__(self, detector: Any, binary: bool) -> None:
        self.detector = detector
        self.binary = binary
        self.name = type(detector).__name__

    def watch(self, errors: np.ndarray) -> int | None:
        """Feed a batch of errors (NaN: no prediction, skipped); the position of the first
        event at which drift was detected, else None."""
        update = self.detector.update
        detector = self.detector
        binary = self.binary
        first = None
        for i, value in enumerate(errors.tolist()):
            if value != value:
                continue
            update(bool(value) if binary else value)
            if first is None and detector.drift_detected:
                first = i
        return first
