"""One escrow, one training; the participants are the chain's seats (issue 10, attacks
3, 4 and 8 as they reach the services): the aggregator takes an escrow once, seats only
owners registered on chain that joined the exact request with their own account, no
one after the start, and after a restart trains the chain's seats; an owner node
joins only the spec and key committed on chain; a buyer node escrows nothing for a
spec the contract cannot take, and cancels at once an escrow the aggregator refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.crypto import EncryptedVector, PublicKey, generate_keypair
from deltaml.crypto.paillier import key_fingerprint
from deltaml.crypto.serialization import pack_vectors
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.ledger import Web3Ledger, connect
from deltaml.ledger.accounts import fund_from_dev_account
from deltaml.ledger.base import RequestStatus, Role
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.protocol import messages as m
from deltaml.protocol.merkle import SeatBook
from deltaml.services.aggregator import (
    AggregatorConfig,
    AggregatorService,
    create_app,
    request_hash,
)
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import BuyerConfig, BuyerNode
from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.party import AggregatorError
from deltaml.services.store import offers

ETH = 10**18
HOUR = 3600
FEATURES = ["age", "bmi"]
COLUMNS = [{"name": c, "type": "float", "nulls": 0} for c in [*FEATURES, "y"]]


@pytest.fixture(params=["embedded", "anvil"])
def market(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An aggregator service on a chain (in-process embedded, or anvil), a buyer and
    three owners with funded accounts (the owners not registered on chain yet)."""
    if request.param == "embedded":
        chain: Any = EmbeddedChain()
    else:
        chain = connect(request.getfixturevalue("anvil_url"))
    names = ["aggregator", "buyer", "arbiter", "a", "b", "c"]
    accounts = {n: Account.create() for n in names}
    fund_from_dev_account(chain, [a.address for a in accounts.values()], 10 * ETH, demo=True)
    ledger = Web3Ledger.deploy(chain, accounts["aggregator"])
    ledgers = {n: ledger.for_account(a) for n, a in accounts.items()}
    ledgers["buyer"].register(Role.BUYER)
    service = AggregatorService(
        AggregatorConfig(
            account=accounts["aggregator"],
            database_url=f"sqlite:///{tmp_path / 'agg.sqlite'}",
            work_dir=tmp_path,
            ledger=ledger,
            party_timeout=5.0,
        )
    )
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        for owner in ("a", "b", "c"):
            registered = client.post(
                "/owners",
                json={"name": owner, "datasets": [{"name": "d", "rows": 50, "columns": COLUMNS}]},
                auth=SignedAuth(accounts[owner]),
            )
            assert registered.status_code == 200, registered.text
        yield {
            "chain": chain,
            "service": service,
            "client": client,
            "accounts": accounts,
            "ledgers": ledgers,
        }
    service.close()
    if request.param == "embedded":
        chain.close()


def escrowed(market: dict[str, Any], owners: int = 2) -> dict[str, Any]:
    """A request escrowed on chain by the buyer (not yet sent to the aggregator)."""
    public, _ = generate_keypair(512, allow_test_keys=True)
    initial = EncryptedVector.encrypt(public, np.zeros(len(FEATURES) + 1), 40)
    spec = dataclasses.asdict(m.TrainingSpec(model="linear", rounds=2, deposit_wei=ETH))
    requirements = {"features": FEATURES, "target": "y", "min_rows": 10, "owners": owners}
    ledger = market["ledgers"]["buyer"]
    cid = ledger.create_request(
        market["service"].address,
        ETH,
        ledger.now() + HOUR,
        60,
        request_hash(spec, requirements),
        arbiter=str(market["accounts"]["arbiter"].address),
        key_hash=key_fingerprint(public),
    )
    return {
        "chain_request_id": cid,
        "spec": spec,
        "requirements": requirements,
        "public_key": public.to_dict(),
        "initial_model": pack_vectors([initial]),
    }


def post(market: dict[str, Any], who: str, path: str, **kwargs: Any) -> Any:
    return market["client"].post(path, auth=SignedAuth(market["accounts"][who]), **kwargs)


