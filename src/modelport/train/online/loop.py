"""The learning loop: read a batch of events, predict it, learn it, score the predictions,
watch the errors for drift, and checkpoint at the spec's pace.

Everything a restart needs is in :class:`State` (the learner, the evaluation window, the
drift detector, labels still waiting, the counters and the source position), pickled
into every checkpoint at a batch boundary. A learner that starts finds the newest
checkpoint of its model, restores that state and opens its source at the stored position,
so after a crash (even ``kill -9``) every event is learnt exactly once, and with the same
batches as an uninterrupted run wherever the source delivers them the same way (a file,
a stream that already holds the events).

Events are checked by the scoring core's row checker, one call a batch; an event it
rejects, one that cannot be decoded, one whose label is not a class or one holding a
number the learner cannot learn is not learnt: it is counted by the code of its reason and
written, with the reason, to the spec's ``rejects`` destination
(:mod:`~modelport.train.online.rejects`) before any checkpoint covers it.

With ``label_delay`` events without a label are predicted as they arrive and wait, by id,
for their label; a later event carrying the id and the target joins them, is scored
against the prediction made at arrival, and is learnt with the features that arrived
first. Events whose label comes with them are predicted and learnt at once.

A learner's first batch holds 16 events (enough to tell text fields from numbers), the
next ones up to the spec's batch size. A scikit-learn learner learns a batch in steps
that grow, from one event, with the events it has learnt
(:meth:`~modelport.train.online.learners.SklearnLearner.test_then_train`): only the very
first event goes unpredicted, and a young model is never far behind the stream.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modelport.errors import UserError
from modelport.io.events import stop_on_signals
from modelport.io.tables import redact as describe
from modelport.scoring.checks import Reject, as_event, check, shown
from modelport.train.online import checkpoint as ckpt
from modelport.train.online.evaluate import (
    Window,
    error_stream,
    needed,
    summarise,
    terms,
)
from modelport.train.online.learners import Prediction, effective_params, make_learner
from modelport.train.online.rejects import open_rejects, record
from modelport.train.online.schema import Features, Schema
from modelport.train.online.spec import LOWER_IS_BETTER, OnlineSpec

if TYPE_CHECKING:
    from modelport.io.brokers import Message
    from modelport.registry import Registry, Version
    from modelport.scoring.following import Heartbeat
    from modelport.scoring.metrics import LearnMetrics
    from modelport.signature import Signature
    from modelport.train.online.drift import Detector
    from modelport.train.online.rejects import BrokerRejects, FileRejects
    from modelport.train.online.sources import Batch, Source

log = logging.getLogger("modelport.learn")
SAMPLE_ROWS = 1000
#: events in a learner's first batch (later ones: up to the spec's batch size)
_FIRST_BATCH = 16
_TERM = {"accuracy": "correct", "log_loss": "log_loss", "mae": "abs_error", "rmse": "sq_error",
         "inertia": "inertia"}
#: the term a drift detector watches, by task
_ERROR_TERM = {"classification": frozenset({"correct"}), "regression": frozenset({"abs_error"}),
               "clustering": frozenset({"inertia"})}


@dataclass
class Result:
    """What a run of the learner did."""

    name: str
    events: int = 0
    learned: int = 0
    rejected: int = 0
    unlabelled: int = 0
    duplicates: int = 0
    expired: int = 0
    unmatched: int = 0
    seconds: float = 0.0
    events_per_s: float = 0.0
    prequential: dict[str, float] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    scored: int = 0
    checkpoints: list[int] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    drifts: int = 0
    position: Any = None
    resumed_from: int | None = None
    #: the events of this run rejected, by the code of their reason
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "events_per_s": round(self.events_per_s, 1),
                "prequential": self.prequential, "checkpoints": self.checkpoints,
                "name": self.name, "learned": self.learned, "rejected": self.rejected,
                "rejected_by_reason": self.rejected_by_reason,
                "unlabelled": self.unlabelled, "duplicates": self.duplicates,
                "expired": self.expired, "unmatched_labels": self.unmatched,
                "seconds": round(self.seconds, 3), "overall": self.overall,
                "scored": self.scored,
                "promoted": self.promoted, "drifts": self.drifts, "position": self.position,
                "resumed_from": self.resumed_from}


class Exemplars:
    """Rows worth registering with a checkpoint besides the recent ones: where each number
    was smallest and largest, the first row of every category, a row with each field
    missing. The signature a checkpoint records (ranges, vocabularies) then covers
    everything the learner has seen, and the server does not refuse what it learnt from."""

    def __init__(self, n_numeric: int, n_categorical: int, cap: int) -> None:
        self.low = np.full(n_numeric, np.inf)
        self.high = np.full(n_numeric, -np.inf)
        self.cats: list[set] = [set() for _ in range(n_categorical)]
        self.rows: dict[tuple, tuple[np.ndarray, tuple]] = {}
        self.cap = cap

    def update(self, f: Features) -> None:
        if not len(f):
            return
        num = f.num
        if num.shape[1]:
            missing = np.isnan(num)
            low = np.where(missing, np.inf, num)
            high = np.where(missing, -np.inf, num)
            at_low, at_high = low.argmin(0), high.argmax(0)
            for j in range(num.shape[1]):
                i = at_low[j]
                if low[i, j] < self.low[j]:
                    self.low[j] = low[i, j]
                    self._keep(("min", j), f, i)
                i = at_high[j]
                if high[i, j] > self.high[j]:
                    self.high[j] = high[i, j]
                    self._keep(("max", j), f, i)
                if ("null", j) not in self.rows and missing[:, j].any():
                    self._keep(("null", j), f, int(missing[:, j].argmax()))
        import pandas as pd

        for j, col in enumerate(f.cat):
            seen = self.cats[j]
            if len(seen) >= self.cap:
                continue
            codes, distinct = pd.factorize(col)
            new = [k for k, v in enumerate(distinct) if v not in seen]
            if ("blank", j) not in self.rows and (codes < 0).any():
                self._keep(("blank", j), f, int(np.argmax(codes < 0)))
            if not new:
                continue
            _, first = np.unique(codes, return_index=True)
            offset = 1 if (codes < 0).any() else 0  # np.unique puts the -1 of missing first
            for k in new[:self.cap - len(seen)]:
                seen.add(distinct[k])
                self._keep(("cat", j, distinct[k]), f, int(first[k + offset]))

    def _keep(self, key: tuple, f: Features, i: int) -> None:
        self.rows[key] = (f.num[i].copy(), tuple(c[i] for c in f.cat))

    def features(self, n_categorical: int) -> Features:
        rows = list(self.rows.values())
        if not rows:
            return Features(np.empty((0, len(self.low))),
                            [np.empty(0, dtype=object) for _ in range(n_categorical)])
        cat = [np.empty(len(rows), dtype=object) for _ in range(n_categorical)]
        for r, (_, values) in enumerate(rows):
            for j, v in enumerate(values):
                cat[j][r] = v
        return Features(np.vstack([r[0] for r in rows]), cat)


class Learner(Protocol):
    """What the loop asks of a learner (:mod:`modelport.train.online.learners`), tagged by
    :meth:`State.tag`."""

    tag: int

    def accepts(self, y: np.ndarray) -> np.ndarray: ...

    def fresh(self) -> Learner: ...

    def export(self) -> Any: ...

    def convertible(self) -> bool: ...


class State:
    """Everything a checkpoint restores."""

    def __init__(self, spec: OnlineSpec) -> None:
        self.run = uuid.uuid4().hex
        self.fingerprint = spec.learning_fingerprint()
        self.schema: Schema | None = None
        self.learner: Learner | None = None
        self.challenger: Learner | None = None
        self.challenge: dict[str, Any] | None = None
        self.window: Window | None = None
        self.detector: Detector | None = None
        self.drift_config = _drift_config(spec)
        self.exemplars: Exemplars | None = None
        self.pending: OrderedDict = OrderedDict()
        self.seq = 0
        self.tags = 0
        self.counts = {k: 0 for k in ("events", "learned", "rejected", "unlabelled",
                                      "duplicates", "expired", "unmatched")}
        self.reasons: dict[str, int] = {}  # rejected events by the code of their reason
        self.drifts = 0
        self.position: Any = None
        # brokers without positions: ids of learnt messages not acknowledged yet (what a
        # checkpoint covers), and after a restart the ids the last checkpoint covered
        self.recent_ids: list = []
        self.covered: set = set()
        self.last_version: int | None = None

    def tag(self, learner: Learner) -> Learner:
        self.tags += 1
        learner.tag = self.tags
        return learner


def _drift_config(spec: OnlineSpec) -> tuple[str | None, str, str]:
    return (spec.drift_detector, repr(sorted(spec.drift_params.items())), spec.drift_action)


class Learning:
    """Drives a :class:`State` batch by batch; the registry only for drift events."""

    def __init__(self, spec: OnlineSpec, state: State, registry: Registry) -> None:
        self.spec = spec
        self.state = state
        self.registry = registry
        self.on_drift: Callable[[str], None] | None = None
        self._warned: set[str] = set()
        self._sig: tuple[Schema | None, Signature] | None = None
        #: records of rejected events not yet taken for the spec's rejects destination
        self.rejects: list[dict] = []

    # -- one batch -----------------------------------------------------------------------

    def process(self, batch: Batch) -> list:
        """Learn a batch; returns broker messages to acknowledge at once (duplicates of
        events a checkpoint already covers). The events it rejects are counted by reason
        and, when the spec names a rejects destination, wait in :attr:`rejects` as records
        until the caller takes them (:meth:`take_rejects`) and writes them."""
        st, spec = self.state, self.spec
        st.counts["events"] += batch.n + len(batch.unreadable)
        for j, (why, payload) in enumerate(batch.unreadable):
            self._reject(st.seq + j, why, payload=payload)
        st.seq += len(batch.unreadable)
        if batch.n == 0:
            return []
        ack_now: list = []
        if st.covered and batch.ids is not None:
            batch, ack_now = self._drop_duplicates(batch)
            if batch.n == 0:
                return ack_now
        if st.schema is None:
            self._start(batch)
        n = batch.n
        y, has, rejects = _target(batch.column(spec.target) if spec.target else None, n,
                                  spec.task, spec.target)
        features, blank = self._check(batch, has, rejects)
        seq = st.seq + np.arange(n)
        st.seq += n
        ok = np.ones(n, dtype=bool)
        if rejects:
            for i in sorted(rejects):
                self._reject(seq[i], rejects[i], event=batch.event(i))
            ok[list(rejects)] = False
        if spec.label_delay is None:
            learn = np.flatnonzero(ok & has)
            st.counts["unlabelled"] += int((ok & ~has).sum())
            if len(learn):
                self._learn(seq[learn], _take(features, learn, n), y[learn], batch, learn)
        else:
            self._delayed(batch, features, y, has, ok, seq, blank)
        return ack_now

    def _check(self, batch: Batch, has: np.ndarray,
               rejects: dict[int, Reject]) -> tuple[Features, np.ndarray | None]:
        """The features of a batch, adding to ``rejects`` (by position) the events they keep
        from being learnt; with ``label_delay``, also which events are labels on their own.

        One call of the scoring core's row checker checks the whole batch as columns. Only
        events with a missing value can lack a field: those that do are checked again as
        records, for the checker to name the field. With ``label_delay`` an event that
        carries a label and no feature at all is a label arriving on its own, not an event
        missing its fields. Then the learner's own rules: text that is not Unicode (which
        no checkpoint can hold) and a number it cannot learn (an infinite one, or a missing
        one that nothing imputes) reject their event.
        """
        st, spec = self.state, self.spec
        schema, n = st.schema, batch.n
        assert schema is not None  # set by _start
        columns = {name: batch.column(name) if batch.has(name) else [None] * n
                   for name in schema.order}
        checked = check(columns, self._signature(), unknown="ignore")
        for i, why in checked.rejects.items():
            rejects.setdefault(i, why)
        for i, names in batch.not_text.items():
            name = next((f for f in names if f in schema.order or f == spec.target), None)
            if name is not None:
                rejects.setdefault(i, _not_text(name, batch.event(i)[name]))
        features = schema.features(checked.columns, n)
        num = features.num
        gaps = np.isnan(num)
        # which categories are missing costs a pass over each column: only asked when needed
        rows = batch.columns is None
        cat_gaps = [_missing(c) for c in features.cat] \
            if rows or spec.label_delay is not None else []
        blank = None
        if spec.label_delay is not None:
            blank = gaps.all(1)
            for c in cat_gaps:
                blank &= c
        lacking = self._lacking(batch, gaps, cat_gaps)
        if lacking:
            fields = frozenset(schema.order)
            events = [batch.event(i) for i in lacking]
            if blank is not None:  # labels on their own are no events missing fields
                alone = [fields.isdisjoint(e) and has[i] for e, i in zip(events, lacking,
                                                                          strict=True)]
                events = [e for e, a in zip(events, alone, strict=True) if not a]
                lacking = [i for i, a in zip(lacking, alone, strict=True) if not a]
            found = check(events, self._signature(), unknown="ignore").rejects
            for j, why in found.items():
                rejects[lacking[j]] = as_event(why, j)
        if num.shape[1]:
            spoilt = np.isinf(num)
            if spec.numeric == "none" and not spec.river:
                spoilt |= gaps
                if blank is not None:
                    spoilt[blank & has] = False
            if spoilt.any():
                for i in np.flatnonzero(spoilt.any(1)).tolist():
                    if i not in rejects:
                        j = int(spoilt[i].argmax())
                        rejects[i] = _not_learnable(schema.numeric[j], num[i, j])
        return features, blank

    def _lacking(self, batch: Batch, gaps: np.ndarray, cat_gaps: list[np.ndarray]) -> list[int]:
        """The positions of the events that lack a field (not merely hold null in it): for
        columns, every event or none; for rows, only events with a missing value can."""
        assert self.state.schema is not None  # set by _start
        names = self.state.schema.order
        if batch.columns is not None:
            return [] if all(batch.has(name) for name in names) else list(range(batch.n))
        some = gaps.any(1) if gaps.shape[1] else np.zeros(batch.n, dtype=bool)
        for c in cat_gaps:
            some |= c
        if not some.any():
            return []
        fields, rows = frozenset(names), batch.rows
        assert rows is not None  # a batch without columns holds rows
        return [i for i in np.flatnonzero(some).tolist() if not rows[i].keys() >= fields]

    def _signature(self) -> Signature:
        """The signature the checker checks events against (built once per schema)."""
        st = self.state
        assert st.schema is not None  # set by _start
        if self._sig is None or self._sig[0] is not st.schema:
            self._sig = (st.schema, st.schema.signature(self.spec.task))
        return self._sig[1]

    def _reject(self, seq: int | np.integer, why: Reject, *, event: dict | None = None,
                payload: bytes | None = None) -> None:
        """Count a rejected event by its reason and, when the spec names a rejects
        destination, keep its record for it."""
        st = self.state
        st.counts["rejected"] += 1
        st.reasons[why.code] = st.reasons.get(why.code, 0) + 1
        if why.code not in self._warned:
            self._warned.add(why.code)
            where = (f"they go to {describe(self.spec.rejects)}" if self.spec.rejects else
                     "name a rejects: destination in the spec to keep them")
            log.warning("events are rejected (%s), e.g.: %s; %s", why.code, why.message, where)
        if self.spec.rejects is not None:
            self.rejects.append(record(self.spec.name, int(seq), why, event, payload))

    def take_rejects(self) -> list[dict]:
        """The records of the events rejected since the last call, in the order of the
        events."""
        out, self.rejects = self.rejects, []
        out.sort(key=lambda r: r["seq"])
        return out

    def _start(self, batch: Batch) -> None:
        st, spec = self.state, self.spec
        st.schema = Schema.infer(spec, batch.sample())
        st.learner = st.tag(make_learner(spec, st.schema))
        st.window = Window(spec.task, spec.metrics, spec.window, len(st.schema.numeric),
                           len(st.schema.categorical))
        st.exemplars = Exemplars(len(st.schema.numeric), len(st.schema.categorical),
                                 2 * spec.max_categories)
        if spec.drift_detector:
            from modelport.train.online.drift import make_detector

            st.detector = make_detector(spec)
        log.info("learning %s from %s: numeric %s, categorical %s", spec.name,
                 spec.source.describe(), st.schema.numeric, st.schema.categorical)

    def _drop_duplicates(self, batch: Batch) -> tuple[Batch, list[Message]]:
        """Drop events a checkpoint already covers (delivered again after a crash between
        the checkpoint and its acknowledgement); their messages are acknowledged at once."""
        covered = self.state.covered
        # called for broker messages with ids, which come with their messages
        assert batch.ids is not None and batch.messages is not None
        keep = [i for i, m in enumerate(batch.ids) if m is None or m not in covered]
        if len(keep) == batch.n:
            return batch, []
        self.state.counts["duplicates"] += batch.n - len(keep)
        again = [m for m in batch.messages if m.id is not None and m.id in covered]
        rest = batch.take(keep)
        rest.ids = [batch.ids[i] for i in keep]
        return rest, again

    def _learners(self) -> list:
        st = self.state
        return [st.learner] + ([st.challenger] if st.challenger is not None else [])

    def _learn(self, seq: np.ndarray, features: Features, y: np.ndarray, batch: Batch,
               at: np.ndarray) -> None:
        """Predict then learn events (``at``: their positions in ``batch``); a label
        outside the classes rejects its event."""
        st = self.state
        assert st.learner is not None  # set by _start
        accepted = st.learner.accepts(y)
        if not accepted.all():
            for j in np.flatnonzero(~accepted).tolist():
                self._reject(seq[j], self._unknown_class(y[j]), event=batch.event(int(at[j])))
            keep = np.flatnonzero(accepted)
            seq, features, y = seq[keep], features.take(keep), y[keep]
            if not len(seq):
                return
        predictions = {L.tag: L.test_then_train(features, y) for L in self._learners()}
        self._score(seq, features, y, predictions)

    def _score(self, seq: np.ndarray, features: Features, y: np.ndarray,
               predictions: dict[int, Prediction | None]) -> None:
        st, spec = self.state, self.spec
        assert st.learner is not None and st.window is not None and st.exemplars is not None
        n = len(seq)
        wanted = needed(spec.metrics) | _ERROR_TERM[spec.task] if st.detector is not None \
            else needed(spec.metrics)
        main = terms(spec.task, y, predictions.get(st.learner.tag), _classes(st.learner), n,
                     wanted)
        other = None
        if st.challenger is not None:
            other = terms(spec.task, y, predictions.get(st.challenger.tag),
                          _classes(st.challenger), n, wanted)
        st.window.add(seq, features, y, main, other)
        st.exemplars.update(features)
        st.counts["learned"] += n
        if other is not None:
            self._challenge(main, other, n)
        if st.detector is not None:
            at = st.detector.watch(error_stream(spec.task, main))
            if at is not None:
                self._drift(int(seq[at]))

    # -- delayed labels ------------------------------------------------------------------

    def _delayed(self, batch: Batch, features: Features, y: np.ndarray, has: np.ndarray,
                 ok: np.ndarray, seq: np.ndarray, blank: np.ndarray | None) -> None:
        st, spec = self.state, self.spec
        # with label_delay the spec names an id, and _check finds the labels on their own
        assert spec.id is not None and blank is not None
        ids = batch.column(spec.id)
        ids = [None] * batch.n if ids is None else list(ids.tolist()
                                                         if isinstance(ids, np.ndarray) else ids)
        waiting = np.flatnonzero(ok & ~has)
        keyed = np.array([i for i in waiting if _present(ids[i])], dtype=np.int64)
        st.counts["unlabelled"] += len(waiting) - len(keyed)
        if len(keyed):
            part = features.take(keyed)
            made = {L.tag: L.predict(part) for L in self._learners()}
            for j, i in enumerate(keyed.tolist()):
                key = ids[i]
                st.pending.pop(key, None)
                st.pending[key] = (int(seq[i]), part.num[j].copy(), tuple(c[j] for c in part.cat),
                                   {tag: _row(p, j) for tag, p in made.items()})
        labelled = np.flatnonzero(ok & has)
        joined, direct = [], []
        for i in labelled.tolist():
            entry = st.pending.pop(ids[i], None) if _present(ids[i]) else None
            if entry is not None:
                joined.append((entry, i))
            elif blank[i]:
                st.counts["unmatched"] += 1  # a label for an event never seen, or expired
            else:
                direct.append(i)
        if joined:
            self._join(joined, y, batch, seq)
        if direct:
            index = np.asarray(direct)
            self._learn(seq[index], features.take(index), y[index], batch, index)
        assert spec.label_delay is not None  # only delayed labels come here
        limit = st.seq - spec.label_delay
        while st.pending:
            key, entry = next(iter(st.pending.items()))
            if entry[0] >= limit:
                break
            st.pending.popitem(last=False)
            st.counts["expired"] += 1

    def _join(self, joined: list, y: np.ndarray, batch: Batch, seq: np.ndarray) -> None:
        st = self.state
        assert st.learner is not None and st.schema is not None  # set by _start
        index = np.array([i for _, i in joined])
        labels = y[index]
        accepted = st.learner.accepts(labels)
        if not accepted.all():
            for j in np.flatnonzero(~accepted).tolist():
                i = int(index[j])
                self._reject(seq[i], self._unknown_class(labels[j]), event=batch.event(i))
            joined = [j for j, a in zip(joined, accepted, strict=True) if a]
            labels = labels[accepted]
            if not joined:
                return
        k = len(st.schema.categorical)
        num = np.vstack([e[1] for e, _ in joined])
        cat = [np.empty(len(joined), dtype=object) for _ in range(k)]
        for r, (e, _) in enumerate(joined):
            for j in range(k):
                cat[j][r] = e[2][j]
        features = Features(num, cat)
        seq = np.array([e[0] for e, _ in joined], dtype=np.int64)
        predictions = {}
        for L in self._learners():
            predictions[L.tag] = _stacked([e[3].get(L.tag) for e, _ in joined], _classes(L),
                                          self.spec.task)
            L.learn(features, labels)
        self._score(seq, features, labels, predictions)

    # -- drift ---------------------------------------------------------------------------

    def _drift(self, at: int) -> None:
        st, spec = self.state, self.spec
        st.drifts += 1
        assert st.detector is not None and st.learner is not None  # the drift's watcher
        action = spec.drift_action
        detail = {"at_event": at, "detector": st.detector.name, "action": action}
        if action == "reset":
            st.learner = st.tag(st.learner.fresh())
        elif action == "challenger":
            if st.challenger is not None:
                detail["action"] = action = "ignored (a challenger is already learning)"
            else:
                st.challenger = st.tag(st.learner.fresh())
                st.challenge = {"since": at, "events": 0, "main": [0.0, 0], "other": [0.0, 0]}
        if spec.drift_action != "alert":
            from modelport.train.online.drift import make_detector

            st.detector = make_detector(spec)
        log.warning("drift detected by %s at event %d: %s", detail["detector"], at, action)
        self._event("online-drift", detail)
        if self.on_drift is not None:
            self.on_drift(spec.drift_action)

    def _challenge(self, main: dict, other: dict, n: int) -> None:
        st, spec = self.state, self.spec
        term = _TERM[spec.promotion_metric]
        a, b = main.get(term), other.get(term)
        c = st.challenge
        assert c is not None and st.window is not None  # set with the challenger
        c["events"] += n
        if a is not None and b is not None:
            both = ~np.isnan(a) & ~np.isnan(b)
            c["main"][0] += float(a[both].sum())
            c["main"][1] += int(both.sum())
            c["other"][0] += float(b[both].sum())
            c["other"][1] += int(both.sum())
        compared = c["other"][1]
        if compared >= spec.drift_min_events:
            mine = summarise([spec.promotion_metric],
                             {term: np.array([c["main"][0] / compared])})[spec.promotion_metric]
            theirs = summarise([spec.promotion_metric],
                               {term: np.array([c["other"][0] / compared])})[spec.promotion_metric]
            lower = spec.promotion_metric in LOWER_IS_BETTER
            if (theirs < mine) if lower else (theirs > mine):
                st.learner, st.challenger, st.challenge = st.challenger, None, None
                st.window.promote_other(c["since"])
                log.warning("the challenger learner wins (%s %.4f vs %.4f over %d events) and "
                            "replaces the learner", spec.promotion_metric, theirs, mine, compared)
                self._event("online-challenger", {"outcome": "won", "metric": spec.promotion_metric,
                                                  "challenger": theirs, "learner": mine,
                                                  "events": compared})
                return
        if c["events"] >= spec.drift_max_events:
            log.info("the challenger learner did not win within %d events; dropped",
                     spec.drift_max_events)
            self._event("online-challenger", {"outcome": "dropped", "events": c["events"]})
            st.challenger, st.challenge = None, None
            st.window.other = {}

    def _event(self, kind: str, data: dict) -> None:
        try:
            self.registry.record_event(self.spec.name, kind, data)
        except Exception as exc:  # noqa: BLE001 - an event that cannot be recorded is logged
            log.warning("could not record %s in the registry: %s", kind, exc)

    def _unknown_class(self, label: Any) -> Reject:
        classes = _classes(self.state.learner)
        label = label.item() if isinstance(label, np.generic) else label
        text = shown(label) if isinstance(label, str) else repr(label)[:40]
        return Reject(self.spec.target, "unknown_class",
                      f"label {text} is not one of the classes {classes}; list every class "
                      "under classes: in the spec")

    # -- checkpoints ---------------------------------------------------------------------

    def payload(self, formats: tuple[str, ...], acks: int) -> ckpt.Payload:
        """The checkpoint of the state as it is now, copied so learning can go on."""
        st, spec = self.state, self.spec
        state = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
        assert st.window is not None and st.schema is not None  # set by _start
        assert st.exemplars is not None and st.learner is not None
        seq, recent, y, values = st.window.rows()
        frame = st.schema.frame(recent)
        extra = st.exemplars.features(len(st.schema.categorical))
        room = max(SAMPLE_ROWS - len(extra), 0)
        tail = recent.take(slice(max(len(recent) - room, 0), len(recent)))
        sample = st.schema.frame(Features.concat([extra, tail]) if len(extra) else tail)
        params = {"estimator": spec.estimator, **effective_params(spec)}
        if spec.pipeline:
            params["pipeline"] = [p for p, _ in spec.pipeline]
        return ckpt.Payload(
            state=state, model=st.learner.export(), sample=sample,
            metrics=st.window.values(), params=params, position=st.position, seq=st.seq,
            counts=dict(st.counts), window=(seq, frame, y, values),
            classes=_classes(st.learner), formats=formats, run=st.run,
            fingerprint=st.fingerprint, parent=st.last_version, acks=acks)


def _take(features: Features, index: np.ndarray, n: int) -> Features:
    return features if len(index) == n else features.take(index)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _classes(learner: object) -> list[Any] | None:
    classes = getattr(learner, "classes", None)
    if classes is None:
        return None
    return list(classes.tolist() if isinstance(classes, np.ndarray) else classes)


def _target(raw: np.ndarray | list[Any] | None, n: int, task: str,
            name: str | None) -> tuple[np.ndarray, np.ndarray, dict[int, Reject]]:
    """The labels of a batch (aligned with its events), which events have one, and the
    events whose label cannot be learnt, by position: a list or an object for a class, a
    regression target that is not a number or is infinite."""
    bad: dict[int, Reject] = {}
    if task == "clustering":
        return np.zeros(n), np.ones(n, dtype=bool), bad
    if raw is None:
        return np.zeros(n), np.zeros(n, dtype=bool), bad
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        if raw.dtype.kind == "f":
            if task == "regression":
                _infinite(raw, name, bad)
            return raw, np.isfinite(raw), bad
        return raw, np.ones(n, dtype=bool), bad
    values = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    has = np.fromiter((_present(v) for v in values), dtype=bool, count=n)
    if task == "regression":
        y = np.full(n, np.nan)
        try:
            y[has] = np.asarray([v for v, h in zip(values, has, strict=True) if h],
                                dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            for i in np.flatnonzero(has).tolist():
                y[i] = _float(values[i])
                if y[i] != y[i]:
                    bad[i] = Reject(name, "wrong_type", f"label {name!r} must be a number, got "
                                    f"{shown(values[i])}; send a number or null")
        _infinite(y, name, bad)
        return y, has & np.isfinite(y), bad
    present = [v for v, h in zip(values, has, strict=True) if h]
    try:
        typed = np.asarray(present) if present else np.empty(0)
    except ValueError:  # lists of unequal length among the labels
        typed = None
    if typed is None or typed.dtype == object or typed.ndim != 1:
        for i in np.flatnonzero(has).tolist():
            if not isinstance(values[i], str | int | float | np.generic):
                bad[i] = Reject(name, "wrong_type", f"label {name!r} must be one value (a "
                                f"class), got a {type(values[i]).__name__}")
                has[i] = False
        present = [v for v, h in zip(values, has, strict=True) if h]
        typed = np.asarray(present) if present else np.empty(0)
    y = np.empty(n, dtype=typed.dtype if typed.dtype.kind in "biufU" else object)
    if y.dtype.kind in "biuf":
        y[:] = 0
    y[has] = typed
    return y, has, bad


def _infinite(y: np.ndarray, name: str | None, bad: dict[int, Reject]) -> None:
    for i in np.flatnonzero(np.isinf(y)).tolist():
        bad.setdefault(i, Reject(name, "not_learnable", f"label {name!r} is {y[i]}, which "
                                 "cannot be learnt; send a finite number"))


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _missing(values: np.ndarray) -> np.ndarray:
    """Which values of a checked categorical column are missing: the checker gives them as
    NaN, the one value not equal to itself (a comparison five times faster than isna)."""
    return np.asarray(values != values, dtype=bool)


def _not_text(name: str, value: str) -> Reject:
    """Text that is not Unicode (a lone surrogate) cannot be learnt: no checkpoint, file or
    model holds it as it is, and spelling it otherwise would learn another value."""
    return Reject(name, "not_text", f"field {name!r} holds text that is not Unicode "
                  f"({shown(value)}: a lone surrogate); send UTF-8 text")


def _not_learnable(name: str, value: float) -> Reject:
    """The learner's own rule: a number it cannot learn rejects its event."""
    if value != value:
        return Reject(name, "not_learnable",
                      f"field {name!r} is missing and preprocess.numeric is none, so nothing "
                      "fills it in; send a number, or set preprocess.numeric to impute")
    return Reject(name, "not_learnable", f"field {name!r} is {value}, which cannot be learnt; "
                  "send a finite number")


