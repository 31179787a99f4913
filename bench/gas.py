"""Gas used by each Marketplace operation, measured on a chain.

    python bench/gas.py                                  # embedded chain
    python bench/gas.py --chain-url http://127.0.0.1:8545  # e.g. a local anvil
    python bench/gas.py --json
    python bench/gas.py --seats 10,100,1000              # the calls whose cost could
                                                         # grow with the seats, by size
    python bench/gas.py --seats 100 --unanimous          # every seat joins and approves

Every number is ``gasUsed`` from a mined receipt (not an estimate). Gas does not
depend on the backend: the same bytecode runs the same way on py-evm and anvil.

With ``--seats``, each size seats that many owners (70 % trainers) as a Merkle
root; a sample of them (``--sample``, or all with ``--unanimous``) joins, approves
and claims. Only the proofs grow, as log2 of the seats.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from deltaml.ledger import Role, Web3Ledger, connect, fund_from_dev_account, generate_account
from deltaml.ledger.base import Receipt
from deltaml.ledger.chain import Chain
from deltaml.protocol.merkle import SeatBook
from deltaml.protocol.payouts import compute_payouts

ETH = 10**18
EVIDENCE = b"\xe7" * 32
SPEC = b"\x5e" * 32
KEY = b"\x4b" * 32
REASON = b"\xd1" * 32


class GasReport:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int]] = []

    def add(self, name: str, ledger: Web3Ledger, action: Callable[[], object]) -> None:
        action()
        receipt: Receipt | None = ledger.last_receipt
        assert receipt is not None
        self.rows.append((name, receipt.gas_used))


def _parties(chain: Chain, market: Web3Ledger, n: int) -> list[Web3Ledger]:
    accounts = [generate_account() for _ in range(n)]
    fund_from_dev_account(chain, [a.address for a in accounts], ETH, demo=True)
    return [market.for_account(a) for a in accounts]


def measure(chain: Chain) -> GasReport:
    report = GasReport()
    deployer = generate_account()
    fund_from_dev_account(chain, deployer.address, 10 * ETH, demo=True)
    market = Web3Ledger.deploy(chain, deployer)
    assert market.last_receipt is not None
    report.rows.append(("deploy", market.last_receipt.gas_used))

    buyer = market.for_account(generate_account())
    aggregator = market.for_account(generate_account())
    arbiter = market.for_account(generate_account())
    fund_from_dev_account(
        chain, [buyer.account, aggregator.account, arbiter.account], 1000 * ETH, demo=True
    )
    report.add("register (buyer)", buyer, lambda: buyer.register(Role.BUYER))
    report.add("register (aggregator)", aggregator, lambda: aggregator.register(Role.AGGREGATOR))
    owners = _parties(chain, market, 64)
    report.add("register (data owner)", owners[0], lambda: owners[0].register(Role.DATA_OWNER))
    for owner in owners[1:]:
        owner.register(Role.DATA_OWNER)

    def create(window_s: int = 600, duration_s: int = 3600) -> int:
        deadline = chain.now() + duration_s
        return buyer.create_request(
            aggregator.account,
            10 * ETH,
            deadline,
            window_s,
            SPEC,
            arbiter=arbiter.account,
            key_hash=KEY,
        )

    def join(rid: int, chosen: list[Web3Ledger]) -> None:
        for owner in chosen:
            owner.join(rid, SPEC, KEY)

    def started(n_trainers: int = 1, n_validators: int = 1, **kwargs: int) -> int:
        rid = create(**kwargs)
        chosen = owners[: n_trainers + n_validators]
        join(rid, chosen)
        aggregator.start(
            rid,
            [o.account for o in chosen[:n_trainers]],
            [o.account for o in chosen[n_trainers:]],
        )
        return rid

    # --- a request with 4 trainers and 1 validator, approved by everyone
    holder: dict[str, int] = {}
    report.add("createRequest", buyer, lambda: holder.update(id=create()))
    rid = holder["id"]
    trainers, validators = owners[:4], owners[4:5]
    report.add("join (data owner)", owners[0], lambda: owners[0].join(rid, SPEC, KEY))
    join(rid, owners[1:5])
    report.add(
        "start (4 trainers + 1 validator)",
        aggregator,
        lambda: aggregator.start(rid, [t.account for t in trainers], [validators[0].account]),
    )
    report.add(
        "postMetric (first)",
        aggregator,
        lambda: aggregator.post_metric(rid, 1, 9_000_000, EVIDENCE),
    )
    report.add(
        "postMetric (later)",
        aggregator,
        lambda: aggregator.post_metric(rid, 2, 8_000_000, EVIDENCE),
    )
    report.add(
        "finish (4 trainers)",
        aggregator,
        lambda: aggregator.finish(rid, 10_000_000, 6_000_000, [4, 3, 2, 1], EVIDENCE),
    )
    report.add("approve (buyer)", buyer, lambda: buyer.approve(rid))
    for trainer in trainers[:-1]:
        trainer.approve(rid)
    report.add("approve (a seat)", trainers[-1], lambda: trainers[-1].approve(rid))
    report.add("approve (the last one: settles)", validators[0], lambda: validators[0].approve(rid))
    for i, trainer in enumerate(trainers, 1):
        report.add(f"claim (trainer {i})", trainer, lambda t=trainer: t.withdraw(rid))
    report.add("claim (validator)", validators[0], lambda: validators[0].withdraw(rid))
    report.add("withdraw (aggregator)", aggregator, lambda: aggregator.withdraw(rid))
    report.add("withdraw (buyer refund)", buyer, lambda: buyer.withdraw(rid))

    # --- settle by anyone after the window
    rid = started(window_s=60)
    aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    chain.advance_time(61)
    report.add("settle (after the window)", owners[2], lambda: owners[2].settle(rid))

    # --- disputes
    rid = started(window_s=60)
    aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    report.add("dispute", owners[0], lambda: owners[0].dispute(rid, REASON))
    report.add("resolve (void)", arbiter, lambda: arbiter.resolve(rid, False))
    report.add("withdraw (buyer, voided)", buyer, lambda: buyer.withdraw(rid))
    rid = started(window_s=60)
    aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    buyer.dispute(rid, REASON)
    report.add("resolve (upheld)", arbiter, lambda: arbiter.resolve(rid, True))
    rid = started(window_s=60)
    aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    buyer.dispute(rid, REASON)
    chain.advance_time(121)
    report.add("settle (unresolved dispute: void)", owners[2], lambda: owners[2].settle(rid))

    # --- refunds
    rid = create()
    report.add("cancel (refund at once)", buyer, lambda: buyer.cancel(rid))
    rid = started()
    report.add("abort", aggregator, lambda: aggregator.abort(rid))
    report.add("reclaim (after abort)", buyer, lambda: buyer.reclaim(rid))
    rid = create(duration_s=60)
    chain.advance_time(61)
    report.add("reclaim (after the deadline)", buyer, lambda: buyer.reclaim(rid))

    # --- large requests
    for n_trainers, n_validators in ((35, 15), (50, 14)):
        n = n_trainers + n_validators
        rid = create()
        chosen = owners[:n]
        join(rid, chosen)
        report.add(
            f"start ({n} owners: {n_trainers} + {n_validators})",
            aggregator,
            lambda rid=rid, chosen=chosen, t=n_trainers: aggregator.start(
                rid, [o.account for o in chosen[:t]], [o.account for o in chosen[t:]]
            ),
        )
        report.add(
            f"finish ({n_trainers} trainers)",
            aggregator,
            lambda rid=rid, t=n_trainers: aggregator.finish(
                rid, 10_000_000, 6_000_000, list(range(1, t + 1)), EVIDENCE
            ),
        )
        for party in [buyer, *chosen[:-1]]:
            party.approve(rid)
        report.add(
            f"approve (the last of {n + 1}: settles)",
            chosen[-1],
            lambda rid=rid, o=chosen[-1]: o.approve(rid),
        )
        report.add(
            f"claim (trainer, {n}-owner request)",
            chosen[0],
            lambda rid=rid, o=chosen[0]: o.withdraw(rid),
        )
    return report


SEAT_CALLS = ("start", "finish", "approve", "approve (settles)", "dispute", "resolve", "claim")


def measure_seats(
    chain: Chain, n_seats: int, sample: int = 8, unanimous: bool = False
) -> dict[str, int | float]:
    """Gas of the calls about seats for one request of ``n_seats`` seats (max over
    the sample where several parties make the same call), and seconds spent."""
    t0 = time.perf_counter()
    deployer = generate_account()
    fund_from_dev_account(chain, deployer.address, 10 * ETH, demo=True)
    market = Web3Ledger.deploy(chain, deployer)
    buyer, aggregator, arbiter = (market.for_account(generate_account()) for _ in range(3))
    fund_from_dev_account(
        chain, [buyer.account, aggregator.account, arbiter.account], 1000 * ETH, demo=True
    )
    buyer.register(Role.BUYER)
    aggregator.register(Role.AGGREGATOR)
    accounts = [generate_account() for _ in range(n_seats)]
    n_trainers = max(1, n_seats * 7 // 10)
    trainers = [a.address for a in accounts[:n_trainers]]
    validators = [a.address for a in accounts[n_trainers:]]
    acting = accounts if unanimous else accounts[:: max(1, n_seats // sample)][:sample]
    unanimous = len(acting) == n_seats  # a sample of every seat: the last approval settles
    fund_from_dev_account(chain, [a.address for a in acting], ETH, demo=True)
    # set-up, not under test: a fixed gas limit skips estimation
    fixed = [
        Web3Ledger(chain, market.contract_address, a, gas_limit=150_000, check_code=False)
        for a in acting
    ]
    for ledger in fixed:
        ledger.register(Role.DATA_OWNER)
    seats = [market.for_account(a) for a in acting]
    gas: dict[str, int] = {}

    def note(name: str, receipt: Receipt | None) -> None:
        assert receipt is not None
        gas[name] = max(gas.get(name, 0), receipt.gas_used)

    deposit = 100 * ETH + 7
    contributions = [(i * 7919) % 1009 + 1 for i in range(n_trainers)]
    rids = []
    for _ in range(2):  # one request settles, the other is disputed
        rid = buyer.create_request(
            aggregator.account,
            deposit,
            chain.now() + 86_400,
            600,
            SPEC,
            arbiter=arbiter.account,
            key_hash=KEY,
        )
        for ledger in fixed:
            ledger.join(rid, SPEC, KEY)
        note("start", aggregator.start(rid, trainers, validators))
        note("finish", aggregator.finish(rid, 10_000_000, 6_000_000, contributions, EVIDENCE))
        rids.append(rid)
    rid, disputed = rids
    note("dispute", seats[0].dispute(disputed, REASON))
    note("resolve", arbiter.resolve(disputed, True))
    note("approve", buyer.approve(rid))
    for seat in seats[:-1] if unanimous else seats:
        note("approve", seat.approve(rid))
    if unanimous:
        note("approve (settles)", seats[-1].approve(rid))
    else:
        chain.advance_time(601)
        buyer.settle(rid)
    for seat in seats:
        seat.withdraw(rid)
        note("claim", seat.last_receipt)
    # the money adds up to the wei: every leaf of the root, the fee and the refund
    split = compute_payouts(deposit, 10_000_000, 6_000_000, contributions, len(validators))
    book = SeatBook.from_payouts(trainers, validators, split.trainers, split.validators)
    state = buyer.request(rid)
    assert state.payout_total_wei == book.payout_total
    assert book.payout_total + split.aggregator + state.refund_wei == deposit
    return {**gas, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain-url", default=None, help="JSON-RPC URL (default: embedded)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seats", default="", help="comma-separated seat counts, e.g. 10,100")
    parser.add_argument("--sample", type=int, default=8, help="seats that act, per size")
    parser.add_argument("--unanimous", action="store_true", help="every seat joins and approves")
    args = parser.parse_args(argv)
    chain = connect(args.chain_url)
    try:
        if args.seats:
            sizes = [int(n) for n in args.seats.split(",")]
            by_size = {n: measure_seats(chain, n, args.sample, args.unanimous) for n in sizes}
        else:
            report = measure(chain)
    finally:
        chain.close()
    if args.seats:
        if args.json:
            json.dump({"chain": chain.url, "gas_used": by_size}, sys.stdout, indent=2)
            print()
            return 0
        print(f"Marketplace gas used by seats on {chain.url} (chain {chain.chain_id})")
        print("  " + f"{'call':<18}" + "".join(f"{n:>12,}" for n in sizes))
        for name in (*SEAT_CALLS, "seconds"):
            cells = [by_size[n].get(name) for n in sizes]
            print("  " + f"{name:<18}" + "".join(f"{c:>12,}" if c else f"{'—':>12}" for c in cells))
        return 0
    if args.json:
        out = {
            "chain": chain.url,
            "chain_id": chain.chain_id,
            "gas_used": dict(report.rows),
        }
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(f"Marketplace gas used on {chain.url} (chain {chain.chain_id})")
        width = max(len(name) for name, _ in report.rows)
        for name, gas in report.rows:
            print(f"  {name:<{width}}  {gas:>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
