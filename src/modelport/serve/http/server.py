"""Running the app under uvicorn, in one process or several workers.

:func:`run` takes one :class:`~modelport.serve.http.settings.ServeSettings`. uvicorn is
given an :class:`AppFactory` holding them: with one worker it builds the app in this
process; with several, the factory is pickled with uvicorn's ``Config`` into each worker
process (started by uvicorn's own ``Multiprocess`` supervisor on one socket bound here),
which builds its own app from the same settings. uvloop and httptools (from
``uvicorn[standard]``) are used when installed: without them uvicorn leaves Nagle's
algorithm on and every keep-alive response waits ~40 ms. Shutdown is graceful: on SIGTERM
uvicorn stops accepting, lets in-flight requests finish (up to ``drain_seconds``), then the
app stops polling and flushes the prediction log.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelport.serve.http.settings import ServeSettings

if TYPE_CHECKING:
    from uvicorn import Config

    from modelport.serve.http.routing import ASGIApp


@dataclass(frozen=True)
class AppFactory:
    """What uvicorn calls, in the process that serves, for the app the settings describe.

    A module-level class holding only the settings, so it pickles into worker processes.
    """

    settings: ServeSettings

    def __call__(self) -> ASGIApp:
        from modelport.serve.http.app import app_from_settings

        return app_from_settings(self.settings)


def run(settings: ServeSettings) -> None:
    """Serve what ``settings`` say on their host and port, with their number of worker
    processes, until interrupted. Call :meth:`ServeSettings.check` first to fail once on a
    mistake rather than in every worker."""
    from modelport.errors import require

    uvicorn = require("uvicorn", "http", "the web service")
    from uvicorn.config import STARTUP_FAILURE

    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO),
                        format="%(message)s", stream=sys.stderr)
    config = uvicorn.Config(AppFactory(settings), factory=True, host=settings.host,
                            port=settings.port, workers=settings.workers, access_log=False,
                            log_level=settings.log_level,
                            timeout_graceful_shutdown=settings.drain_seconds, lifespan="on")
    own_dir = None
    if config.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # each worker writes its samples here and /metrics adds them up; the folder is
        # the server's own, so it goes when the server does
        own_dir = tempfile.mkdtemp(prefix="modelport-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            _supervise(config)
        else:
            server.run()
    except KeyboardInterrupt:  # as uvicorn.run: Ctrl-C before the signal handlers are set
        pass
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: the app or the socket failed to start


def _supervise(config: Config) -> None:
    """Run ``config.workers`` worker processes on one socket bound here, under uvicorn's
    own ``Multiprocess`` supervisor: what ``uvicorn.run`` does for workers, which it allows
    only for an app given as an import string. Each worker unpickles the config (with the
    :class:`AppFactory` in it) and builds its own server and app; on SIGTERM the supervisor
    passes it on and waits for every worker's graceful shutdown."""
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
