"""Training: models fitted from a spec and registered, once, on a schedule or online.

- :mod:`~modelport.train.spec`: the YAML training spec and its checks (:func:`load_spec`);
- :mod:`~modelport.train.imports`: the modules a spec may name classes from, and the one
  checked import every spec goes through;
- :mod:`~modelport.train.oneoff`: ``train("churn.yaml")`` reads the data the spec names,
  splits, fits, measures and registers the model (``modelport train``);
- :mod:`~modelport.train.preprocess`: the automatic preprocessing (``preprocess: auto``);
- :mod:`~modelport.train.metrics`: how a fitted model is measured on held-out rows
  (:func:`evaluate`), one definition for training, the retraining gate and AutoML;
- :mod:`~modelport.train.retrain`: the same spec on fresh data, promoted only when the
  challenger beats the champion (``modelport retrain``);
- :mod:`~modelport.train.automl`: FLAML, Optuna and TPOT behind one contract;
- :mod:`~modelport.train.schedule`: the embedded scheduler (``modelport schedule``,
  ``modelport scheduler run``), its state in the registry;
- :mod:`~modelport.train.airflow`: an Airflow DAG that runs ``modelport retrain``
  (``modelport airflow-dag``);
- :mod:`~modelport.train.online`: incremental learners that learn from a stream and
  publish checkpoints (``modelport learn``).
"""

from modelport.train.metrics import evaluate
from modelport.train.oneoff import TrainResult, train
from modelport.train.spec import Spec, load_spec

__all__ = ["Spec", "TrainResult", "evaluate", "load_spec", "train"]
