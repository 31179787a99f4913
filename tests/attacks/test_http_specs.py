"""Attacks on the request bodies' values: out-of-range specs, huge ids, poisoned profiles."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.serialization import pack_vectors
from deltaml.errors import DeltaMLValueError
from deltaml.protocol import messages as m
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import parse_request_spec

FEATURES = ["age", "bmi"]


@pytest.fixture(scope="module")
def request_body() -> dict[str, Any]:
    public, _ = generate_keypair(512, allow_test_keys=True)
    initial = EncryptedVector.encrypt(public, np.zeros(len(FEATURES) + 1), 40)
    return {
        "chain_request_id": 0,
        "spec": dataclasses.asdict(m.TrainingSpec(model="linear", rounds=2)),
        "requirements": {"features": FEATURES, "target": "y", "min_rows": 10, "owners": 2},
        "public_key": public.to_dict(),
        "initial_model": pack_vectors([initial]),
    }


@pytest.fixture
def client(tmp_path: Path):
    service = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
            work_dir=tmp_path,
        )
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c
    service.close()


def post(client: TestClient, account: Any, path: str, raw: bytes) -> Any:
    return client.post(
        path,
        content=raw,
        headers={"content-type": "application/json"},
        auth=SignedAuth(account),
    )


SPEC_CASES = [
    ("rounds", "1000000000"),
    ("rounds", "1" + "0" * 4000),
    ("eval_every", "0"),
    ("trainer_fraction", "5"),
    ("deposit_wei", "-1"),
    ("metric_noise", "Infinity"),
    ("l2", "Infinity"),
    ("l2", "-1.0"),
    ("rounds", '"3"'),
    ("split_seed", str(2**70)),
]


@pytest.mark.parametrize(("field", "literal"), SPEC_CASES)
def test_an_out_of_range_spec_value_is_a_4xx_naming_the_field(
    client: TestClient, request_body: dict[str, Any], field: str, literal: str
) -> None:
    body = copy.deepcopy(request_body)
    body["spec"][field] = "@@VALUE@@"
    raw = json.dumps(body).replace('"@@VALUE@@"', literal).encode()
    response = post(client, Account.create(), "/requests", raw)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("chain_request_id", 2**70),
        ("requirements.min_rows", 10**22),
        ("requirements.features", ["x" * 10_000]),
    ],
)
def test_integers_beyond_the_database_and_odd_names_are_4xx(
    client: TestClient, request_body: dict[str, Any], where: str, value: Any
) -> None:
    body = copy.deepcopy(request_body)
    target = body
    *parents, last = where.split(".")
    for p in parents:
        target = target[p]
    target[last] = value
    response = post(client, Account.create(), "/requests", json.dumps(body).encode())
    assert response.status_code == 422, response.text
    assert last in response.text


@pytest.mark.parametrize(
    "path", ["/requests/10000000000000000000000", "/requests/10000000000000000000000/transcript"]
)
def test_a_huge_id_in_a_path_is_a_4xx(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert 400 <= response.status_code < 500, response.text


def test_a_poisoned_profile_is_refused_and_requests_still_work(
    client: TestClient, request_body: dict[str, Any]
) -> None:
    """A column name that is a list used to make every later POST /requests a 500."""
    poison = {
        "name": "evil",
        "datasets": [{"name": "d", "rows": 50, "columns": [{"name": ["age"], "nulls": 0}]}],
    }
    response = post(client, Account.create(), "/owners", json.dumps(poison).encode())
    assert response.status_code == 422, response.text
    assert "name" in response.text
    created = post(client, Account.create(), "/requests", json.dumps(request_body).encode())
    assert created.status_code == 200, created.text


BUYER_SPEC = {"features": ["age", "bmi"], "target": "y", "owners": 2}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deadline_hours", float("inf")),
        ("deadline_hours", 1e300),
        ("rounds", 10**9),
        ("deposit_wei", 2**130),
        ("l2", -1.0),
        ("l2", float("inf")),
        ("metric_noise", float("inf")),
        ("owners", 10**6),
        ("min_rows", 10**22),
        ("features", ["x" * 10_000]),
    ],
)
def test_the_buyers_spec_parser_bounds_every_value(field: str, value: Any) -> None:
    with pytest.raises(DeltaMLValueError, match=field):
        parse_request_spec({**BUYER_SPEC, field: value})


@pytest.mark.parametrize("depth", [40, 50_000])
def test_a_deeply_nested_spec_file_is_a_one_line_error(tmp_path: Path, depth: int) -> None:
    """``deltaml buyer request`` parses a YAML spec: nesting is bounded before it is sent."""
    import subprocess
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text("features: " + "[" * depth + "]" * depth + "\ntarget: y\nowners: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "deltaml", "buyer", "request", str(spec), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert "nested" in done.stderr or "too many" in done.stderr, done.stderr[-300:]
