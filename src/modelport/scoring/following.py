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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from modelport.uri import ModelURI

log = logging.getLogger("modelport.follow")
T = TypeVar("T")


class Follower(Generic[T]):
    """The loaded version a URI names now; :meth:`tick` (non-blocking) or :meth:`poll`
    (blocking) follow it to new versions.

    ``load(version)`` turns a registry :class:`~modelport.registry.Version` into what the
    surface scores with. ``on_reload(follower, outcome)`` is told ``loaded`` or ``failed``
    after each attempt (metrics). The first load happens in the constructor, so a surface
    that cannot load its model fails at start with the reason.
    """

    def __init__(self, uri: str | ModelURI, registry, load: Callable[[Any], T], *,
                 poll_seconds: float = 2.0,
                 on_reload: Callable[[Follower, str], None] | None = None) -> None:
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

    @property
    def name(self) -> str:
        return self.uri.name

    def poll(self) -> bool:
        """Ask the registry once; load and swap in a new version. True if it swapped.
        Blocking: run it in a thread (or use :meth:`tick`)."""
        if not self._lock.acquire(blocking=False):
            return False  # a load is already under way
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
            return True
        finally:
            self._lock.release()

    def tick(self) -> None:
        """Start a :meth:`poll` in a background thread when one is due and none is running;
        returns at once. Surfaces with a loop of their own call it between batches."""
        if self.poll_seconds <= 0 or self.uri.version is not None:
            return
        now = time.monotonic()
        if now < self._next or (self._thread is not None and self._thread.is_alive()):
            return
        self._next = now + self.poll_seconds
        self._thread = threading.Thread(target=self.poll, name=f"modelport-follow-{self.name}",
                                        daemon=True)
        self._thread.start()

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
