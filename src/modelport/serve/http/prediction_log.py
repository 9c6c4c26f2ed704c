"""The prediction-log hook: every scored request handed to a callable, off the request path.

``create_app(prediction_log=fn)`` (or ``modelport serve --prediction-log module:function``)
calls ``fn(model=..., version=..., role=..., inputs=..., outputs=..., request_id=...,
latency_ms=...)`` for each answered request, from one background thread fed by a bounded
queue. The request never waits for it: when the hook falls behind, records are dropped and
counted (``modelport_prediction_log_dropped``), and an exception in the hook is logged and
forgotten. Off by default.
"""

from __future__ import annotations

import importlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from modelport.errors import UserError

log = logging.getLogger("modelport.serve")


class PredictionLog:
    """A bounded queue and the thread that drains it into ``hook``."""

    def __init__(self, hook: Callable[..., Any], capacity: int = 10_000,
                 on_drop: Callable[[], None] | None = None) -> None:
        self.hook = hook
        self._queue: queue.Queue = queue.Queue(capacity)
        self._on_drop = on_drop
        self._thread = threading.Thread(target=self._drain, name="modelport-prediction-log",
                                        daemon=True)
        self._thread.start()

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record; never blocks."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            if self._on_drop is not None:
                self._on_drop()

    def _drain(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self.hook(**record)
            except Exception:
                log.exception("the prediction-log hook failed on request %s",
                              record.get("request_id"))

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def resolve_hook(spec: str) -> Callable[..., Any]:
    """``package.module:function`` -> the function."""
    module, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"cannot import prediction-log hook {spec!r} ({exc}); give it as "
                        "package.module:function") from None
    if not callable(fn):
        raise UserError(f"prediction-log hook {spec!r} is not callable")
    return fn
