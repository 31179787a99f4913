"""API fuzzing: every endpoint of the three services, from their OpenAPI schemas (issue 12).

Schemathesis draws requests that conform to each operation's schema and requests
that do not; they are signed as the route needs (the aggregator's signature, the
nodes' bearer token). No reply may be a 5xx, and no body may hold a traceback.
Bounded: a few examples per operation and mode.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from eth_account import Account
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from deltaml.services.aggregator import AggregatorConfig, AggregatorService
from deltaml.services.aggregator import create_app as aggregator_app
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import BuyerConfig, BuyerNode
from deltaml.services.buyer import create_app as buyer_app
from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.owner_api import create_app as owner_app
from deltaml.services.party import api_token

MAX_EXAMPLES = 12
#: Nothing listens here: the nodes' calls to "their aggregator" fail at once.
NOWHERE = "http://127.0.0.1:9"


def build(root: Path) -> tuple[dict[str, tuple[FastAPI, dict[str, str]]], list[Any]]:
    """The three services' apps in ``root`` (with their headers), and what to close."""
    aggregator = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{root / 'agg.sqlite'}",
            work_dir=root / "agg",
        )
    )
    csv = root / "data.csv"
    csv.write_text("age,bmi,y\n" + "\n".join(f"{i},{i % 7},{i % 3}" for i in range(30)) + "\n")
    owner = OwnerNode(
        OwnerConfig(
            account=Account.create(),
            data=[csv],
            aggregator_url=NOWHERE,
            database_url=f"sqlite:///{root / 'owner.sqlite'}",
            work_dir=root / "owner",
        )
    )
    buyer = BuyerNode(
        BuyerConfig(
            account=Account.create(),
            aggregator_url=NOWHERE,
            database_url=f"sqlite:///{root / 'buyer.sqlite'}",
            work_dir=root / "buyer",
            key_password="pw",
            allow_test_keys=True,
        )
    )
    bearer = {
        name: {"Authorization": f"Bearer {api_token(root / name)}"} for name in ("owner", "buyer")
    }
    apps = {
        "aggregator": (aggregator_app(aggregator), {}),
        "owner": (owner_app(owner), bearer["owner"]),
        "buyer": (buyer_app(buyer), bearer["buyer"]),
    }
    return apps, [aggregator.store, owner.store, buyer.store]


@pytest.fixture(scope="module")
def apps(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[FastAPI, dict[str, str]]]]:
    built, stores = build(tmp_path_factory.mktemp("fuzz"))
    yield built
    for store in stores:
        store.close()


def _operations() -> dict[str, list[Any]]:
    """Every operation of each service's OpenAPI schema (built once, at collection)."""
    with tempfile.TemporaryDirectory() as tmp:
        built, stores = build(Path(tmp))
        found = {
            name: [
                r.ok() for r in schemathesis.openapi.from_dict(app.openapi()).get_all_operations()
            ]
            for name, (app, _) in built.items()
        }
        for store in stores:
            store.close()
    return found


OPERATIONS = _operations()


def has_inputs(operation: Any) -> bool:
    """Whether an operation takes anything that could be wrong (negative cases exist)."""
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


ALL = [
    pytest.param(service, op, mode, id=f"{service} {op.method.upper()} {op.path} {mode.value}")
    for service in ("aggregator", "owner", "buyer")
    for op in OPERATIONS[service]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or has_inputs(op)
]


@pytest.mark.parametrize(("service", "operation", "mode"), ALL)
def test_no_endpoint_answers_5xx_or_a_traceback(
    apps: dict[str, tuple[FastAPI, dict[str, str]]],
    service: str,
    operation: Any,
    mode: GenerationMode,
) -> None:
    app, headers = apps[service]
    account = Account.create()
    with TestClient(app, raise_server_exceptions=False) as client:

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        def run(data: st.DataObject) -> None:
            case = data.draw(operation.as_strategy(generation_mode=mode))
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            sent = {k: v for k, v in kwargs["headers"].items() if k.lower() != "authorization"}
            wait = kwargs.get("params", {})
            if operation.path == "/work" and isinstance(wait, dict):
                wait = {**wait, "wait": 0}  # a long-poll: do not wait in a fuzz test
            response = client.request(
                kwargs["method"],
                kwargs["url"],
                headers={**sent, **headers},
                params=wait,
                cookies=kwargs.get("cookies") or None,
                json=kwargs.get("json"),
                content=kwargs.get("data") if isinstance(kwargs.get("data"), bytes) else None,
                auth=SignedAuth(account) if service == "aggregator" else None,
            )
            assert response.status_code < 500, (kwargs["method"], kwargs["url"], response.text)
            assert "Traceback" not in response.text

        run()
