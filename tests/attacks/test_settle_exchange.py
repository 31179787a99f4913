"""Fair exchange through the nodes (issue 10, attack 2): the buyer gets the final model
only once the result is settled on chain; a buyer that holds its last reply past the
deadline gets neither the model nor a way to keep both; no round starts that cannot
finish before the deadline.

A whole marketplace in one process: the aggregator service on a local port, a buyer
node and two owner nodes long-polling it, each with its own account on a chain node
(the embedded chain's JSON-RPC node, or anvil).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from eth_account import Account

from deltaml.evidence.transcript import read_records
from deltaml.learning.data import load_dataset, save_csv, split_owners
from deltaml.ledger import Web3Ledger, connect
from deltaml.ledger.accounts import fund_from_dev_account
from deltaml.ledger.base import RequestStatus
from deltaml.protocol import messages as m
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.buyer import BuyerConfig, BuyerNode
from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.serve import bind

pytestmark = pytest.mark.slow

ETH = 10**18
DEPOSIT = ETH


@dataclass
class Market:
    chain: Any
    service: AggregatorService
    buyer: BuyerNode
    owners: list[OwnerNode]
    arbiter: str
    features: list[str]
    target: str
    #: Chain status of the request each time the buyer node received a FinalModel.
    final_model_seen: list[RequestStatus] = field(default_factory=list)

    def request(self, **overrides: Any) -> tuple[int, int]:
        spec = {
            "features": self.features,
            "target": self.target,
            "owners": 2,
            "rounds": 2,
            "eval_every": 1,
            "deposit_wei": DEPOSIT,
            "key_bits": 1024,
            "arbiter": self.arbiter,
            "challenge_window_s": 60,
            **overrides,
        }
        created = self.buyer.create_request(spec)
        return int(created["id"]), int(created["chain_request_id"])

    def wait(self, what: Callable[[], Any], timeout: float = 240.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting")
            time.sleep(0.2)


def _serve(service: AggregatorService) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(
        create_app(service), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@pytest.fixture(params=["embedded", "anvil"])
def market(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Market]:
    yield from _market(request, tmp_path, 2)


@pytest.fixture
def market3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Market]:
    """Three owners (two trainers and a validator), on the embedded chain's node."""
    request.param = "embedded"
    yield from _market(request, tmp_path, 3)


def _market(request: pytest.FixtureRequest, tmp_path: Path, n_owners: int) -> Iterator[Market]:
    url = request.getfixturevalue(
        "embedded_node_url" if request.param == "embedded" else "anvil_url"
    )
    chain = connect(url)
    names = ["aggregator", "buyer", "arbiter", *(f"owner-{i + 1}" for i in range(n_owners))]
    accounts = {n: Account.create() for n in names}
    fund_from_dev_account(chain, [a.address for a in accounts.values()], 10 * ETH, demo=True)
    ledger = Web3Ledger.deploy(chain, accounts["aggregator"])
    service = AggregatorService(
        AggregatorConfig(
            account=accounts["aggregator"],
            database_url=f"sqlite:///{tmp_path / 'agg.sqlite'}",
            work_dir=tmp_path / "agg",
            ledger=ledger,
            chain_url=url,
            party_timeout=60.0 if n_owners == 2 else 5.0,
        )
    )
    service.resume()
    service.start_watcher(0.2)
    agg_url, server, thread = _serve(service)
    data = load_dataset("diabetes")
    shares = split_owners(data, n_owners, seed=0)
    features = list(data.feature_names[:3])
    owners = []
    for i, share in enumerate(shares):
        folder = tmp_path / f"owner-{i + 1}"
        folder.mkdir()
        csv = save_csv(share, folder / "data.csv")
        owners.append(
            OwnerNode(
                OwnerConfig(
                    account=accounts[f"owner-{i + 1}"],
                    data=[csv],
                    aggregator_url=agg_url,
                    database_url=f"sqlite:///{folder / 'owner.sqlite'}",
                    work_dir=folder,
                    poll_seconds=1.0,
                    offers_interval=0.2,
                )
            )
        )
    buyer = BuyerNode(
        BuyerConfig(
            account=accounts["buyer"],
            aggregator_url=agg_url,
            database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}",
            work_dir=tmp_path / "buyer",
            key_password="pw",
            allow_test_keys=True,
            poll_seconds=1.0,
            watch_interval=0.2,
        )
    )
    market = Market(
        chain,
        service,
        buyer,
        owners,
        str(accounts["arbiter"].address),
        features,
        data.target_name,
    )
    answer = buyer.loop.handler

    def watched(rid: int, message: m.Message) -> m.Message:
        if isinstance(message, m.FinalModel):
            cid = int(buyer.store.get("requests", str(rid))["chain_request_id"])
            assert buyer.ledger is not None
            market.final_model_seen.append(buyer.ledger.request(cid).status)
        return answer(rid, message)

    buyer.loop.handler = watched
    try:
        for node in [buyer, *owners]:
            node.start()
        yield market
    finally:
        for node in [buyer, *owners]:
            node.stop()
        server.should_exit = True
        thread.join(timeout=10)
        service.close()


