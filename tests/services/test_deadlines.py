"""Deadlines: a request that cannot finish in time fails, and the buyer gets its deposit
back, from the aggregator's watcher or, if the aggregator is gone, on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from services_testkit import FEATURES, new_request, profile

from deltaml.crypto import generate_keypair
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.ledger.accounts import fund_from_dev_account
from deltaml.ledger.base import RequestStatus, Role
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.web3_ledger import Web3Ledger
from deltaml.roles.aggregator import RoundRecord
from deltaml.services.aggregator import (
    AggregatorConfig,
    AggregatorService,
    create_app,
    request_hash,
)
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import BuyerConfig, BuyerNode
from deltaml.services.party import AggregatorError

ETH = 10**18
HOUR = 3600


@pytest.fixture
def market(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An aggregator service on the embedded chain, and a buyer with an account on it."""
    chain = EmbeddedChain()
    aggregator, buyer = Account.create(), Account.create()
    fund_from_dev_account(chain, [aggregator.address, buyer.address], 10 * ETH, demo=True)
    ledger = Web3Ledger.deploy(chain, aggregator)
    buyer_ledger = ledger.for_account(buyer)
    buyer_ledger.register(Role.BUYER)
    service = AggregatorService(
        AggregatorConfig(
            account=aggregator,
            database_url=f"sqlite:///{tmp_path / 'agg.sqlite'}",
            work_dir=tmp_path,
            ledger=ledger,
        )
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield {
            "chain": chain,
            "service": service,
            "client": client,
            "buyer": buyer,
            "buyer_ledger": buyer_ledger,
        }
    service.close()
    chain.close()


def open_request(market: dict[str, Any], deposit: int = ETH) -> tuple[int, int]:
    """A request escrowed on chain with a deadline an hour away, and known to the aggregator."""
    key = generate_keypair(512, allow_test_keys=True)
    body = new_request(owners=2, key=key)
    body["spec"]["deposit_wei"] = deposit
    ledger = market["buyer_ledger"]
    cid = ledger.create_request(
        market["service"].address,
        deposit,
        ledger.now() + HOUR,
        60,
        request_hash(body["spec"], body["requirements"]),
        arbiter=str(Account.create().address),
        key_hash=key_fingerprint(key[0]),
    )
    market["spec_hash"] = request_hash(body["spec"], body["requirements"])
    market["key_hash"] = key_fingerprint(key[0])
    body["chain_request_id"] = cid
    reply = market["client"].post("/requests", json=body, auth=SignedAuth(market["buyer"]))
    assert reply.status_code == 200, reply.text
    return int(reply.json()["id"]), cid


def test_an_open_request_past_its_deadline_fails_and_the_deposit_comes_back(market) -> None:
    service, ledger = market["service"], market["buyer_ledger"]
    owner, client = Account.create(), market["client"]
    fund_from_dev_account(market["chain"], [owner.address], ETH, demo=True)
    owner_ledger = ledger.for_account(owner)
    owner_ledger.register(Role.DATA_OWNER)
    registered = client.post(
        "/owners",
        json={"name": "o", "datasets": [profile("d", [*FEATURES, "y"])]},
        auth=SignedAuth(owner),
    )
    assert registered.status_code == 200, registered.text
    rid, cid = open_request(market)
    owner_ledger.join(cid, market["spec_hash"], market["key_hash"])
    assert client.post(f"/requests/{rid}/accept", auth=SignedAuth(owner)).status_code == 200
    assert service.expire_overdue() == []
    market["chain"].advance_time(2 * HOUR)
    assert service.expire_overdue() == [rid]
    view = client.get(f"/requests/{rid}").json()
    assert view["status"] == "FAILED"
    assert "deadline passed with 1 of the 2 owners" in view["error"]
    # For the owner it is over too: its offer failed, and it is too late to decide.
    assert client.get("/offers", auth=SignedAuth(owner)).json()[0]["status"] == "FAILED"
    late = client.post(f"/requests/{rid}/decline", auth=SignedAuth(owner))
    assert late.status_code == 409 and "too late" in late.json()["detail"]
    assert ledger.request(cid).status == RequestStatus.FAILED
    assert ledger.claimable(cid) == ETH
    assert service.expire_overdue() == []  # nothing left to expire


def test_a_running_request_past_its_deadline_stops_at_the_end_of_the_round(market) -> None:
    service = market["service"]
    rid, _ = open_request(market)
    service._set_status(rid, "IN_PROGRESS")  # as if enough owners had accepted
    service._progress(rid, RoundRecord(1, 0.1))
    market["chain"].advance_time(2 * HOUR)
    assert service.expire_overdue() == [rid]
    with pytest.raises(ProtocolError, match="deadline passed during training, after round 2"):
        service._progress(rid, RoundRecord(2, 0.1))


def test_the_buyer_reclaims_past_the_deadline_even_if_the_aggregator_is_gone(
    market, tmp_path: Path
) -> None:
    ledger = market["buyer_ledger"]
    rid, cid = open_request(market, deposit=2 * ETH)
    node = BuyerNode(
        BuyerConfig(
            account=market["buyer"],
            aggregator_url="http://127.0.0.1:9",  # nobody listens there
            database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}",
            work_dir=tmp_path,
            key_password="pw",
        )
    )
    node.ledger = ledger
    node.store.put("requests", str(rid), {"chain_request_id": cid})
    try:
        with pytest.raises(AggregatorError, match="cannot reach"):
            node.settle(rid)  # before the deadline it must ask the aggregator
        market["chain"].advance_time(2 * HOUR)
        before = ledger.balance_wei()
        outcome = node.settle(rid)
        assert outcome == {"status": "FAILED", "reclaimed_wei": str(2 * ETH)}
        assert node.store.get("settlement", str(rid)) == outcome
        assert ledger.request(cid).status == RequestStatus.FAILED
        assert ledger.has_withdrawn(cid)
        assert ledger.balance_wei() > before + 2 * ETH - 10**16  # minus gas
    finally:
        node.client.close()
