"""Following a model URI: one watcher that swaps in new versions live, for every surface.

A :class:`Follower` holds what a surface scores with for one URI (``churn``,
``churn@production``, ``churn/3``). Every ``poll_seconds`` it asks the registry one cheap
question (:meth:`~modelport.registry.Registry.resolve`: which version does the URI name
now?). When the answer changes, it loads the new version in a background thread with the
surface's own ``load`` (which picks the artefact, warms it up, builds a batcher...), and
only then swaps the reference in one assignment: work in flight keeps the object it
started with, and nothing ever sees a half-loaded version. A load that fails leaves the
old version serving, is logged, counted (``modelport_reloads_total{outcome="failed"}``)
and shown in :meth:`Follower.status` until a later version loads; the failed version is
not tried again until the URI moves.

Each poll also tells the registry that this process is alive and which version it serves
(a :class:`Heartbeat`, at most one write every ``MODELPORT_HEARTBEAT_SECONDS``, 10 by
default, 0 to turn it off), with the rows per second, rejects and warnings by reason this
process counted: ``modelport ui`` lists those processes. A registry write that fails is
logged and never stops the surface.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelport.uri import ModelURI

if TYPE_CHECKING:
    from modelport.registry import Registry, Version

log = logging.getLogger("modelport.follow")
T = TypeVar("T")
HEARTBEAT_ENV = "MODELPORT_HEARTBEAT_SECONDS"
#: the command words that name each surface, as ``modelport ui`` shows them
_SURFACES = {"serve": "serve", "stream": "stream", "trigger": "trigger run", "learn": "learn"}


#: registries this process wrote heartbeats to: its rows there go when it exits cleanly
_BEATING: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


@atexit.register
def _forget_all() -> None:
    from modelport.registry import heartbeats

    for registry in list(_BEATING.values()):
        try:
            heartbeats.forget(registry)
        except Exception:  # noqa: BLE001 - the row then shows as not seen, which is true
            pass


def heartbeat_seconds() -> float:
    """Seconds between two heartbeats of one process (``MODELPORT_HEARTBEAT_SECONDS``);
    0 turns them off; a value that is no number counts as the default, 10."""
    try:
        return max(float(os.environ.get(HEARTBEAT_ENV, "10")), 0.0)
    except ValueError:
        return 10.0


def surface_name() -> str:
    """The surface this process runs: the ``modelport`` command it was started as (``serve``,
    ``stream``, ``trigger run``, ``learn``), else the counting surface's label."""
    argv = sys.argv
    if argv and os.path.basename(argv[0]) in ("modelport", "__main__.py") and len(argv) > 1 \
            and argv[1] in _SURFACES:
        return _SURFACES[argv[1]]
    from modelport.scoring import metrics as M

    labels = sorted({m.surface for m in list(M.LIVE)})
    return labels[0] if labels else "python"


