"""Property-based requests generated from the served OpenAPI document never get a 5xx."""

from __future__ import annotations

import pytest

from conftest import need_module
from zoo import build

schemathesis = need_module("schemathesis", "dev")
need_module("orjson", "http")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    import modelport
    from modelport.registry import Registry
    from modelport.serve.http import create_app

    home = tmp_path_factory.mktemp("http-fuzz")
    reg = Registry(f"sqlite:///{home / 'registry.db'}", str(home / "artefacts"))
    model, sample = build("pipeline")
    modelport.log_model(model, "churn", sample=sample, formats=["joblib", "onnx"],
                        alias="production", registry=reg)
    app = create_app(["churn@production"], registry=reg, poll_seconds=0, access_log=False)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_generated_requests_never_get_a_server_error(api_schema):
    from hypothesis import given

    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in ((o, m) for o in operations for m in modes):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def run(case):
            case.call_and_validate(checks=[not_a_server_error])

        try:
            run()
        except Unsatisfiable:
            # a GET without parameters has no invalid request to make
            assert mode == schemathesis.GenerationMode.NEGATIVE