def join(market: dict[str, Any], who: str, body: dict[str, Any]) -> None:
    ledger = market["ledgers"][who]
    if not ledger.has_role(ledger.account, Role.DATA_OWNER):
        ledger.register(Role.DATA_OWNER)
    ledger.join(
        body["chain_request_id"],
        request_hash(body["spec"], body["requirements"]),
        key_fingerprint(PublicKey.from_dict(body["public_key"])),
    )


def test_one_escrow_pays_for_one_training(market: dict[str, Any]) -> None:
    body = escrowed(market)
    first = post(market, "buyer", "/requests", json=body)
    assert first.status_code == 200, first.text
    again = post(market, "buyer", "/requests", json=body)
    assert again.status_code == 409
    assert "already pays for request" in again.json()["detail"]
    assert len(market["service"].list_requests()) == 1


def test_a_request_whose_key_is_not_the_committed_one_is_refused(market: dict[str, Any]) -> None:
    body = escrowed(market)
    other, _ = generate_keypair(512, allow_test_keys=True)
    body["public_key"] = other.to_dict()
    body["initial_model"] = pack_vectors(
        [EncryptedVector.encrypt(other, np.zeros(len(FEATURES) + 1), 40)]
    )
    refused = post(market, "buyer", "/requests", json=body)
    assert refused.status_code == 400
    assert "another Paillier key" in refused.json()["detail"]


def test_only_owners_registered_and_joined_on_chain_take_a_seat(market: dict[str, Any]) -> None:
    body = escrowed(market)
    rid = post(market, "buyer", "/requests", json=body).json()["id"]
    # "a" is registered with the aggregator only: not a data owner on the contract.
    unregistered = post(market, "a", f"/requests/{rid}/accept")
    assert unregistered.status_code == 403
    assert "not registered on the contract as a data owner" in unregistered.json()["detail"]
    # Registered on chain, but it did not consent to this request with its own account.
    market["ledgers"]["a"].register(Role.DATA_OWNER)
    not_joined = post(market, "a", f"/requests/{rid}/accept")
    assert not_joined.status_code == 409 and "join on-chain request" in not_joined.json()["detail"]
    join(market, "a", body)
    assert post(market, "a", f"/requests/{rid}/accept").json()["status"] == "INITIATED"


def test_no_seat_after_the_start_and_a_restart_trains_the_chain_s_seats(
    market: dict[str, Any],
) -> None:
    service = market["service"]
    body = escrowed(market)
    cid = body["chain_request_id"]
    rid = post(market, "buyer", "/requests", json=body).json()["id"]
    for who in ("a", "b", "c"):
        join(market, who, body)
    for who in ("a", "b"):
        assert post(market, who, f"/requests/{rid}/accept").status_code == 200
    ledger = market["ledgers"]["buyer"]
    deadline = ledger.now() + 60
    while ledger.request(cid).status != RequestStatus.IN_PROGRESS:  # the runner started it
        assert ledger.now() < deadline or service.request_view(rid)["status"] == "IN_PROGRESS"
    late = post(market, "c", f"/requests/{rid}/accept")
    assert late.status_code == 409 and "too late" in late.json()["detail"]
    # Even if the aggregator's own records gained a participant (a late accept on an
    # older version, a tampered database), after a restart it trains the chain's seats.
    with service.store.begin() as conn:
        conn.execute(
            offers.update()
            .where(offers.c.request_id == rid, offers.c.owner == market["accounts"]["c"].address)
            .values(status="IN_PROGRESS")
        )
    trainers, validators = service._seats(
        rid, service._request_row(rid), m.TrainingSpec("linear", 2)
    )
    # the chain holds the seats' Merkle root: what the aggregator trains hashes to it
    seat_root = SeatBook.of(trainers, validators).seat_root(ledger.binding(cid))
    assert seat_root == ledger.request(cid).seat_root
    assert market["accounts"]["c"].address not in trainers + validators


