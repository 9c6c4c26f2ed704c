"""The web service: many models on one port over the Open Inference Protocol (v2), MLflow's
scoring protocol, KServe v1 and plain JSON, with micro-batching, hot reload, canary and
shadow rollouts, metrics and auth. Build the ASGI app with :func:`create_app`; run it with
``modelport serve``. Needs ``pip install 'modelport[http]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.serve.http.access_log import AccessLog
    from modelport.serve.http.auth import BearerAuth


def create_app(uris: list[str] | str, **options: Any) -> AccessLog | BearerAuth:
    """The ASGI app; see :func:`modelport.serve.http.app.create_app`."""
    from modelport.serve.http.app import create_app as _create_app

    return _create_app(uris, **options)


__all__ = ["create_app"]