def _row(prediction: Prediction | None,
         j: int) -> tuple[Any, np.ndarray | None, float | None] | None:
    """One event's prediction, stored while its label is on the way."""
    if prediction is None or (prediction.scored is not None and not prediction.scored[j]):
        return None
    return (None if prediction.label is None else prediction.label[j],
            None if prediction.proba is None else prediction.proba[j].copy(),
            None if prediction.value is None else float(prediction.value[j]))


def _stacked(rows: list, classes: list[Any] | None, task: str) -> Prediction | None:
    """Stored predictions as one :class:`Prediction` (events predicted before the learner
    had learnt anything are marked unscored)."""
    n = len(rows)
    scored = np.array([r is not None for r in rows], dtype=bool)
    if not scored.any():
        return None
    if task == "regression":
        return Prediction(value=np.array([r[2] if r else np.nan for r in rows]), scored=scored)
    label = np.empty(n, dtype=object)
    label[:] = [r[0] if r else None for r in rows]
    value = None
    if task == "clustering":
        value = np.array([r[2] if r else np.nan for r in rows])
        return Prediction(label=label, value=value, scored=scored)
    proba = None
    width = len(classes or [])
    if all(r is None or r[1] is not None for r in rows) and width:
        proba = np.zeros((n, width))
        for i, r in enumerate(rows):
            if r is not None:
                proba[i, :len(r[1])] = r[1]
    return Prediction(label=label, proba=proba, scored=scored)


