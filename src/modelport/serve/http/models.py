"""The models a server holds: each follows a registry URI and swaps in new versions live.

Following is the scoring core's (:class:`~modelport.scoring.following.Follower`): this
module says what one loaded version is for the web service, a :class:`Loaded` (the
predictor of the artefact the scoring core chose, warmed up, and its micro-batcher), and
what one name on the server answers with, a :class:`ServedModel`: a champion, an optional
canary taking a weighted share of requests, and an optional shadow that sees a copy of
every request and whose answers are only logged. A request holds the :class:`Loaded` it
started with, so in-flight requests finish on the old version.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelport.errors import UserError
from modelport.scoring import choice, reasons
from modelport.scoring.following import Follower
from modelport.serve.http.batching import MicroBatcher
from modelport.uri import ModelURI

if TYPE_CHECKING:
    from modelport.registry import Registry, Version
    from modelport.signature import Signature


@dataclass
class Loaded(reasons.Explains):
    """One version ready to score: its predictor and its batcher."""

    uri: ModelURI
    version: int
    format: str
    predictor: Any
    batcher: MicroBatcher
    why: str = ""
    loaded_at: float = field(default_factory=time.time)
    #: gives the predictor that explains this version (:func:`modelport.scoring.reasons.
    #: explaining`): the serving one, or the version's compiled or native artefact
    find_explainer: Any = None
    _explainer: Any = None

    @property
    def signature(self) -> Signature:
        return self.predictor.signature

    def describe(self) -> dict[str, Any]:
        return {"uri": str(self.uri), "version": self.version, "format": self.format,
                "loaded_at": self.loaded_at}


def follow(uri: str | ModelURI, registry: Registry, *, batching: dict[str, Any],
           fmt: str | None = None,
           on_batch: Callable[[tuple[str, str], int, int, float], None] | None = None,
           poll_seconds: float = 2.0,
           on_reload: Callable[[Follower, str], None] | None = None) -> Follower[Loaded]:
    """A follower of ``uri`` whose versions load as :class:`Loaded`."""
    muri = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))

    def load(version: Version) -> Loaded:
        predictor, chosen = choice.load(registry, version, "row", fmt)
        labels = (muri.name, str(version.version))
        report = (lambda n, rows, secs: on_batch(labels, n, rows, secs)) if on_batch else None
        batcher = MicroBatcher(predictor.run_checked, empty=predictor.empty_outputs, on_batch=report,
                               **batching)
        return Loaded(muri, version.version, chosen.format, predictor, batcher, chosen.why,
                      find_explainer=functools.partial(reasons.explaining, predictor,
                                                       registry, version))

    return Follower(muri, registry, load, poll_seconds=poll_seconds, on_reload=on_reload)


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
