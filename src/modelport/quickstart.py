"""The main job on embedded defaults: churn data to a production model to scores.

Generates a churn table, writes a training spec beside it, trains and registers the model
(SQLite registry and local artefacts in ``MODELPORT_HOME``), points ``churn@production`` at
it, scores a few customers through the alias and says where everything is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SPEC = """\
name: churn
task: classification
data:
  source: customers.parquet
  target: churned
  id: customer_id
model:
  estimator: sklearn.ensemble.HistGradientBoostingClassifier
  params: {max_iter: 200, learning_rate: 0.1, random_state: 0}
  preprocess: auto
validation: {test_size: 0.2, seed: 42}
metrics: [roc_auc, accuracy, log_loss]
"""


def run(rows: int = 20000, folder: Path = Path("modelport-quickstart"),
        echo: Callable[[str], None] = print) -> None:
    """Run the quickstart, printing each step with ``echo``."""
    import modelport
    from modelport.config import Settings
    from modelport.datasets import churn
    from modelport.errors import UserError
    from modelport.train.oneoff import train

    if rows < 200:
        raise UserError(f"--rows {rows} is too few to train on: use at least 200")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / "customers.parquet"
    data = churn.generate(rows, seed=42)
    data.to_parquet(data_path, index=False)
    spec_path = folder / "churn.yaml"
    spec_path.write_text(SPEC)
    echo(f"1. generated {rows:,} customers -> {data_path}")

    result = train(spec_path, alias="production")
    echo("2. trained and registered:")
    echo("   " + result.report.replace("\n", "\n   "))

    predictor = modelport.load("churn@production")
    customers = data.drop(columns=["churned"]).head(5)
    scores = predictor.predict_proba(customers)
    assert predictor.classes is not None  # predict_proba needs classes
    proba = scores[:, list(predictor.classes).index(1)]
    echo(f"3. scored 5 customers with churn@production ({predictor.describe()}):")
    for cid, p in zip(customers["customer_id"], proba, strict=True):
        echo(f"   customer {cid}: churn probability {p:.3f}")

    settings = Settings.from_env()
    echo("4. where everything is:")
    echo(f"   registry   {settings.registry_url}")
    echo(f"   artefacts  {settings.artefacts}")
    echo(f"   data, spec {folder.resolve()}")
    echo("   next: modelport models show churn@production")
    echo("         modelport ui   (the console in a browser: http://127.0.0.1:8090/)")
    echo("         modelport serve churn@production --ui")