# -- the run -----------------------------------------------------------------------------

def resume(spec: OnlineSpec, registry: Registry,
           fresh: bool = False) -> tuple[State, Version | None]:
    """The state to start from: the newest checkpoint's (unless ``fresh``), else a new one."""
    found = None if fresh else ckpt.latest(registry, spec.name)
    if found is None:
        return State(spec), None
    version, blob = found
    state: State = pickle.loads(blob)
    if state.fingerprint != spec.learning_fingerprint():
        raise UserError(
            f"{spec.label}: {spec.name}/{version.version} was learnt under a different spec "
            "(its source, target, features, id, classes, learner or preprocess differ); pass "
            "--fresh to learn from scratch, or give the model another name")
    state.last_version = version.version
    if not hasattr(state, "reasons"):  # learnt before rejects were counted by reason
        state.reasons = {}
    state.covered, state.recent_ids = set(state.recent_ids) - {None}, []
    if state.window is not None and (state.window.size != spec.window
                                     or state.window.metrics != spec.metrics):
        old = state.window
        state.window = Window(spec.task, spec.metrics, spec.window, old.num.shape[1],
                              len(old.cat))
    if _drift_config(spec) != state.drift_config:
        from modelport.train.online.drift import make_detector

        state.drift_config = _drift_config(spec)
        state.detector = make_detector(spec) if spec.drift_detector and state.schema else None
        state.challenger, state.challenge = None, None
    if spec.checkpoint_alias not in version.aliases:
        registry.set_alias(spec.name, version.version, spec.checkpoint_alias,
                           reason="learner resumed from this checkpoint")
    log.info("resuming %s from checkpoint %s/%s (%d events learnt, position %s)", spec.name,
             spec.name, version.version, state.counts["learned"], state.position)
    return state, version


