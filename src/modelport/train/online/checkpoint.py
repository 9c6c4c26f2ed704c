"""Checkpoints: registry versions holding what a learner has learnt, its whole learning
state, and the source position they cover.

A checkpoint is registered like any model (``log_model``, with fast formats only: joblib
and ONNX, or joblib and the compiled form; PMML starts a Java runtime per conversion) and
its lineage records, under ``online``, the position in the source after the last event it
learnt, how many events that was, and the sha256 of the pickled learning state (learner,
preprocessing, prequential window, drift detector, labels still waiting) in the artefact
store, with its signature when ``MODELPORT_SIGNING_KEY`` is set (checked before the state
is unpickled, as every artefact's is). The state blob is stored before the version is created, and a version becomes
visible in one transaction, so a learner killed at any point leaves either a complete
checkpoint or none: :func:`latest` finds the last complete one to resume from, and the
source is read again from its position, so no event is learnt twice or skipped.

After registering, the checkpoint alias (``online-latest``) moves to the new version, and
the promotion gate decides whether ``production`` moves too: the checkpoint's windowed
metric against the serving version's on the same recent events (those the serving version
had not learnt from when it was a checkpoint of this learner), promoted unless worse by
more than ``promotion.threshold``.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.train.online.evaluate import summarise, terms
from modelport.train.online.learners import Prediction
from modelport.train.online.spec import LOWER_IS_BETTER, OnlineSpec

if TYPE_CHECKING:
    import pandas as pd

    from modelport.registry import Registry, Version

log = logging.getLogger("modelport.learn")
LINEAGE = "online"


@dataclass
class Payload:
    """A checkpoint as prepared at a batch boundary, before it is written."""

    state: bytes
    model: Any
    sample: Any
    metrics: dict[str, float]
    params: dict[str, Any]
    position: Any
    seq: int
    counts: dict[str, int]
    window: tuple
    classes: list | None
    formats: tuple[str, ...]
    run: str
    fingerprint: str
    parent: int | None
    acks: int = 0


@dataclass
class Written:
    """A checkpoint as registered: its version and what the promotion gate decided."""

    version: int
    promoted: bool
    reason: str
    acks: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def latest(registry: Registry, name: str) -> tuple[Version, bytes] | None:
    """The newest complete checkpoint of model ``name`` and its state, or None."""
    from modelport.uri import ModelURI

    for number, lineage in registry.lineages(name):
        online = lineage.get(LINEAGE) or {}
        if online.get("state_sha256"):
            version = registry.get(ModelURI(name, number))
            return version, registry.get_signed(online["state_sha256"],
                                                online.get("state_signature"), name,
                                                "online-state")
    return None


def formats_for(spec: OnlineSpec, convertible: bool) -> tuple[str, ...]:
    """The formats checkpoints are registered with: the spec's, else joblib plus ONNX (or
    the compiled form when the ONNX extra is missing) for models those can represent."""
    from modelport import formats

    if spec.formats:
        return tuple(spec.formats)
    if not convertible:
        return ("joblib",)
    return ("joblib", "onnx") if formats.available("onnx") else ("joblib", "compiled")


class Checkpointer:
    """Writes checkpoints one at a time in a background thread, so learning goes on while
    a checkpoint converts and proves its formats."""

    def __init__(self, spec: OnlineSpec, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="modelport-checkpoint")
        self.future: Future[Written] | None = None
        self._champion: tuple[int, Any] | None = None

    @property
    def busy(self) -> bool:
        return self.future is not None and not self.future.done()

    def submit(self, payload: Payload) -> None:
        self.future = self.pool.submit(self.write, payload)

    def poll(self, block: bool = False) -> Written | None:
        """The checkpoint written since the last poll, if any (waiting for it if
        ``block``). A checkpoint that failed is logged and yields None."""
        if self.future is None or (not block and not self.future.done()):
            return None
        future, self.future = self.future, None
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - learning goes on; the next one retries
            log.error("checkpoint failed (learning goes on; the next checkpoint retries): "
                      "%s: %s", type(exc).__name__, exc)
            return None

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def write(self, p: Payload) -> Written:
        """Register the checkpoint, move the checkpoint alias, apply the promotion gate."""
        from modelport.register import log_model

        spec, reg = self.spec, self.registry
        sha, signature = reg.put_signed(p.state, spec.name, "online-state")
        lineage = {
            "estimator": spec.estimator,
            "source": spec.source.describe(),
            LINEAGE: {"position": p.position, "seq": p.seq, "state_sha256": sha,
                      "state_signature": signature, "run": p.run,
                      "fingerprint": p.fingerprint, "counts": p.counts, "spec": spec.raw},
        }
        version = log_model(
            p.model, spec.name, p.sample, task=spec.task, metrics=p.metrics, params=p.params,
            tags={"online": "checkpoint", "events": str(p.seq),
                  "position": json.dumps(p.position, sort_keys=True)}, formats=p.formats,
            lineage=lineage, parent=p.parent, registry=reg,
            description=spec.description or f"online checkpoint after {p.seq} events")
        reg.set_alias(spec.name, version.version, spec.checkpoint_alias,
                      reason=f"checkpoint after {p.seq} events")
        promoted, reason = False, "promotion is off"
        if spec.promotion_alias:
            promoted, reason = self.gate(p, version.version)
            if promoted:
                reg.set_alias(spec.name, version.version, spec.promotion_alias, reason=reason)
        reg.record_event(spec.name, "online-checkpoint", {
            "version": version.version, "events": p.seq, "position": p.position,
            "metrics": p.metrics, "promoted": promoted, "reason": reason})
        log.info("checkpoint %s/%s after %d events (%s)%s", spec.name, version.version, p.seq,
                 ", ".join(f"{k}={v:.4f}" for k, v in p.metrics.items()),
                 f"; {spec.promotion_alias} -> {version.version}: {reason}" if promoted
                 else f"; {reason}")
        return Written(version.version, promoted, reason, p.acks, p.metrics)

    def gate(self, p: Payload, version: int) -> tuple[bool, str]:
        """Whether the new checkpoint may serve: its windowed metric is not worse than the
        serving version's on the same events by more than the threshold."""
        spec, reg = self.spec, self.registry
        assert spec.promotion_alias is not None  # the gate runs only when promotion is on
        metric = spec.promotion_metric
        current = reg.aliases(spec.name).get(spec.promotion_alias)
        if current is None:
            return True, f"first version for @{spec.promotion_alias}"
        from modelport.uri import ModelURI

        champion = reg.get(ModelURI(spec.name, current))
        online = champion.lineage.get(LINEAGE) or {}
        seq, frame, y, cand = p.window
        keep = np.ones(len(seq), dtype=bool)
        if online.get("run") == p.run and online.get("seq") is not None:
            keep = seq >= int(online["seq"])  # events the serving checkpoint never learnt
        name = {"accuracy": "correct", "log_loss": "log_loss", "mae": "abs_error",
                "rmse": "sq_error", "inertia": "inertia"}[metric]
        mine = cand.get(name)
        if mine is None:
            return False, f"no {metric} to compare"
        try:
            scores = self._score(current, frame[keep], y[keep])
        except Exception as exc:  # noqa: BLE001 - a version that cannot score is not beaten
            return False, (f"version {current} cannot score the recent events to compare "
                           f"({type(exc).__name__}: {exc}); {spec.promotion_alias} stays")
        theirs = scores.get(name)
        mine = mine[keep]
        both = ~np.isnan(mine) & (~np.isnan(theirs) if theirs is not None else False)
        count = int(np.sum(both))
        if count < spec.promotion_min_events:
            return False, (f"{count} recent event(s) to compare with version {current}; the "
                           f"gate waits for {spec.promotion_min_events}")
        assert theirs is not None  # else no event was compared
        a = summarise([metric], {name: mine[both]})[metric]
        b = summarise([metric], {name: theirs[both]})[metric]
        t = spec.promotion_threshold
        ok = a <= b + t if metric in LOWER_IS_BETTER else a >= b - t
        verdict = "promoted" if ok else "kept"
        return ok, (f"{metric} {a:.4f} vs {b:.4f} of version {current} over {count} recent "
                    f"events (threshold {t:g}): {verdict}")

    def _score(self, version: int, frame: pd.DataFrame, y: np.ndarray) -> dict[str, np.ndarray]:
        """Per-event score terms of a registered version on raw rows."""
        if self._champion is None or self._champion[0] != version:
            from modelport.uri import ModelURI

            self._champion = (version, self.registry.load(ModelURI(self.spec.name, version)))
        predictor = self._champion[1]
        out = predictor.run(frame) if len(frame) else {}
        n = len(frame)
        task = self.spec.task
        if not n:
            return {}
        if task == "classification":
            prediction = Prediction(label=out["label"], proba=out.get("proba"))
        elif task == "regression":
            prediction = Prediction(value=out["value"])
        else:
            # k-means' transform gives the distance to every centre
            distances = predictor.model.transform(predictor.signature.coerce(frame))
            prediction = Prediction(label=out["cluster"], value=distances.min(1) ** 2)
        return terms(task, np.asarray(y), prediction, predictor.signature.classes, n)
