"""The scoring core: what every surface does between reading rows and routing results.

Batch jobs (local and Spark), the web service, stream workers, trigger workers, the online
learner and in-app models all score through these modules, one per concept, and none of
them re-implements one:

- :mod:`~modelport.scoring.choice`: which accepted artefact serves a version (lowest
  one-row latency for row-at-a-time surfaces, best throughput for batch, ``--format``
  forces one);
- :mod:`~modelport.scoring.checks`: the row checker and the input policy. A missing or
  unknown field or a value of the wrong type rejects its row; a number outside the
  training range or an unseen category is scored and flagged, or refused when strict;
- :mod:`~modelport.scoring.isolation`: a batch that fails because of some rows (checks,
  enrichment, the model, the lookup store, the prediction log) is split until they are
  found; each goes to the surface's reject channel with its reason, and the others are
  scored as if alone. A failure not tied to rows is raised for the surface to retry;
- :mod:`~modelport.scoring.following`: one watcher follows an alias or a bare name to new
  versions, loads them in the background and swaps atomically, keeping the old version
  when a new one fails;
- :mod:`~modelport.scoring.metrics`: the Prometheus names every surface shares.

A surface reads its input, hands rows to :func:`~modelport.scoring.checks.check` and
:func:`~modelport.scoring.isolation.score`, and routes the
:class:`~modelport.scoring.isolation.Outcome`: scores to its output, rejects to its reject
channel (a rejects file, a dead-letter destination, a status column, a 4xx), flags next to
the scores and into the metrics.
"""

from modelport.scoring.checks import Checked, Flag, InputPolicy, Reject, check
from modelport.scoring.isolation import Outcome, isolate, score

__all__ = ["Checked", "Flag", "InputPolicy", "Outcome", "Reject", "check", "isolate", "score"]
