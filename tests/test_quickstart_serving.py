"""The quickstart's own model, served with defaults, answers every customer it was made from.

Ranges and vocabularies come from every training row, and a value outside them is scored
and flagged rather than refused: no customer of the quickstart's data gets a 422. Under
``strict`` the customers of the held-out split with a value outside the training split's
ranges are refused, and no training customer is.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from conftest import need_module

need_module("orjson", "http")
httpx = need_module("httpx", "dev")


def _records(frame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")]


def _post_all(app, bodies: list) -> list[httpx.Response]:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.post("/predict/churn", json=b) for b in bodies]

    return asyncio.run(go())


def _outside(frame, signature) -> np.ndarray:
    """Rows with a number outside the signature's range or a category outside its
    vocabulary, computed here from the signature alone."""
    bad = np.zeros(len(frame), dtype=bool)
    for col in signature.inputs:
        values = frame[col.name]
        if col.kind == "numeric":
            v = values.to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                bad |= (v < col.min) | (v > col.max)
        else:
            bad |= values.notna().to_numpy() & ~values.isin(col.categories).to_numpy()
    return bad


@pytest.mark.slow
def test_the_quickstart_model_serves_every_customer_and_strict_refuses_only_outliers(tmp_path):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from modelport import quickstart
    from modelport.registry import Registry
    from modelport.serve.http import create_app
    from modelport.signature import Signature

    quickstart.run(rows=20_000, folder=tmp_path / "qs", echo=lambda line: None)
    data = pd.read_parquet(tmp_path / "qs" / "customers.parquet")
    version = Registry().get("churn@production")
    signature = Signature.from_dict(version.signature)
    X = data[signature.names]
    train, test = train_test_split(X, test_size=0.2, random_state=42, stratify=data["churned"])
    assert not _outside(train, signature).any()  # ranges cover every training customer

    served = create_app(["churn@production"], poll_seconds=0)
    everyone = _records(X)
    answers = _post_all(served, [everyone[i:i + 500] for i in range(0, len(everyone), 500)])
    assert [r.status_code for r in answers] == [200] * len(answers)
    scored = sum(len(r.json()["predictions"]) for r in answers)
    assert scored == len(data) == 20_000

    strict = create_app(["churn@production"], poll_seconds=0, strict=True)
    rows = _records(train)
    answers = _post_all(strict, [rows[i:i + 500] for i in range(0, len(rows), 500)])
    assert [r.status_code for r in answers] == [200] * len(answers)
    outliers = test[_outside(test, signature)]
    # the held-out customers outside the training ranges, and made-up ones beyond every
    # range, are each refused alone with the field named
    made_up = test.head(3).copy()
    numeric = signature.numeric[0]
    made_up[numeric] = next(c.max for c in signature.inputs if c.name == numeric) + 1
    refused = _records(pd.concat([outliers, made_up]))
    answers = _post_all(strict, refused)
    assert [r.status_code for r in answers] == [422] * len(refused)
    assert all(r.json()["field"] in signature.names for r in answers)
    # with defaults, the same customers are scored, each with its warning
    answers = _post_all(served, refused)
    assert [r.status_code for r in answers] == [200] * len(refused)
    assert all("outside the range" in r.headers["modelport-warnings"]
               or "unseen in training" in r.headers["modelport-warnings"] for r in answers)
