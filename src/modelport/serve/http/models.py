"""The models a server holds: each follows a registry URI and swaps in new versions live.

A :class:`Follower` owns the version currently served for one URI (``churn``,
``churn@production``, ``churn/3``). A poll asks the registry one cheap question (which
version does this alias or bare name point to now?); when the answer changes it loads the
new version in a background thread with the fastest parity-checked artefact (ONNX when its
conversion was accepted, else joblib, else what the registry would load), scores one row
to warm it up, and only then swaps the reference, in one assignment. A request holds the
:class:`Loaded` it started with, so in-flight requests finish on the old version and no
request ever sees a half-loaded one. A load that fails leaves the old version serving and
is kept in :attr:`Follower.error` for the health routes and the logs.

A :class:`ServedModel` is what one name on the server answers with: a champion, an
optional canary taking a weighted share of requests, and an optional shadow that sees a
copy of every request and whose answers are only logged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import UserError
from modelport.serve.http.batching import MicroBatcher
from modelport.uri import ModelURI

log = logging.getLogger("modelport.serve")

#: artefacts tried when the version's measured fastest runtime cannot load, in order;
#: each was proved against the model at registration
SERVING_ORDER = ("onnx", "compiled", "joblib")


@dataclass
class Loaded:
    """One version ready to score: its predictor and its batcher."""

    uri: ModelURI
    version: int
    format: str
    predictor: Any
    batcher: MicroBatcher
    loaded_at: float = field(default_factory=time.time)

    @property
    def signature(self):
        return self.predictor.signature

    def describe(self) -> dict[str, Any]:
        return {"uri": str(self.uri), "version": self.version, "format": self.format,
                "loaded_at": self.loaded_at}


def serving_format(version, forced: str | None = None) -> str | None:
    """The artefact to serve ``version`` with: ``forced``, else the accepted format that
    scored one row fastest at registration, else ONNX, compiled, joblib; None if none."""
    accepted = version.accepted_formats()
    if forced:
        if forced not in accepted:
            raise UserError(
                f"{version.uri} has no accepted {forced} artefact; it has: "
                f"{', '.join(accepted) or 'none'}")
        return forced
    fastest = version.serving_format()  # timed on one row at registration
    for fmt in dict.fromkeys(((fastest,) if fastest else ()) + SERVING_ORDER):
        if fmt in accepted:
            try:
                from modelport import formats

                if formats.available(fmt):
                    return fmt
            except Exception:  # an unusable runtime falls back to the next format
                continue
    return None


def current_version(registry, uri: ModelURI) -> int:
    """The version ``uri`` names now, in one small query (no artefact or signature reads)."""
    if uri.version is not None:
        return uri.version
    if uri.alias is not None:
        found = registry.aliases(uri.name).get(uri.alias)
        if found is None:
            raise UserError(f"model {uri.name!r} has no alias {uri.alias!r}")
        return int(found)
    from sqlalchemy import func, select

    from modelport.registry import schema as S

    with registry.engine.connect() as conn:
        found = conn.execute(select(func.max(S.versions.c.version))
                             .where(S.versions.c.model == uri.name)).scalar()
    if found is None:
        raise UserError(f"model {uri.name!r} has no versions")
    return int(found)


class Follower:
    """Serves the version a URI names, following alias moves and new versions."""

    def __init__(self, uri: str | ModelURI, registry, *, batching: dict[str, Any],
                 fmt: str | None = None, on_batch=None) -> None:
        self.uri = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))
        self.registry = registry
        self.batching = batching
        self.fmt = fmt
        self.on_batch = on_batch
        self.error: dict[str, Any] | None = None
        self._failed: int | None = None
        self._lock = threading.Lock()
        self.current: Loaded = self._load(self.registry.get(self.uri))

    @property
    def name(self) -> str:
        return self.uri.name

    def _load(self, version) -> Loaded:
        fmt = serving_format(version, self.fmt)
        predictor = self.registry.load(version, format=fmt)
        fmt = predictor.format or fmt or "?"
        _warm_up(predictor)
        labels = (self.uri.name, str(version.version))
        on_batch = (lambda n, rows, secs: self.on_batch(labels, n, rows, secs)) \
            if self.on_batch else None
        batcher = MicroBatcher(predictor.run, on_batch=on_batch, **self.batching)
        return Loaded(self.uri, version.version, fmt, predictor, batcher)

    def poll(self) -> bool:
        """Check the registry once; load and swap in a new version. True if it swapped."""
        if not self._lock.acquire(blocking=False):
            return False  # a load is already under way
        try:
            target = current_version(self.registry, self.uri)
            if target == self.current.version or target == self._failed:
                return False
            old = self.current
            try:
                fresh = self._load(self.registry.get(ModelURI(self.uri.name, target)))
            except Exception as exc:
                self._failed = target
                self.error = {"version": target, "error": f"{type(exc).__name__}: {exc}"[:500],
                              "at": time.time()}
                log.error("could not load %s/%s for %s; still serving version %s: %s",
                          self.uri.name, target, self.uri, old.version, exc)
                return False
            self.current = fresh  # one reference swap: requests in flight keep `old`
            self.error = None
            self._failed = None
            log.info("now serving %s/%s for %s (was %s)", self.uri.name, target, self.uri,
                     old.version)
            return True
        finally:
            self._lock.release()


def _warm_up(predictor) -> None:
    """Score one made-up row so the first real request pays no lazy initialisation."""
    row: dict[str, Any] = {}
    for col in predictor.signature.inputs:
        if col.kind == "numeric":
            row[col.name] = col.min if col.min is not None else 0.0
        else:
            row[col.name] = col.categories[0] if col.categories else None
    predictor.run(row)


@dataclass
class ServedModel:
    """One name on the server: a champion, and optionally a canary and a shadow."""

    name: str
    champion: Follower
    canary: Follower | None = None
    canary_percent: float = 0.0
    shadow: Follower | None = None

    def pick(self) -> tuple[Loaded, str]:
        """The version to answer this request with, and its role (champion or canary)."""
        if self.canary is not None and random.random() * 100 < self.canary_percent:
            return self.canary.current, "canary"
        return self.champion.current, "champion"

    def followers(self) -> list[tuple[str, Follower]]:
        out = [("champion", self.champion)]
        if self.canary is not None:
            out.append(("canary", self.canary))
        if self.shadow is not None:
            out.append(("shadow", self.shadow))
        return out

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for role, f in self.followers():
            out[role] = {**f.current.describe(), "error": f.error}
        if self.canary is not None:
            out["canary"]["percent"] = self.canary_percent
        return out


def parse_rollout(spec: str, option: str) -> tuple[ModelURI, float]:
    """``churn@challenger:10`` -> (URI, 10.0); the percent is optional (for --shadow)."""
    text, percent = spec, 100.0
    if option == "--canary" and ":" not in spec:
        raise UserError(f"--canary {spec!r} needs a percent: NAME@ALIAS:PERCENT, e.g. "
                        "churn@challenger:10")
    if ":" in spec:
        text, _, p = spec.rpartition(":")
        try:
            percent = float(p)
        except ValueError:
            percent = -1
        if not 0 <= percent <= 100:
            raise UserError(f"bad {option} {spec!r}: the part after ':' is a percent "
                            "between 0 and 100 (e.g. churn@challenger:10)")
    return ModelURI.parse(text), percent