class Heartbeat:
    """Tells the registry, at most every ``seconds``, that this process serves ``uri`` with
    a version (:func:`modelport.registry.heartbeats.beat`); never raises.

    :meth:`tick` returns at once and writes in a background thread when a beat is due, so a
    surface's loop never waits on the registry. The figures come from ``stats()`` when
    given, else from this process's Prometheus counters for the model
    (:data:`modelport.scoring.metrics.LIVE`), turned into rates between two beats.
    """

    def __init__(self, registry: Registry, uri: str | ModelURI, *, surface: str | None = None,
                 seconds: float | None = None,
                 stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = registry
        self.uri = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))
        self.surface = surface
        self.seconds = heartbeat_seconds() if seconds is None else seconds
        self.stats = stats
        self.started_at = datetime.now(UTC)
        self.failures = 0
        self._next = 0.0
        self._last: tuple[float, float] | None = None  # (monotonic time, rows scored)
        self._thread: threading.Thread | None = None

    def due(self) -> bool:
        return self.seconds > 0 and time.monotonic() >= self._next

    def tick(self, version: int | None, *, now: bool = False) -> None:
        """Start a :meth:`beat` in a background thread when one is due (or ``now``, after
        a new version loaded) and none runs."""
        if self.seconds <= 0:
            return
        if self._thread is not None and self._thread.is_alive():
            if now:
                self._next = 0.0  # the beat under way may carry the old version: beat again
            return
        if not now and not self.due():
            return
        self._next = time.monotonic() + self.seconds
        self._thread = threading.Thread(target=self.beat, args=(version,), daemon=True,
                                        name=f"modelport-heartbeat-{self.uri.name}")
        self._thread.start()

    def stop(self) -> None:
        """Beat no more and take this process's rows out of the registry (a surface that
        stops cleanly); never raises."""
        self.seconds = 0.0
        self.wait(10)
        try:
            from modelport.registry import heartbeats

            heartbeats.forget(self.registry)
        except Exception as exc:  # noqa: BLE001 - the row then shows as not seen
            log.warning("could not remove the heartbeat of %s: %s", self.uri, exc)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a beat under way to end (tests, and surfaces that stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def beat(self, version: int | None) -> bool:
        """Write one heartbeat now (blocking); False, logged, when the registry refused."""
        if self.seconds <= 0:
            return False
        self._next = time.monotonic() + self.seconds
        try:
            from modelport.registry import heartbeats

            figures = dict(self.stats()) if self.stats is not None else self._counted()
            figures.setdefault("rows_per_s", self._rate(figures.get("scored")))
            heartbeats.beat(self.registry, surface=self.surface or surface_name(),
                            uri=str(self.uri), model=self.uri.name, version=version,
                            started_at=self.started_at, stats=figures)
            self.failures = 0
            try:
                _BEATING.setdefault(id(self.registry), self.registry)
            except TypeError:  # a registry that cannot be weakly referenced
                pass
            return True
        except Exception as exc:  # noqa: BLE001 - a heartbeat never stops the surface
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("could not write the heartbeat of %s to the registry (%s); "
                            "serving goes on", self.uri, exc)
            return False

    def _counted(self) -> dict[str, Any]:
        from modelport.scoring import metrics as M

        scored = 0.0
        rejected: dict[str, float] = {}
        warnings: dict[str, float] = {}
        name = self.uri.name
        for m in list(M.LIVE):
            for family in m.registry.collect():
                for sample in family.samples:
                    if sample.labels.get("model") != name or not sample.name.endswith("_total"):
                        continue
                    if family.name == "modelport_scored_rows":
                        scored += sample.value
                    elif family.name == "modelport_rejected_rows":
                        why = sample.labels.get("reason", "?")
                        rejected[why] = rejected.get(why, 0) + sample.value
                    elif family.name == "modelport_warnings":
                        why = f"{sample.labels.get('field')}: {sample.labels.get('kind')}"
                        warnings[why] = warnings.get(why, 0) + sample.value
        return {"scored": int(scored),
                "rejected": {k: int(v) for k, v in sorted(rejected.items())},
                "warnings": {k: int(v) for k, v in sorted(warnings.items())}}

    def _rate(self, scored: float | None) -> float | None:
        """Rows per second since the previous beat, from the running total ``scored``."""
        if scored is None:
            return None
        now, rate = time.monotonic(), None
        if self._last is not None and now > self._last[0]:
            rate = round(max(float(scored) - self._last[1], 0.0) / (now - self._last[0]), 3)
        self._last = (now, float(scored))
        return rate


class Follower(Generic[T]):
    """The loaded version a URI names now; :meth:`tick` (non-blocking) or :meth:`poll`
    (blocking) follow it to new versions.

    ``load(version)`` turns a registry :class:`~modelport.registry.Version` into what the
    surface scores with. ``on_reload(follower, outcome)`` is told ``loaded`` or ``failed``
    after each attempt (metrics). The first load happens in the constructor, so a surface
    that cannot load its model fails at start with the reason.
    """

    def __init__(self, uri: str | ModelURI, registry: Registry, load: Callable[[Version], T], *,
                 poll_seconds: float = 2.0,
                 on_reload: Callable[[Follower, str], None] | None = None,
                 heartbeat: Heartbeat | None = None) -> None:
        self.uri = uri if isinstance(uri, ModelURI) else ModelURI.parse(str(uri))
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.on_reload = on_reload
        self._load = load
        version = registry.get(self.uri)
        self.current: T = load(version)
        self.version: int = version.version
        self.loaded_at = time.time()
        self.error: dict[str, Any] | None = None
        self.reloads = 0
        self._failed: int | None = None
        self._lock = threading.Lock()
        self._next = time.monotonic() + poll_seconds
        self._thread: threading.Thread | None = None
        self.heartbeat = heartbeat or Heartbeat(registry, self.uri)
        self.heartbeat.tick(self.version)

    @property
    def name(self) -> str:
        return self.uri.name

    def poll(self) -> bool:
        """Ask the registry once; load and swap in a new version. True if it swapped.
        Blocking: run it in a thread (or use :meth:`tick`)."""
        if not self._lock.acquire(blocking=False):
            return False  # a load is already under way
        self.heartbeat.tick(self.version)
        try:
            try:
                target = self.registry.resolve(self.uri)
            except Exception as exc:  # noqa: BLE001 - the registry may be briefly away
                log.warning("cannot ask the registry which version %s names (%s); still "
                            "on version %s", self.uri, exc, self.version)
                return False
            if target == self.version or target == self._failed:
                return False
            old = self.version
            try:
                fresh = self._load(self.registry.get(ModelURI(self.uri.name, target)))
            except Exception as exc:  # noqa: BLE001 - the old version keeps serving
                self._failed = target
                self.error = {"version": target, "error": f"{type(exc).__name__}: {exc}"[:500],
                              "at": time.time()}
                log.error("could not load %s/%s for %s; still serving version %s: %s",
                          self.uri.name, target, self.uri, old, exc)
                self._told("failed")
                return False
            self.current, self.version = fresh, target  # requests in flight keep the old one
            self.loaded_at = time.time()
            self.error = None
            self._failed = None
            self.reloads += 1
            log.info("now serving %s/%s for %s (was %s)", self.uri.name, target, self.uri, old)
            self._told("loaded")
            self.heartbeat.tick(target, now=True)
            return True
        finally:
            self._lock.release()

    def tick(self) -> None:
        """Start a :meth:`poll` in a background thread when one is due and none is running;
        returns at once. Surfaces with a loop of their own call it between batches."""
        if self.poll_seconds <= 0 or self.uri.version is not None:
            self.heartbeat.tick(self.version)  # a pinned version still says it is alive
            return
        now = time.monotonic()
        if now < self._next or (self._thread is not None and self._thread.is_alive()):
            return
        self._next = now + self.poll_seconds
        self._thread = threading.Thread(target=self.poll, name=f"modelport-follow-{self.name}",
                                        daemon=True)
        self._thread.start()

    def poll_due(self) -> bool:
        """:meth:`poll` now, on the caller's thread, when ``poll_seconds`` have passed since
        the last one (always, with ``poll_seconds`` 0): for surfaces that switch versions at
        a boundary of their own (a micro-batch), not in the background. True if it
        swapped."""
        now = time.monotonic()
        if self.poll_seconds > 0 and now < self._next:
            self.heartbeat.tick(self.version)
            return False
        self._next = now + self.poll_seconds
        return self.poll()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background poll to end (tests, and surfaces that stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """For health routes: the URI, the version served, when it loaded, the last error."""
        return {"uri": str(self.uri), "version": self.version, "loaded_at": self.loaded_at,
                "reloads": self.reloads, "error": self.error}

    def _told(self, outcome: str) -> None:
        if self.on_reload is not None:
            try:
                self.on_reload(self, outcome)
            except Exception as exc:  # noqa: BLE001 - metrics never stop a reload
                log.warning("reload hook failed: %s", exc)
