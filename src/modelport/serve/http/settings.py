"""Everything ``modelport serve`` is told, in one object.

The command builds one :class:`ServeSettings` from its options and hands it whole to
:func:`modelport.serve.http.server.run`, which gives it to every worker process (it is
picklable: plain values only) to build the app with
:func:`modelport.serve.http.app.app_from_settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.registry import Registry


@dataclass(frozen=True)
class ServeSettings:
    """The models to serve, where and how.

    ``uris`` name the models (``churn``, ``churn/3``, ``churn@production``). ``host``,
    ``port``, ``workers``, ``drain_seconds`` (how long in-flight requests may finish after
    SIGTERM) and ``log_level`` are the server's; ``ui`` also serves the operations console
    under ``/ui``; the rest are :func:`modelport.serve.http.app.create_app`'s options of
    the same names. Lists may be given for ``uris``, ``canary`` and ``shadow``; they are
    kept as tuples.
    """

    uris: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    drain_seconds: float = 30.0
    log_level: str = "info"
    ui: bool = False
    max_batch_size: int = 64
    max_latency_ms: float = 0.0
    token_file: str | None = None
    canary: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()
    poll_seconds: float = 2.0
    max_body_bytes: int = 10 * 2**20
    body_timeout_s: float = 30.0
    strict: bool = False
    unseen_categories: str | None = None
    out_of_range: str | None = None
    format: str | None = None
    #: a ``module:function`` name, imported by each worker (a function does not cross
    #: into a worker process)
    prediction_log: str | None = None
    lookup_store: str | None = None
    feature_table: str | None = None
    access_log: bool = True
    log_url: str | None = None
    log_sample: float = 1.0

    def __post_init__(self) -> None:
        for name in ("uris", "canary", "shadow"):
            value = getattr(self, name)
            if isinstance(value, str):  # one URI, not its characters
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if self.token_file is not None:
            object.__setattr__(self, "token_file", str(self.token_file))

    def app_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~modelport.serve.http.app.create_app` these
        settings give (everything but the URIs and the server's own settings)."""
        return {
            "max_batch_size": self.max_batch_size, "max_latency_ms": self.max_latency_ms,
            "token_file": self.token_file, "canary": list(self.canary),
            "shadow": list(self.shadow), "poll_seconds": self.poll_seconds,
            "max_body_bytes": self.max_body_bytes, "body_timeout_s": self.body_timeout_s,
            "strict": self.strict, "unseen_categories": self.unseen_categories,
            "out_of_range": self.out_of_range, "format": self.format,
            "prediction_log": self.prediction_log, "lookup_store": self.lookup_store,
            "feature_table": self.feature_table, "access_log": self.access_log,
            "log_url": self.log_url, "log_sample": self.log_sample,
        }

    def check(self, registry: Registry | None = None) -> None:
        """Fail now, once, on what every worker would fail on: a body timeout that is not
        above 0, a model (canary and shadow included) the registry does not have, an
        unreadable token file, a misspelt input policy, a bad prediction log URL or
        sample. Raises :class:`~modelport.errors.UserError` naming the option."""
        from modelport.errors import UserError

        if not self.body_timeout_s > 0:
            raise UserError("--body-timeout must be a number of seconds above 0, not "
                            f"{self.body_timeout_s:g}")
        if registry is None:
            from modelport.registry import Registry

            registry = Registry()
        for uri in [*self.uris, *(c.rpartition(":")[0] or c for c in self.canary),
                    *self.shadow]:
            registry.get(uri)
        if self.token_file is not None:
            from modelport.serve.http.auth import read_token

            read_token(self.token_file)
        from modelport.scoring.checks import InputPolicy

        InputPolicy.of(self.strict, self.unseen_categories, self.out_of_range)
        if self.log_url:
            from modelport.monitor.log import check_options

            check_options(self.log_url, self.log_sample)