async def run(spec: OnlineSpec, *, follow: bool = False, fresh: bool = False,
              registry: Registry | None = None,
              stop: asyncio.Event | None = None, metrics_port: int | None = None) -> Result:
    """Learn from the spec's source until it ends (or ``stop`` is set, or SIGTERM/SIGINT),
    checkpointing on the way and once at the end; return what this run did.

    OpenMP runs one thread meanwhile: on batches of a few hundred events, waking threads
    costs more than they save (k-means' assignment step took 40 times longer with two).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return await _run(spec, follow=follow, fresh=fresh, registry=registry, stop=stop,
                          metrics_port=metrics_port)


async def _run(spec: OnlineSpec, *, follow: bool, fresh: bool, registry: Registry | None,
               stop: asyncio.Event | None, metrics_port: int | None) -> Result:
    """One run, top to bottom: the source, the state it resumes and what learns from it;
    then read, learn and checkpoint until the source ends or a signal comes; then the last
    checkpoint and the run's own figures."""
    from modelport.registry import Registry
    from modelport.train.online.sources import open_source

    registry = registry or Registry()
    source = open_source(spec, follow)
    state, resumed = resume(spec, registry, fresh)
    learning = Learning(spec, state, registry)
    channel = open_rejects(spec)
    prom = _metrics(spec, learning, metrics_port)
    pulse = _heartbeat(spec, state, registry)
    stop = stop_on_signals(stop)
    result = Result(spec.name, resumed_from=resumed.version if resumed else None)
    tally = _Tally(state, prom)
    checkpoints = _Checkpoints(spec, state, learning, ckpt.Checkpointer(spec, registry),
                               source, channel, result, prom)
    if channel is not None:
        await channel.connect()
    await source.open(state.position)
    failed = False
    try:
        while not stop.is_set():
            size = spec.batch_size if state.seq else min(spec.batch_size, _FIRST_BATCH)
            batch = await source.read(size, spec.max_wait_ms / 1000)
            if batch is None:
                break  # a replay ended
            if batch.n or batch.unreadable:
                await _learn(batch, learning, channel, source, checkpoints)
                tally.learnt()
            if batch.position is not None:
                state.position = batch.position
            await checkpoints.settle(checkpoints.writer.poll())
            if state.learner is None:
                continue  # nothing learnt yet: nothing to checkpoint
            pulse.tick(state.last_version)
            await checkpoints.when_due()
            tally.report()
    except BaseException:
        failed = True
        raise
    finally:
        await checkpoints.finish(failed)
    return tally.result(result)


