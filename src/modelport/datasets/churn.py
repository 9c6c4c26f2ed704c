"""A synthetic customer-churn table: the data modelport's examples and tests run on.

Each row is a telecom customer: how long they have stayed, what they pay, which plan and
contract they hold, how often they called support, and whether they left (``churned``).
Churn follows a non-linear rule with interactions (new customers on month-to-month
contracts who call support a lot leave; long two-year customers stay; customers who pay a
lot for little data leave) plus noise, so a gradient-boosting model scores an ROC AUC near
0.85 and a logistic one a little less. Some values are missing, as in real extracts.

``drift`` (0 = none, 1 = strong) moves the feature distributions the way a market change
would: newer customers, higher prices, more support calls, more month-to-month contracts.
The churn rule itself does not change, so the churn rate follows the features.

Example::

    >>> from modelport.datasets import churn
    >>> frame = churn.generate(1000, seed=0)
    >>> frame.shape
    (1000, 12)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PLANS = ("basic", "standard", "premium", "unlimited")
CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("electronic check", "mailed check", "bank transfer", "credit card")
REGIONS = ("north", "south", "east", "west", "central")

#: the share of missing values per column, as an extract from a CRM would have them
MISSING = {
    "total_charges": 0.02,
    "data_usage_gb": 0.03,
    "age": 0.04,
    "payment_method": 0.02,
    "region": 0.01,
}

FIRST_ID = 100_001


def generate(n_rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Return ``n_rows`` customers as a DataFrame, the same for the same ``seed`` and ``drift``.

    Columns: ``customer_id`` (unique int), ``tenure_months``, ``monthly_charges``,
    ``total_charges``, ``support_calls``, ``data_usage_gb``, ``age`` (numbers; some
    missing), ``plan``, ``contract``, ``payment_method``, ``region`` (strings; some
    missing) and the target ``churned`` (0/1, about a quarter are 1). ``drift`` shifts the
    distributions for monitoring experiments; one million rows take a few seconds.
    """
    import pandas as pd

    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = int(n_rows)
    d = float(drift)

    contract = _choice(rng, n, [0.55 + 0.2 * d, 0.25 - 0.1 * d, 0.20 - 0.1 * d])
    plan = _choice(rng, n, [0.30, 0.35 - 0.05 * d, 0.22, 0.13 + 0.05 * d])
    payment = _choice(rng, n, [0.34 + 0.1 * d, 0.18, 0.24 - 0.05 * d, 0.24 - 0.05 * d])
    region = _choice(rng, n, [0.22, 0.20, 0.18, 0.25, 0.15])

    # Longer contracts go with longer tenure; drift brings in newer customers.
    tenure_scale = np.array([14.0, 30.0, 45.0])[contract] * (1.0 - 0.25 * d)
    tenure = np.minimum(rng.exponential(tenure_scale), 72).astype(np.int64)

    age = np.clip(rng.normal(46 - 4 * d, 14, n), 18, 90).astype(np.int64)

    usage_median = np.array([4.0, 12.0, 30.0, 60.0])[plan]
    usage = np.round(usage_median * rng.lognormal(0.0, 0.55, n) * (1 + 0.2 * d), 2)

    base_price = np.array([29.0, 49.0, 74.0, 99.0])[plan]
    monthly = base_price + 0.15 * usage + rng.normal(0, 6, n) + 8 * d
    monthly = np.round(np.maximum(monthly, 10.0), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.normal(1.0, 0.04, n), 2)

    # Support calls: more for new customers and heavy users, more again under drift.
    calls_rate = (0.8 + 1.2 * np.exp(-tenure / 12.0) + usage / 80.0) * (1 + 0.4 * d)
    calls = rng.poisson(calls_rate).astype(np.int64)

    churned = _churn(rng, tenure, contract, plan, payment, region, monthly, usage, calls, age)

    frame = pd.DataFrame({
        "customer_id": np.arange(FIRST_ID, FIRST_ID + n, dtype=np.int64),
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": total,
        "support_calls": calls,
        "data_usage_gb": usage,
        "age": age,
        "plan": _strings(PLANS, plan),
        "contract": _strings(CONTRACTS, contract),
        "payment_method": _strings(PAYMENT_METHODS, payment),
        "region": _strings(REGIONS, region),
        "churned": churned,
    })
    for column, share in MISSING.items():
        hole = rng.random(n) < share
        if frame[column].dtype.kind in "iu":
            # an integer column with holes becomes a float column, as pandas reads it
            frame[column] = frame[column].astype("float64")
        frame.loc[hole, column] = np.nan
    return frame


def _churn(rng: np.random.Generator, tenure: np.ndarray, contract: np.ndarray, plan: np.ndarray,
           payment: np.ndarray, region: np.ndarray, monthly: np.ndarray, usage: np.ndarray,
           calls: np.ndarray, age: np.ndarray) -> np.ndarray:
    """The hidden rule: a logit with thresholds and interactions, then a coin flip."""
    new = np.exp(-tenure / 10.0)  # ~1 for brand-new customers, ~0 after two years
    logit = (
        -2.95
        + np.array([1.0, -0.4, -1.6])[contract]
        + 1.5 * new
        # support calls hurt most when the customer is new and on a monthly contract
        + 0.35 * np.minimum(calls, 6) * (0.6 + new) * np.where(contract == 0, 1.2, 0.6)
        # a high price for little data: the bill feels unfair
        + 1.2 * np.tanh((monthly / np.maximum(usage, 0.5) - 6.0) / 4.0) * (plan <= 1)
        + 0.8 * (monthly > 95) * (contract == 0)
        + 0.45 * (payment == 0)
        - 0.25 * (payment == 3)
        # the young shop around, the old stay
        + 0.015 * np.maximum(35 - age, 0) * 3 - 0.01 * np.maximum(age - 60, 0)
        + np.array([0.0, 0.1, -0.05, 0.15, -0.1])[region]
        - 0.5 * (plan == 3) * (usage > 60)
    )
    logit = logit + rng.normal(0, 0.4, len(tenure))
    return (rng.random(len(tenure)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)


def _choice(rng: np.random.Generator, n: int, p: list[float]) -> np.ndarray:
    weights = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    return np.searchsorted(np.cumsum(weights / weights.sum()), rng.random(n),
                           side="right").clip(0, len(weights) - 1)


def _strings(labels: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    import pandas as pd

    # a categorical decoded once per label is far faster than mapping each row
    return pd.Categorical.from_codes(codes, categories=list(labels)).astype(str)
