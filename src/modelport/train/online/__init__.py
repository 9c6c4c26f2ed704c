"""Online learning: incremental learners that learn from a stream of labelled events and
publish checkpoints to the registry, which the web service and the stream scorer follow.

::

    from modelport.train.online import learn

    result = learn("churn-online.yaml")          # a file source ends at its end
    result.as_dict()                             # events, events_per_s, prequential, checkpoints

One module per part: :mod:`~.spec` (the YAML spec and its checks, giving the
:mod:`~.config` of a checked spec), :mod:`~.sources` (files, SQL tables,
brokers, with positions), :mod:`~.schema` and :mod:`~.preprocess` (fields and incremental
preprocessing), :mod:`~.learners` (scikit-learn ``partial_fit`` and River), :mod:`~.evaluate`
(prequential scores over a rolling window), :mod:`~.drift`, :mod:`~.checkpoint` (registry
versions, the promotion gate), :mod:`~.rejects` (the events not learnt, with their reasons)
and :mod:`~.loop`, which drives them. The command line is
``modelport learn SPEC.yaml [--json] [--follow]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.registry import Registry
    from modelport.train.online.loop import Result


def learn(spec: str | Path | dict[str, Any], *, follow: bool = False, fresh: bool = False,
          registry: Registry | None = None, metrics_port: int | None = None,
          base: str | Path | None = None) -> Result:
    """Learn from a spec's source until it ends (with ``follow``: until SIGTERM/SIGINT),
    resuming from the model's newest checkpoint unless ``fresh``; return a
    :class:`~modelport.train.online.loop.Result`."""
    import asyncio

    from modelport.train.online.loop import run
    from modelport.train.online.spec import load_spec

    checked = load_spec(spec, base=base)
    return asyncio.run(run(checked, follow=follow, fresh=fresh, registry=registry,
                           metrics_port=metrics_port))


__all__ = ["learn"]