def _metrics(spec: OnlineSpec, learning: Learning, port: int | None) -> LearnMetrics | None:
    """Prometheus metrics on ``port`` (None without one), drifts counted as they come."""
    if not port:
        return None
    from modelport.scoring.metrics import LearnMetrics

    prom = LearnMetrics(spec.name)
    prom.serve(port)
    learning.on_drift = prom.drift
    return prom


def _heartbeat(spec: OnlineSpec, state: State, registry: Registry) -> Heartbeat:
    """The learner's heartbeat in the registry: its checkpoint version and counts."""
    from modelport.scoring.following import Heartbeat

    return Heartbeat(registry, spec.name, surface="learn", stats=lambda: {
        "scored": state.counts["learned"], "rejected": dict(state.reasons)})


async def _learn(batch: Batch, learning: Learning, channel: FileRejects | BrokerRejects | None,
                 source: Source, checkpoints: _Checkpoints) -> None:
    """Learn one batch: its rejects go to the rejects channel; what needs no checkpoint
    (duplicates, unreadable messages) is acknowledged now, the rest is held for one."""
    ack_now = learning.process(batch)
    rejected = learning.take_rejects()
    if rejected and channel is not None:
        await channel.write(rejected)
    if batch.messages:
        checkpoints.hold(batch.messages, ack_now)
    if ack_now:
        await source.acknowledge(ack_now)


