"""Attacks on mixed tables (issue 13): a spec that would blow up every owner's table,
an initial model of the raw width, and an owner lying about its encoded columns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.serialization import pack_vectors
from deltaml.errors import ProtocolError
from deltaml.learning.standardize import sums_length
from deltaml.learning.tabular import TableSpec, encode_frame
from deltaml.protocol import messages as m
from deltaml.protocol.spec import SpecError, parse_request_spec
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth
from deltaml.simulation import SimulationConfig, simulate_shares
from deltaml.transport.base import Transport

FEATURES = ["age", "color"]
LEVELS = ["red", "green", "blue"]
#: The columns an owner trains on: age, color=green, color=blue.
WIDTH = 3


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


def _body(categorical: dict[str, list[str]], width: int) -> bytes:
    public, _ = generate_keypair(512, allow_test_keys=True)
    initial = EncryptedVector.encrypt(public, np.zeros(width + 1), 40)
    return json.dumps(
        {
            "chain_request_id": 0,
            "spec": dataclasses.asdict(m.TrainingSpec(model="linear", rounds=2)),
            "requirements": {
                "features": FEATURES,
                "target": "y",
                "min_rows": 10,
                "owners": 2,
                "categorical": categorical,
            },
            "public_key": public.to_dict(),
            "initial_model": pack_vectors([initial]),
        }
    ).encode()


def _post(client: TestClient, raw: bytes) -> Any:
    return client.post(
        "/requests",
        content=raw,
        headers={"content-type": "application/json"},
        auth=SignedAuth(Account.create()),
    )


def test_a_spec_with_ten_thousand_levels_is_refused_naming_the_field(
    client: TestClient,
) -> None:
    huge = {"color": [f"level{i}" for i in range(10_000)]}
    with pytest.raises(SpecError) as caught:
        parse_request_spec({"features": FEATURES, "target": "y", "owners": 2, "categorical": huge})
    assert caught.value.field == "categorical"
    response = _post(client, _body(huge, 1 + 9_999))
    assert response.status_code == 422, response.text
    assert "requirements.categorical" in response.text and "Traceback" not in response.text


def test_a_spec_whose_encoded_table_is_too_wide_is_refused(client: TestClient) -> None:
    """Eleven columns of 100 levels each: 1,089 encoded columns, beyond the 1,000 cap."""
    features = [f"c{i}" for i in range(11)]
    categorical = {f: [f"l{j}" for j in range(100)] for f in features}
    with pytest.raises(SpecError, match="encoded table would have 1089 columns") as caught:
        parse_request_spec(
            {"features": features, "target": "y", "owners": 2, "categorical": categorical}
        )
    assert caught.value.field == "categorical"
    body = json.loads(_body({}, 1))
    body["requirements"].update(features=features, categorical=categorical)
    response = _post(client, json.dumps(body).encode())
    assert response.status_code == 422, response.text
    assert "requirements.categorical" in response.text


def test_an_initial_model_of_the_raw_width_is_refused(client: TestClient) -> None:
    """The buyer's initial model must have a weight per encoded column, not per raw one."""
    response = _post(client, _body({"color": LEVELS}, len(FEATURES)))
    assert 400 <= response.status_code < 500, response.text
    assert "initial_model needs one weight per feature" in response.text
    assert _post(client, _body({"color": LEVELS}, WIDTH)).status_code == 200


class _Liar(Transport):
    """Owner ``owner-4`` encodes its rows with a spec of its own (one level fewer) and
    sends the statistics of that narrower table: it pads nothing, it just lies."""

    def __init__(self, inner: Transport, width: int) -> None:
        self.inner = inner
        self.width = width

    def request(self, party_id: str, message: m.Message) -> m.Message:
        if party_id == "owner-4" and isinstance(message, m.StatsRequest):
            mask = message.mask[: sums_length(self.width, message.include_target)]
            message = dataclasses.replace(message, mask=mask)
        return self.inner.request(party_id, message)


def test_an_owner_lying_about_its_encoded_columns_is_refused() -> None:
    rng = np.random.default_rng(0)

    def rows(n: int) -> pd.DataFrame:
        df = pd.DataFrame({"age": rng.normal(40, 9, n), "color": rng.choice(LEVELS, n)})
        df["y"] = df.age / 10 + (df.color == "green") + rng.normal(0, 1, n)
        return df

    honest = TableSpec("y", ("age",), categorical={"color": tuple(LEVELS)})
    liar = TableSpec("y", ("age",), categorical={"color": tuple(LEVELS[:2])})
    shares = [encode_frame(rows(60), honest, f"owner-{i + 1}")[0] for i in range(3)]
    shares.append(encode_frame(rows(60), liar, "owner-4")[0])
    config = SimulationConfig(
        rounds=2, eval_every=2, key_bits=1024, allow_test_keys=True, chain=False,
        contributions=False,
    )  # fmt: skip
    with pytest.raises(ProtocolError, match="an owner sent statistics of the wrong size"):
        simulate_shares(
            config,
            "linear",
            "regression",
            shares,
            None,
            transport_wrapper=lambda inner: _Liar(inner, WIDTH - 1),
        )
