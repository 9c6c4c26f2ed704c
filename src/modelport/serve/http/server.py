"""Running the app under uvicorn, in one process or several workers.

Workers are separate processes, each building its own app from the options passed in the
``MODELPORT_SERVE_OPTIONS`` environment variable (JSON). uvloop and httptools (from
``uvicorn[standard]``) are used when installed: without them uvicorn leaves Nagle's
algorithm on and every keep-alive response waits ~40 ms. Shutdown is graceful: on SIGTERM
uvicorn stops accepting, lets in-flight requests finish (up to ``drain_seconds``), then the
app stops polling and flushes the prediction log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

ENV = "MODELPORT_SERVE_OPTIONS"


def app_from_env():
    """The app a worker serves, built from ``MODELPORT_SERVE_OPTIONS``."""
    from modelport.serve.http.app import create_app

    options = json.loads(os.environ[ENV])
    uris = options.pop("uris")
    ui = options.pop("ui", False)
    app = create_app(uris, **options)
    if ui:  # modelport serve --ui: the console under /ui, behind the same token as the API
        import modelport.ui as console

        token_file = options.get("token_file")
        app = console.mount(app, console.create_app(
            token_file=token_file, log_url=options.get("log_url"), base="/ui",
            private=bool(token_file)))
    return app


def run(uris: list[str], *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
        drain_seconds: float = 30.0, log_level: str = "info", **options: Any) -> None:
    """Serve ``uris`` on ``host:port`` with ``workers`` processes until interrupted."""
    from modelport.errors import require

    uvicorn = require("uvicorn", "http", "the web service")
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(message)s", stream=sys.stderr)
    os.environ[ENV] = json.dumps({"uris": list(uris), **options})
    own_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker writes its samples here and /metrics adds them up; the folder is
        # the server's own, so it goes when the server does
        own_dir = tempfile.mkdtemp(prefix="modelport-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        uvicorn.run("modelport.serve.http.server:app_from_env", factory=True, host=host,
                    port=port, workers=workers, access_log=False, log_level=log_level,
                    timeout_graceful_shutdown=drain_seconds, lifespan="on")
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