class _Checkpoints:
    """When the learner checkpoints, and what a written checkpoint settles.

    A checkpoint is due every ``every_events`` events or ``every_seconds`` seconds, and
    sooner when the messages held unacknowledged near the source's ``window``. Written
    (in the background), it acknowledges the messages it covers, records its version
    (promoted or not) in the result and the metrics. The rejects it covers are made safe
    before it is submitted.
    """

    def __init__(self, spec: OnlineSpec, state: State, learning: Learning,
                 writer: ckpt.Checkpointer, source: Source,
                 channel: FileRejects | BrokerRejects | None, result: Result,
                 prom: LearnMetrics | None) -> None:
        self.spec, self.state, self.learning = spec, state, learning
        self.writer, self.source, self.channel = writer, source, channel
        self.result, self.prom = result, prom
        #: messages learnt and not yet covered by a checkpoint, oldest first
        self.unacked: list = []
        self.last_seq, self.last_time = state.seq, time.monotonic()

    def hold(self, messages: list, ack_now: list) -> None:
        """Hold the messages of a batch not acknowledged at once until a checkpoint."""
        again = {id(m) for m in ack_now}
        held = [m for m in messages if id(m) not in again]
        self.unacked.extend(held)
        self.state.recent_ids.extend(m.id for m in held)

    async def settle(self, written: ckpt.Written | None) -> None:
        if written is None:
            return
        self.result.checkpoints.append(written.version)
        if written.promoted:
            self.result.promoted.append(written.version)
        self.state.last_version = written.version
        if written.acks:
            done = self.unacked[:written.acks]
            del self.unacked[:written.acks]
            del self.state.recent_ids[:written.acks]
            self.state.covered = set()  # what a restart found again is acknowledged by now
            await self.source.acknowledge(done)
        if self.prom is not None:
            self.prom.checkpoint(written.version, written.promoted)

    async def submit(self) -> None:
        state = self.state
        if self.channel is not None:  # the rejects the checkpoint covers are safe first
            await self.channel.sync()
        assert state.learner is not None  # submitted once learning started
        formats = ckpt.formats_for(self.spec, state.learner.convertible())
        self.writer.submit(self.learning.payload(formats, len(self.unacked)))
        self.last_seq, self.last_time = state.seq, time.monotonic()

    async def when_due(self) -> None:
        """Submit a checkpoint when one is due (waiting for the one being written only when
        the source's window forces it)."""
        spec, window = self.spec, self.source.window
        fresh = self.state.seq - self.last_seq
        forced = window is not None and \
            len(self.unacked) >= max(window - 2 * spec.batch_size, window // 2, 1)
        due = fresh >= spec.every_events or forced or (
            fresh > 0 and spec.every_seconds is not None
            and time.monotonic() - self.last_time >= spec.every_seconds)
        if not due:
            return
        if self.writer.busy and forced:
            await self.settle(await asyncio.to_thread(self.writer.poll, True))
        if not self.writer.busy:
            await self.submit()

    async def finish(self, failed: bool) -> None:
        """The checkpoint being written, and a last one of what came after it (unless the
        run failed); then close the writer, the source and the rejects channel."""
        try:
            await self.settle(await asyncio.to_thread(self.writer.poll, True))
            if not failed and self.state.learner is not None and \
                    self.state.seq > self.last_seq:
                await self.submit()
                await self.settle(await asyncio.to_thread(self.writer.poll, True))
        finally:
            self.writer.close()
            try:
                await self.source.close()
            finally:
                if self.channel is not None:
                    await self.channel.close()


class _Tally:
    """This run's own figures: counts since it started, and its pace from the first batch
    learnt on (start-up is not counted), reported to the metrics once a second."""

    def __init__(self, state: State, prom: LearnMetrics | None) -> None:
        self.state, self.prom = state, prom
        self.start_counts, self.start_reasons = dict(state.counts), dict(state.reasons)
        self.first: float | None = None
        self.last: float | None = None
        self.first_events = 0
        self.next_report = 0.0

    def learnt(self) -> None:
        self.last = time.perf_counter()
        if self.first is None:  # speed is counted from here: start-up is behind us
            self.first = self.last
            self.first_events = self.state.counts["events"] - self.start_counts["events"]

    def report(self) -> None:
        now = time.monotonic()
        if self.prom is None or now < self.next_report:
            return
        state = self.state
        self.next_report = now + 1.0
        self.prom.update(_run_counts(state.counts, self.start_counts),
                         state.window.values() if state.window else {}, len(state.pending),
                         state.seq, _run_counts(state.reasons, self.start_reasons))

    def result(self, result: Result) -> Result:
        """``result`` filled in with the run's figures."""
        state = self.state
        counts = _run_counts(state.counts, self.start_counts)
        result.events = counts["events"]
        result.learned = counts["learned"]
        result.rejected = counts["rejected"]
        result.unlabelled = counts["unlabelled"]
        result.duplicates = counts["duplicates"]
        result.expired = counts["expired"]
        result.unmatched = counts["unmatched"]
        result.seconds = (self.last - self.first) \
            if self.first is not None and self.last is not None else 0.0
        timed = result.events - self.first_events
        result.events_per_s = timed / result.seconds if result.seconds > 0 else 0.0
        result.prequential = state.window.values() if state.window else {}
        result.overall = state.window.overall() if state.window else {}
        result.scored = state.window.scored_total() if state.window else 0
        result.drifts = state.drifts
        result.position = state.position
        result.rejected_by_reason = {k: v for k, v in _run_counts(
            state.reasons, self.start_reasons).items() if v}
        if self.prom is not None:
            self.prom.update(counts, result.prequential, len(state.pending), state.seq,
                             result.rejected_by_reason)
        return result


def _run_counts(now: dict, start: dict) -> dict:
    return {k: v - start.get(k, 0) for k, v in now.items()}
