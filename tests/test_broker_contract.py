"""Every broker adapter speaks the contract written in modelport.io.brokers, and declares
its optional capabilities as the protocols there, read once by capabilities()."""

from __future__ import annotations

import importlib
import inspect

import pytest

from modelport.io import brokers
from modelport.io.brokers import BrokerSink, BrokerSource, capabilities

MODULES = sorted({module for module, _ in brokers.SCHEMES.values()})
URLS = {"redis_streams": "redis://127.0.0.1:6379/0?stream=s",
        "nats_jetstream": "nats://127.0.0.1:4222?subject=s",
        "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/?queue=s",
        "mqtt": "mqtt://127.0.0.1:1883?topic=s",
        "kafka": "kafka://127.0.0.1:9092?topic=s"}


def _adapter(module: str):
    try:
        return importlib.import_module(f"modelport.io.brokers.{module}")
    except ImportError as exc:  # the broker's client library (brokers extra)
        pytest.skip(f"{module}: {exc}")


def _methods(protocol) -> set[str]:
    return {n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")}


@pytest.mark.parametrize("module", MODULES)
def test_each_adapter_has_the_contracts_methods_as_coroutines(module):
    adapter = _adapter(module)
    for cls, protocol in ((adapter.Source, BrokerSource), (adapter.Sink, BrokerSink)):
        for name in _methods(protocol):
            method = getattr(cls, name, None)
            assert method is not None, f"{module}.{cls.__name__} has no {name}"
            assert inspect.iscoroutinefunction(method), f"{module}.{cls.__name__}.{name}"


@pytest.mark.parametrize("module", MODULES)
def test_capabilities_are_read_from_what_an_adapter_declares(module):
    _adapter(module)
    url = URLS[module]
    source = brokers.open_source(url, group="g", batch=8)
    sink = brokers.open_sink(url)
    caps = capabilities(source)
    assert caps.lag == inspect.iscoroutinefunction(getattr(type(source), "lag", None))
    assert caps.atomic == callable(getattr(type(source), "publish_and_ack", None))
    bound = getattr(type(source), "max_inflight", None)
    assert caps.max_inflight == bound
    assert caps.inflight(4) == (4 if bound is None else min(4, bound))
    if caps.atomic:
        assert isinstance(source.shares_server(sink), bool)
    # what the brokers here are known to offer
    expected = {"redis_streams": (True, None, True), "nats_jetstream": (True, None, False),
                "rabbitmq": (True, None, False), "mqtt": (False, None, False),
                "kafka": (False, 1, False)}[module]
    assert (caps.lag, caps.max_inflight, caps.atomic) == expected
