"""From data to ``churn@production`` with the Python API, as one would in a notebook.

Run it as a script (``python notebook.py``, ``--rows 2000`` for a quick run) or cell by
cell (``# %%`` cells work in VS Code, PyCharm and Jupytext). The registry lives in
``MODELPORT_HOME`` (default ``./.modelport``).
"""

# %% Setup
import argparse
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--rows", type=int, default=20_000, help="customers to generate")
args, _ = parser.parse_known_args(sys.argv[1:])

# %% Data: customers with a few months of history, and who left
from modelport.datasets import churn  # noqa: E402

customers = churn.generate(args.rows, seed=0)
print(f"{len(customers):,} customers, churn rate {customers['churned'].mean():.1%}")
print(customers.head())

# %% Train a model the usual scikit-learn way
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

numeric = ["tenure_months", "monthly_charges", "total_charges", "support_calls",
           "data_usage_gb", "age"]
categorical = ["plan", "contract", "payment_method", "region"]
X = customers[numeric + categorical]
y = customers["churned"]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42,
                                                    stratify=y)

model = Pipeline([
    ("preprocess", ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")),
                              ("scale", StandardScaler())]), numeric),
        ("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]), categorical),
    ])),
    ("model", HistGradientBoostingClassifier(max_iter=100, random_state=0)),
])
model.fit(X_train, y_train)
auc = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
print(f"test ROC AUC {auc:.3f}")

# %% Register it with its whole training set: the signature's ranges and vocabularies and the
# monitoring reference come from every row; every format is converted and checked against
# the model on a sub-sample of 1,000 rows, which is stored with the version
import modelport  # noqa: E402

version = modelport.log_model(model, "churn", sample=X_train,
                              metrics={"roc_auc": round(auc, 4)},
                              description="churn, trained in the notebook example")
print(f"registered {version.uri}: formats {', '.join(version.accepted_formats())}")
for art in version.artefacts:
    if art.status != "accepted":
        print(f"  {art.format} {art.status}: {art.reason}")

# %% Put it in production: move the alias (the move is kept in the alias history)
modelport.set_alias("churn", version.version, "production", reason="first model")

# %% Score customers with whatever production points at
predictor = modelport.load("churn@production")
scores = predictor.predict_proba(X_test.head(5))[:, 1]
print(f"churn@production is {predictor.describe()}")
for customer, score in zip(customers.loc[X_test.index[:5], "customer_id"], scores,
                           strict=True):
    print(f"  customer {customer}: churn probability {score:.3f}")

# %% The call centre: score every customer nightly into a lookup table with the three
# largest reasons, then look one up when they call
from modelport.serve.batch import predict  # noqa: E402

nightly = customers.drop(columns=["churned"])
nightly.to_parquet("customers-tonight.parquet")
predict("churn@production", "customers-tonight.parquet", "sqlite:///scores.db#churn_scores",
        id="customer_id", workers=1, explain=3)
caller = int(nightly["customer_id"].iloc[0])
row = modelport.lookup("churn", caller, store="sqlite:///scores.db#churn_scores")
reasons = ", ".join(f"{row[f'reason_{k}']} ({row[f'contribution_{k}']:+.2f})"
                    for k in (1, 2, 3))
print(f"customer {caller} calls: churn probability {row['score']:.3f}; "
      f"reasons (log-odds): {reasons}")

# %% Where things are
registry = modelport.Registry()
print(f"registry: {registry}")
print(f"versions of churn: {[v.version for v in registry.versions('churn')]}; "
      f"aliases: {registry.aliases('churn')}")