def test_an_owner_node_never_joins_a_request_whose_key_is_not_the_committed_one(
    market: dict[str, Any], tmp_path: Path
) -> None:
    body = escrowed(market)
    rid = post(market, "buyer", "/requests", json=body).json()["id"]
    account = market["accounts"]["a"]
    csv = tmp_path / "d.csv"
    csv.write_text("age,bmi,y\n" + "".join(f"{i},{2 * i},{3 * i}\n" for i in range(20)))
    node = OwnerNode(
        OwnerConfig(
            account=account,
            data=[],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'owner.sqlite'}",
            work_dir=tmp_path / "owner",
            datasets={"d": csv},
        )
    )
    node.ledger = market["ledgers"]["a"]
    node.ledger.register(Role.DATA_OWNER)
    offer = market["service"].offers_for(account.address)[0]
    assert offer["arbiter"] == str(market["accounts"]["arbiter"].address)
    # The aggregator offers the request under another key than the one on chain.
    other, _ = generate_keypair(512, allow_test_keys=True)
    node.offers = [{**offer, "public_key": other.to_dict()}]
    node.client.post = lambda *a, **k: pytest.fail("accepted a request it must refuse")  # type: ignore[method-assign]
    with pytest.raises(ProtocolError, match="Paillier key is not the one committed"):
        node.decide(rid, True)
    assert not node.ledger.has_joined(body["chain_request_id"])
    # The same offer with the committed key is joined, with the owner's own account.
    node.offers = [offer]
    node.client.post = lambda *a, **k: {"status": "INITIATED"}  # type: ignore[method-assign]
    node.decide(rid, True)
    assert node.ledger.has_joined(body["chain_request_id"])
    assert node.store.get("joined", str(rid))["arbiter"] == offer["arbiter"]
    node.client.close()


def _buyer(market: dict[str, Any], tmp_path: Path) -> BuyerNode:
    node = BuyerNode(
        BuyerConfig(
            account=market["accounts"]["buyer"],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}",
            work_dir=tmp_path / "buyer",
            key_password="pw",
            allow_test_keys=True,
        )
    )
    node.ledger = market["ledgers"]["buyer"]
    node.aggregator_address = market["service"].address
    return node


SPEC = {"features": FEATURES, "target": "y", "owners": 2, "rounds": 2, "key_bits": 1024}


def test_a_spec_the_contract_cannot_take_escrows_nothing(
    market: dict[str, Any], tmp_path: Path
) -> None:
    node = _buyer(market, tmp_path)
    ledger = market["ledgers"]["buyer"]
    node.client.post = lambda *a, **k: pytest.fail("sent to the aggregator")  # type: ignore[method-assign]
    before = ledger.balance_wei()
    spec = {**SPEC, "owners": 1001, "arbiter": str(market["accounts"]["arbiter"].address)}
    with pytest.raises(DeltaMLValueError, match=r"owners must be .*at most 1000"):
        node.create_request(spec)
    assert ledger.balance_wei() == before  # no escrow (and no gas) spent
    node.client.close()


def test_a_request_the_aggregator_refuses_is_cancelled_on_chain_at_once(
    market: dict[str, Any], tmp_path: Path
) -> None:
    node = _buyer(market, tmp_path)
    ledger = market["ledgers"]["buyer"]
    sent: list[int] = []

    def refuse(path: str, json: Any = None) -> Any:
        sent.append(int(json["chain_request_id"]))
        raise AggregatorError("the aggregator refused POST /requests: no thanks", 400)

    node.client.post = refuse  # type: ignore[method-assign]
    spec = {**SPEC, "arbiter": str(market["accounts"]["arbiter"].address)}
    with pytest.raises(AggregatorError, match="escrow was cancelled"):
        node.create_request(spec)
    (cid,) = sent
    state = ledger.request(cid)
    assert state.status == RequestStatus.CANCELLED
    assert ledger.has_withdrawn(cid) and state.refund_wei == ETH
    record = node.store.get("refused", str(cid))
    assert record["cancelled"] and "no thanks" in record["error"]
    node.client.close()