def test_the_buyer_gets_the_model_only_once_the_result_is_settled(market: Market) -> None:
    rid, cid = market.request()
    buyer, ledger = market.buyer, market.buyer.ledger
    assert ledger is not None
    market.wait(lambda: buyer.store.get("models", str(rid)))
    # Every FinalModel the buyer received came after the contract settled the result.
    assert market.final_model_seen == [RequestStatus.SETTLED]
    state = ledger.request(cid)
    assert state.status == RequestStatus.SETTLED
    # Settled at once: the buyer and both seats verified the transcript and approved.
    assert state.approvals == 3
    for owner in market.owners:
        assert market.wait(lambda o=owner: o.store.get("reviews", str(rid)))["approved"]
    # The offer views showed the arbiter named on chain.
    assert market.service.request_view(rid)["arbiter"] == market.arbiter == state.arbiter
    settlement = market.wait(lambda: buyer.store.get("settlement", str(rid)))
    assert settlement["verified"] and settlement["approved"]


def test_a_buyer_holding_its_last_reply_past_the_deadline_gets_no_model(
    market: Market,
) -> None:
    """The buyer answers its last message (before the final model was on its way) only
    once the deadline has passed; the aggregator cannot finish on chain, the buyer
    reclaims its deposit — and must not hold the model as well."""
    buyer = market.buyer
    answer = buyer.loop.handler
    held: list[str] = []

    def withholding(rid: int, message: m.Message) -> m.Message:
        if isinstance(message, m.GramRequest | m.FinalModel) and not held:
            held.append(message.kind)
            market.chain.advance_time(2 * 3600)  # reply only after the deadline
        return answer(rid, message)

    buyer.loop.handler = withholding
    rid, cid = market.request(deadline_hours=1)
    assert buyer.ledger is not None
    market.wait(lambda: buyer.store.get("settlement", str(rid)))
    assert held
    state = buyer.ledger.request(cid)
    assert state.status == RequestStatus.FAILED
    assert buyer.ledger.has_withdrawn(cid)  # the deposit went back to the buyer ...
    time.sleep(2)
    assert buyer.store.get("models", str(rid)) is None  # ... and the model did not come
    assert market.final_model_seen == []
    # Nor can it be read from the public transcript: unpublished for a failed result.
    response = buyer.client.http.get(f"/requests/{rid}/transcript")
    assert response.status_code == 409


def test_no_round_starts_that_cannot_finish_before_the_deadline(market: Market) -> None:
    """Each round takes (by the chain's clock) 1000 s; the deadline is an hour away.
    After round 2, rounds 3 and 4 and the finish cannot fit: training stops after
    round 2 and the result is on chain before the deadline (owners get paid), with a
    signed record of the stop in the transcript."""
    for owner in market.owners:
        answer = owner.loop.handler

        def slow(rid: int, message: m.Message, answer: Any = answer) -> m.Message:
            if isinstance(message, m.RoundRequest):
                market.chain.advance_time(1000)
            return answer(rid, message)

        owner.loop.handler = slow
    rid, cid = market.request(rounds=4, eval_every=2, deadline_hours=1)
    service = market.service
    view = market.wait(
        lambda: (v := service.request_view(rid))["status"] in ("FINISHED", "FAILED") and v
    )
    assert view["status"] == "FINISHED", view["error"]
    assert view["result"]["rounds"] == 2
    assert view["result"]["deadline_stop"]["round"] == 2
    ledger = market.buyer.ledger
    assert ledger is not None
    state = ledger.request(cid)
    assert state.status in (RequestStatus.FINISHED, RequestStatus.SETTLED, RequestStatus.DISPUTED)
    assert state.finished_at <= state.deadline
    records = read_records(service.transcript_path(rid))
    stops = [r for r in records if r["type"] == "DeadlineStop"]
    assert len(stops) == 1 and stops[0]["body"]["round"] == 2
    assert stops[0]["signer"] == service.address
    assert records[-1]["type"] == "Payouts" and records[-1]["body"]["final_round"] == 2


def test_a_seat_that_never_approves_delays_the_settlement_only_by_the_window(
    market: Market,
) -> None:
    """A seated owner that vanishes (or withholds its approval) cannot hold the others'
    pay or the buyer's model hostage: once the challenge window passes, the aggregator
    settles, the payees withdraw and the buyer gets its model."""
    silent = market.owners[0]
    silent.review = lambda rid: None  # type: ignore[method-assign]
    rid, cid = market.request()
    ledger = market.buyer.ledger
    assert ledger is not None
    market.wait(
        lambda: (
            ledger.request(cid).status == RequestStatus.FINISHED
            and ledger.request(cid).approvals == 2
        )
    )
    assert market.buyer.store.get("models", str(rid)) is None
    market.chain.advance_time(120)
    market.wait(lambda: market.buyer.store.get("models", str(rid)))
    assert ledger.request(cid).status == RequestStatus.SETTLED
    assert market.final_model_seen == [RequestStatus.SETTLED]


