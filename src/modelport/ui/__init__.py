"""The operations console (``modelport ui``): models, versions, alias moves, live serving
processes, monitoring and schedules, as server-rendered pages.

- :mod:`~modelport.ui.app`: the ASGI app (:func:`create_app`) and :func:`mount`, which puts
  it under ``/ui`` of ``modelport serve --ui``;
- :mod:`~modelport.ui.pages`: what each page shows, read from the registry, the prediction
  log and the heartbeats (:mod:`modelport.registry.heartbeats`);
- :mod:`~modelport.ui.templates`: the pages as autoescaped Jinja2 templates;
- :mod:`~modelport.ui.security`: the token, sessions and CSRF tokens that guard writes.

See ``docs/ui.md``.
"""

from modelport.ui.app import Console, create_app, mount

__all__ = ["Console", "create_app", "mount"]
