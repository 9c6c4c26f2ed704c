"""Training: one-off runs from a spec file (:mod:`modelport.train.oneoff`).

``train("churn.yaml")`` reads the data the spec names, fits, measures on a held-out split
(:mod:`modelport.train.metrics`) and registers the model; see :mod:`modelport.train.spec`
for the spec's keys.
"""

from modelport.train.metrics import evaluate
from modelport.train.oneoff import TrainResult, train
from modelport.train.spec import Spec, load_spec

__all__ = ["Spec", "TrainResult", "evaluate", "load_spec", "train"]
