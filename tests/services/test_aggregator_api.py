"""The aggregator's HTTP API: registry, requests, offers, decisions and every user error as 4xx."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from services_testkit import FEATURES, new_request, profile

from deltaml.crypto import generate_keypair
from deltaml.protocol import messages as m
from deltaml.services import wire
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth


@pytest.fixture
def api(tmp_path: Path, db_url: str):
    """The aggregator's app on SQLite and on PostgreSQL."""
    service = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=db_url,
            work_dir=tmp_path,
        )
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield service, client
    service.close()


def signed(client: TestClient, account, method: str, path: str, **kwargs):
    return client.request(method, path, auth=SignedAuth(account), **kwargs)


def test_unsigned_calls_are_refused_and_public_views_are_open(api) -> None:
    _, client = api
    response = client.get("/offers")
    assert response.status_code == 401 and "X-DeltaML" in response.json()["detail"]
    assert client.get("/health").json()["ok"] is True
    assert client.get("/docs").status_code == 200
    assert "/work" in client.get("/openapi.json").json()["paths"]


def test_offers_follow_the_owners_data_and_decisions(api) -> None:
    service, client = api
    matching, other, buyer = Account.create(), Account.create(), Account.create()
    for acct, columns in ((matching, [*FEATURES, "y"]), (other, ["age", "y"])):
        r = signed(
            client, acct, "POST", "/owners", json={"name": "o", "datasets": [profile("d", columns)]}
        )
        assert r.status_code == 200, r.text
    created = signed(client, buyer, "POST", "/requests", json=new_request())
    assert created.status_code == 200, created.text
    rid = created.json()["id"]
    offers = signed(client, matching, "GET", "/offers").json()
    assert [(o["request_id"], o["status"], o["dataset"]) for o in offers] == [(rid, "READY", "d")]
    assert signed(client, other, "GET", "/offers").json()[0]["status"] == "WAITING"
    refused = signed(client, other, "POST", f"/requests/{rid}/accept")
    assert refused.status_code == 409 and "none of your datasets" in refused.json()["detail"]
    accepted = signed(client, matching, "POST", f"/requests/{rid}/accept")
    assert accepted.json()["status"] == "INITIATED"
    assert service.request_view(rid)["status"] == "OPEN"  # one of two owners so far
    # An owner that registers later is offered the open request too.
    late = Account.create()
    signed(
        client,
        late,
        "POST",
        "/owners",
        json={"name": "l", "datasets": [profile("x", [*FEATURES, "y"])]},
    )
    assert signed(client, late, "GET", "/offers").json()[0]["status"] == "READY"


def test_user_errors_are_4xx_with_a_clear_message(api) -> None:
    _, client = api
    buyer, owner = Account.create(), Account.create()
    cases = [
        (signed(client, owner, "POST", f"/requests/{999}/accept"), 404, "was not offered"),
        (client.get("/requests/999"), 404, "no request 999"),
        (signed(client, owner, "POST", "/owners", json={"name": ""}), 422, ""),
        (signed(client, owner, "POST", "/owners", content=b"{not json"), 422, ""),
        (signed(client, owner, "POST", "/work/12345", content=wire.dumps(m.Ack())), 404, "no job"),
        # Whose job it is is checked before the body is parsed (issue 12).
        (signed(client, owner, "POST", "/work/1", content=b"[]"), 404, "no job"),
        (signed(client, owner, "GET", "/work?wait=-1"), 422, ""),
    ]
    body = new_request()
    body["spec"]["model"] = "forest"
    cases.append((signed(client, buyer, "POST", "/requests", json=body), 422, "linear or logistic"))
    body = new_request()
    other_key = generate_keypair(512, allow_test_keys=True)
    body["public_key"] = other_key[0].to_dict()
    cases.append(
        (signed(client, buyer, "POST", "/requests", json=body), 400, "not encrypted under")
    )
    body = new_request()
    vec = body["initial_model"]["vectors"][0]
    vec["ciphertexts"] = base64.b64encode(base64.b64decode(vec["ciphertexts"])[:-1]).decode()
    cases.append(
        (signed(client, buyer, "POST", "/requests", json=body), 400, "bytes of ciphertexts")
    )
    body = new_request()
    body["requirements"]["owners"] = 1
    cases.append((signed(client, buyer, "POST", "/requests", json=body), 422, ""))
    for response, status, text in cases:
        assert response.status_code == status, (response.request.url, response.text)
        detail = str(response.json()["detail"])
        assert text in detail
        assert "Traceback" not in response.text


def test_only_the_buyer_cancels_and_only_while_open(api) -> None:
    _, client = api
    buyer, stranger = Account.create(), Account.create()
    rid = signed(client, buyer, "POST", "/requests", json=new_request()).json()["id"]
    assert signed(client, stranger, "POST", f"/requests/{rid}/cancel").status_code == 403
    assert signed(client, buyer, "POST", f"/requests/{rid}/cancel").json()["status"] == "CANCELLED"
    again = signed(client, buyer, "POST", f"/requests/{rid}/cancel")
    assert again.status_code == 409 and "only an OPEN request" in again.json()["detail"]


def test_a_deeply_nested_body_is_refused_not_a_crash(api) -> None:
    _, client = api
    deep = b"[" * 200_000 + b"]" * 200_000
    owner = Account.create()  # signed: an unsigned body is refused before (401)
    response = signed(
        client, owner, "POST", "/owners", content=deep, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "nested deeper" in response.json()["detail"]
    untyped = signed(client, owner, "POST", "/owners", content=deep, headers={"content-type": ""})
    assert untyped.status_code == 400
    assert client.get("/health").status_code == 200