def test_a_trainer_dropped_mid_training_cannot_hold_the_settlement(market3: Market) -> None:
    """A trainer that stops answering is dropped; it is still seated, so it never
    approves: the others are paid and the buyer gets its model once the window passes."""
    market = market3
    victim: list[OwnerNode] = []

    def vanish_after_round_one(owner: OwnerNode, answer: Any) -> Any:
        def handler(rid: int, message: m.Message) -> m.Message:
            if isinstance(message, m.RoundRequest) and message.round >= 2 and not victim:
                victim.append(owner)
            if victim and victim[0] is owner:
                owner.stop()
                time.sleep(60)  # never answers
            return answer(rid, message)

        return handler

    for owner in market.owners:
        owner.loop.handler = vanish_after_round_one(owner, owner.loop.handler)
    rid, cid = market.request(owners=3, rounds=3)
    ledger = market.buyer.ledger
    assert ledger is not None
    view = market.wait(
        lambda: (v := market.service.request_view(rid))["status"] in ("FINISHED", "FAILED") and v
    )
    assert view["status"] == "FINISHED", view["error"]
    assert len(view["result"]["dropped"]) == 1
    market.wait(lambda: ledger.request(cid).approvals == 3)  # buyer, the other two seats
    assert ledger.request(cid).status == RequestStatus.FINISHED
    market.chain.advance_time(120)
    market.wait(lambda: market.buyer.store.get("models", str(rid)))
    assert ledger.request(cid).status == RequestStatus.SETTLED


def test_a_result_whose_evidence_does_not_match_the_chain_is_disputed_not_settled(
    market: Market,
) -> None:
    """The aggregator posts on chain an evidence hash that is not its transcript's: the
    buyer and the seats check, dispute instead of approving, nothing becomes payable
    and the model stays with the aggregator until the arbiter decides."""
    ledger = market.service.ledger
    assert ledger is not None
    finish = ledger.finish

    def lying(
        cid: int, initial: int, final: int, weights: list[int], _evidence: bytes, **kw: Any
    ) -> Any:
        return finish(cid, initial, final, weights, b"\x01" * 32, **kw)

    ledger.finish = lying  # type: ignore[method-assign]
    rid, cid = market.request()
    buyer = market.buyer
    assert buyer.ledger is not None
    verdict = market.wait(lambda: buyer.store.get("verdicts", str(rid)))
    assert not verdict["verified"] and not verdict["approved"]
    market.wait(lambda: all(o.store.get("reviews", str(rid)) for o in market.owners))
    state = buyer.ledger.request(cid)
    assert state.status == RequestStatus.DISPUTED and state.approvals == 0
    assert not any(o.store.get("reviews", str(rid)).get("approved") for o in market.owners)
    time.sleep(1)
    assert buyer.store.get("models", str(rid)) is None and market.final_model_seen == []


def test_a_final_model_other_than_the_committed_one_is_not_decrypted(market: Market) -> None:
    """The public transcript names the final model by its digest (the ciphertexts are
    sealed) and its head is the evidence hash on chain. An aggregator that delivers
    another vector as the final model — a trainer's state, say — to have the buyer
    decrypt it is refused: nothing is decrypted, the model on record is unchanged."""
    import numpy as np

    from deltaml.crypto import EncryptedVector
    from deltaml.errors import ProtocolError

    rid, _ = market.request()
    buyer = market.buyer
    honest = market.wait(lambda: buyer.store.get("models", str(rid)))
    role = buyer._role(rid)
    n = len(market.features) + 1
    other = EncryptedVector.encrypt(role.public_key, np.arange(n, dtype=float), 40)
    with pytest.raises(ProtocolError, match="not the one the evidence on chain commits to"):
        buyer.handle(rid, m.FinalModel(other, 2, 2))
    assert buyer.store.get("models", str(rid)) == honest


def test_an_exact_model_other_than_the_committed_one_is_not_decrypted(market: Market) -> None:
    """The same for the exact solve (``solver: exact``): the delivered ``ExactModel`` must
    be the one the transcript's ``ExactModel`` record names, which the evidence on chain
    commits to; another vector is not decrypted."""
    import numpy as np

    from deltaml.crypto import EncryptedVector
    from deltaml.errors import ProtocolError
    from deltaml.protocol.exact_messages import ExactModel, ring_vector

    rid, _ = market.request(solver="exact", contributions=False)
    buyer = market.buyer
    honest = market.wait(lambda: buyer.store.get("models", str(rid)))
    role = buyer._role(rid)
    n = len(market.features) + 1
    other = EncryptedVector.encrypt(role.public_key, np.arange(n, dtype=float), 40)
    forged = ExactModel(ring_vector(role.public_key, [int(c) for c in other.ciphertexts]), (), ())
    with pytest.raises(ProtocolError, match="not the one the evidence on chain commits to"):
        buyer.handle(rid, forged)
    assert buyer.store.get("models", str(rid)) == honest
