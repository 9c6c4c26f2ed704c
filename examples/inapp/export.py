"""Train the two churn models the in-app examples run, register them, export their bundles.

    python examples/inapp/export.py                 # 20,000 customers
    python examples/inapp/export.py --rows 2000     # a quick run

Generates churn customers, trains a logistic-regression pipeline (``churn/1``) and a
gradient-boosting pipeline (``churn/2``) from specs, registers each with its native, compiled
and ONNX artefacts, and writes their in-app bundles to ``bundles/logistic`` and
``bundles/hgb`` beside this file (``modelport export churn/N --format bundle``). The
registry is the one ``MODELPORT_HOME`` names (default ``./.modelport``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

# before any OpenMP library loads: spinning threads stall tree models on small machines
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent

#: bundle folder -> the estimator its spec trains
MODELS = {
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}),
    "hgb": ("sklearn.ensemble.HistGradientBoostingClassifier",
            {"max_iter": 100, "learning_rate": 0.1, "random_state": 0}),
}


def spec(estimator: str, params: dict, source: Path) -> dict:
    """The training spec of one churn model (see docs/training.md)."""
    return {
        "name": "churn",
        "task": "classification",
        "data": {"source": str(source), "target": "churned", "id": "customer_id"},
        "model": {"estimator": estimator, "params": params, "preprocess": "auto"},
        "validation": {"test_size": 0.2, "seed": 42},
        "metrics": ["roc_auc", "accuracy"],
        "formats": ["joblib", "compiled", "onnx"],
    }


def main(argv: list[str] | None = None, echo=print) -> dict[str, Path]:
    """Train, register and export both models; return ``{bundle name: folder}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="customers to generate")
    parser.add_argument("--out", type=Path, default=HERE / "bundles",
                        help="folder to write the bundles into")
    args = parser.parse_args(argv)

    from modelport.compile import export
    from modelport.datasets import churn
    from modelport.train.oneoff import train

    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "customers.parquet"
    churn.generate(args.rows, seed=7).to_parquet(source, index=False)
    bundles = {}
    for name, (estimator, params) in MODELS.items():
        result = train(spec(estimator, params, source))
        version = result.version
        bundles[name] = args.out / name
        export(version.uri, "bundle", bundles[name])
        echo(f"{version.uri} ({estimator.rsplit('.', 1)[-1]}, ROC AUC "
             f"{result.metrics['roc_auc']:.3f}) -> {bundles[name]}")
    new = churn.generate(5, seed=8).drop(columns=["customer_id", "churned"])
    write_customers(new.to_dict("records"), args.out / "customers")
    echo(f"5 customers to score -> {args.out / 'customers.jsonl'}, .tsv")
    return bundles


def write_customers(rows: list[dict], stem: Path) -> None:
    """Write rows as ``stem.jsonl`` (one JSON object a line, null for missing) and
    ``stem.tsv`` (a header of field names; an empty field is a missing value), the two
    inputs the examples read."""
    def plain(v):
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("<NA>", "nan"):
            return None
        return v.item() if hasattr(v, "item") else v

    rows = [{k: plain(v) for k, v in r.items()} for r in rows]
    with open(f"{stem}.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    names = list(rows[0]) if rows else []
    with open(f"{stem}.tsv", "w", encoding="utf-8") as fh:
        fh.write("\t".join(names) + "\n")
        for r in rows:
            fh.write("\t".join("" if r[n] is None else repr(r[n]) if isinstance(r[n], float)
                               else str(r[n]) for n in names) + "\n")


if __name__ == "__main__":
    main()
