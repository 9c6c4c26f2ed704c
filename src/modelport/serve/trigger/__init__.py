"""Database-trigger serving: rows scored automatically when they are inserted or updated.

Two modes, on PostgreSQL, MariaDB/MySQL and SQLite:

- **worker** (:func:`install` with ``mode="worker"``, then :func:`run`, or
  :func:`run_settings` with one :class:`WorkerSettings`): a trigger puts the key of each
  new or changed row in a queue table (and NOTIFYs on PostgreSQL); a worker process claims
  batches, scores them through the scoring core (one model call for a clean batch; a bad
  row gets an error status alone) and writes the scores back in the transaction that
  deletes the queue entries. Any model any format loads works.
- **sql** (``mode="sql"``): the model compiled to one SQL expression, proven in the target
  database against the native model, installed as a function plus a trigger, so the
  database scores each row itself with no process outside it.

:func:`attach` scores an application's own SQLite inserts in-process; :func:`status` and
:func:`uninstall` inspect and remove installations.
"""

from __future__ import annotations

from modelport.serve.trigger.attach import attach
from modelport.serve.trigger.install import install, status, uninstall
from modelport.serve.trigger.settings import WorkerSettings
from modelport.serve.trigger.worker import WorkerStats, run, run_settings

__all__ = ["WorkerSettings", "WorkerStats", "attach", "install", "run", "run_settings",
           "status", "uninstall"]
