"""The demo's steps that talk to running services: clients and URLs in, plain values out.

None of these knows how the services were started, so a marketplace run any other
way (the compose stack, :mod:`deltaml.services.compose_demo`) reuses them: wait
for the owners to register, ask for a model, follow the training, wait for the
withdrawals and check that payouts + refund = deposit, collect the model's test
scores and the evidence, and build the :class:`DemoResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deltaml.errors import DeltaMLValueError
from deltaml.estimator import TrainedModel
from deltaml.learning.data import Dataset
from deltaml.services.demo.config import DEMO_CHALLENGE_WINDOW_S, DemoResult
from deltaml.services.party import error_detail

#: Request statuses after which nothing more happens to a request's training.
ENDED = ("FINISHED", "FAILED", "CANCELLED")
POLL_S = 0.25


def ok(response: httpx.Response) -> Any:
    """The JSON of a successful response; a one-line DeltaMLValueError otherwise."""
    if response.status_code >= 400:
        request = response.request
        raise DeltaMLValueError(f"{request.method} {request.url.path}: {error_detail(response)}")
    return response.json()


def wait_registered(client: httpx.Client, n: int, timeout: float = 120.0) -> None:
    """Until every owner has registered (they profile their data and join the contract first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok(client.get("/health")).get("owners", 0) >= n:
            return
        time.sleep(0.2)
    raise DeltaMLValueError(f"the {n} owners did not register within {timeout:g} s")


def request_spec(
    model: str,
    share: Dataset,
    owners: int,
    *,
    rounds: int,
    eval_every: int,
    deposit_wei: int,
    key_bits: int,
    seed: int,
    arbiter: str,
    solver: str = "admm",
    metric_protocol: str = "rotation",
) -> dict[str, Any]:
    """The demo's request: every owner's columns, its own arbiter, the shortest window
    (``solver: exact``: one solve: docs/exactness.md)."""
    exact = {"solver": "exact"} if solver == "exact" else {}
    gram = {"metric_protocol": "gram"} if metric_protocol == "gram" else {}
    return {
        **exact,
        **gram,
        "model": model,
        "features": list(share.feature_names),
        "target": share.target_name,
        "owners": owners,
        "rounds": rounds,
        "eval_every": eval_every,
        "deposit_wei": deposit_wei,
        "key_bits": key_bits,
        "split_seed": seed,
        "arbiter": arbiter,
        # Every honest party approves at once, so the result need not wait a day.
        "challenge_window_s": DEMO_CHALLENGE_WINDOW_S,
    }


def create_request(buyer: httpx.Client, spec: dict[str, Any]) -> int:
    """Ask the buyer node for a model; the request's id."""
    return int(ok(buyer.post("/requests", json=spec))["id"])


def watch_request(
    view_of: Callable[[], dict[str, Any]],
    deadline: float,
    say: Callable[[str], None],
    metric_label: str = "validation MSE",
    on_view: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Follow a request until its training ends (each new metric said once); its last view.

    ``on_view`` sees every view (to crash a party at some round) and returns True
    when it changed something and the view should be read again at once.
    """
    shown = -1
    while True:
        view = view_of()
        for point in view["metrics"]:
            if point["round"] > shown:
                shown = point["round"]
                say(f"  round {shown:>3}: {metric_label} {point['mse']:.6g}")
        if on_view is not None and on_view(view):
            continue
        if view["status"] in ENDED:
            return view
        if time.monotonic() > deadline:
            raise DeltaMLValueError("the request's training did not end before the demo's timeout")
        time.sleep(POLL_S)


def payees(view: dict[str, Any], buyer_address: str) -> set[str]:
    """Who withdraws from the contract once a request has ended: the paid parties and
    the buyer's refund, or only the buyer's deposit if it did not finish."""
    result = view.get("result") or {}
    if view["status"] != "FINISHED":
        return {buyer_address}
    paid = {a for a, v in result["payouts_wei"].items() if int(v) > 0}
    return paid | ({buyer_address} if int(result["refund_wei"]) > 0 else set())


def wait_withdrawals(ledger: Any, cid: int, who: set[str], deadline: float) -> dict[str, int]:
    """What the contract paid each of ``who``, once every one of them has withdrawn."""
    while True:
        paid: dict[str, int] = {}
        for event in ledger.history(cid):
            if event.name == "Withdrawn":
                account = str(event.args["account"])
                paid[account] = paid.get(account, 0) + int(event.args["amount"])
        if who <= set(paid):
            return paid
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(who - set(paid)))
            raise DeltaMLValueError(f"no withdrawal from {missing} before the demo's timeout")
        time.sleep(POLL_S)


def check_paid_in_full(deposit_wei: int, payouts_wei: dict[str, int], refund_wei: int) -> None:
    """The contract paid out exactly the deposit: payouts + refund = deposit."""
    total = sum(payouts_wei.values()) + refund_wei
    if total != deposit_wei:
        raise DeltaMLValueError(
            f"the contract paid {total} wei (payouts + refund) of a {deposit_wei} wei deposit"
        )


def wait_paid_out(
    chain_url: str,
    contract: str,
    view: dict[str, Any],
    buyer_address: str,
    deadline: float,
) -> dict[str, int]:
    """Wait until everyone the ended request ``view`` pays (and the buyer's refund) has
    withdrawn from ``contract`` on the chain at ``chain_url``; check that payouts +
    refund = deposit; what each account withdrew."""
    from deltaml.ledger import Web3Ledger, connect
    from deltaml.ledger.accounts import generate_account

    # Reading events needs no funds: a throw-away account will do.
    ledger = Web3Ledger(connect(chain_url), contract, generate_account())
    withdrawn = wait_withdrawals(
        ledger, int(view["chain_request_id"]), payees(view, buyer_address), deadline
    )
    refund = withdrawn.get(buyer_address, 0)
    paid = {a: v for a, v in withdrawn.items() if a != buyer_address}
    check_paid_in_full(int(view["deposit_wei"]), paid, refund)
    return withdrawn


def wait_model(buyer: httpx.Client, rid: int, deadline: float) -> dict[str, Any]:
    """The model, once the buyer node has it (it comes only after the settlement)."""
    while True:
        response = buyer.get(f"/requests/{rid}/model")
        if response.status_code == 200:
            return dict(response.json())
        if response.status_code != 404 or time.monotonic() > deadline:
            ok(response)
            raise DeltaMLValueError("the buyer had no model before the demo's timeout")
        time.sleep(POLL_S)


def wait_settlement(buyer: httpx.Client, rid: int, deadline: float) -> dict[str, Any]:
    """The buyer node's settlement record (written just after its last transaction)."""
    while True:
        status = ok(buyer.get("/status"))
        settlement = next(r for r in status["requests"] if r["id"] == rid)["settlement"]
        if settlement is not None:
            return dict(settlement)
        if time.monotonic() > deadline:
            raise DeltaMLValueError("the buyer recorded no settlement before the demo's timeout")
        time.sleep(POLL_S)


def model_scores(
    model_json: Any,
    owner_addresses: list[str],
    trainer_addresses: list[str],
    shares: list[Dataset],
    test: Dataset,
) -> tuple[dict[str, float], list[int]]:
    """The model's test scores next to the exact optimum of its training objective on
    the trainers' rows (standardized as the owners' statistics round does, the spec's
    default ``l2``) and scikit-learn's default fit (MSE for a linear model; AUC and
    accuracy for a logistic one; :func:`deltaml.learning.baseline.baseline_metrics`),
    and the trainers' indices. ``baseline_note`` (in the scores, as text) says why
    scikit-learn's figure differs from the optimum's, when it does."""
    from deltaml.learning.baseline import baseline_metrics
    from deltaml.learning.models import model_type
    from deltaml.learning.standardize import local_sums, stats_from_sums

    model = TrainedModel.from_json(model_json)
    trainers = [owner_addresses.index(a) for a in trainer_addresses]
    x_train = np.concatenate([shares[i].X for i in trainers])
    y_train = np.concatenate([shares[i].y for i in trainers])
    regression = model.model == "linear"
    d = x_train.shape[1]
    # the public statistics: every owner's sums, as the statistics round adds them
    total = sum(local_sums(s.X, s.y, regression) for s in shares)
    stats = stats_from_sums(np.asarray(total), d, regression)
    weights = standardized_weights(model.coef, float(model.intercept), stats)
    scores, note = baseline_metrics(
        model_type(model.model), stats, weights, x_train, y_train, test.X, test.y
    )
    return {**scores, **({"baseline_note": note} if note else {})}, trainers  # type: ignore[dict-item]


def standardized_weights(coef: np.ndarray, intercept: float, stats: Any) -> np.ndarray:
    """The model's weights on the standardized design (the inverse of
    :func:`deltaml.learning.models.raw_coefficients`)."""
    coef = np.ravel(coef)
    features = coef * stats.scales / stats.target_scale
    bias = (intercept + coef @ stats.means - stats.target_mean) / stats.target_scale
    return np.append(features, bias)


@dataclass
class Outcome:
    """What a finished request gave: scores, roles and whether the evidence verifies."""

    scores: dict[str, float] = field(default_factory=dict)
    trainers: list[int] = field(default_factory=list)
    verified: bool = False


def finished_outcome(
    view: dict[str, Any],
    buyer: httpx.Client,
    transcript: Path,
    owner_addresses: list[str],
    shares: list[Dataset],
    test: Dataset,
    deadline: float,
) -> Outcome:
    """For a FINISHED request: the buyer's model scored on the test rows, and the
    transcript (already at ``transcript``) verified with the buyer's own verdict."""
    from deltaml.evidence.verify import verify_transcript

    result = view["result"]
    model = wait_model(buyer, int(view["id"]), deadline)
    scores, trainers = model_scores(model, owner_addresses, result["trainers"], shares, test)
    settlement = wait_settlement(buyer, int(view["id"]), deadline)
    report = verify_transcript(transcript, expected_head=result["transcript_head"])
    verified = report.ok and bool(settlement and settlement.get("verified"))
    return Outcome(scores, trainers, verified)


def owner_rows(
    names: list[str], addresses: list[str], shares: list[Dataset], outcome: Outcome | None
) -> list[dict[str, Any]]:
    """Each owner's name and address, with its role and rows once the request finished."""
    rows: list[dict[str, Any]] = []
    for i, (name, address) in enumerate(zip(names, addresses, strict=True)):
        row: dict[str, Any] = {"name": name, "address": address}
        if outcome is not None:
            role = "trainer" if i in outcome.trainers else "validator"
            row.update(role=role, rows=shares[i].n_rows)
        rows.append(row)
    return rows


def demo_result(
    view: dict[str, Any],
    withdrawn: dict[str, int],
    buyer_address: str,
    outcome: Outcome | None,
    **about: Any,
) -> DemoResult:
    """The :class:`DemoResult` of an ended request; ``about`` gives the fields that
    describe the run (``seconds``, ``chain``, ``owners``, ``urls``, ``transcript`` …)."""
    result = view.get("result") or {}
    scores = outcome.scores if outcome is not None else {}
    metrics = result.get("metrics") or {str(p["round"]): p["mse"] for p in view["metrics"]}
    return DemoResult(
        status=view["status"],
        test_mse=scores.get("test_mse"),
        sklearn_test_mse=scores.get("sklearn_test_mse"),
        test_auc=scores.get("test_auc"),
        sklearn_test_auc=scores.get("sklearn_test_auc"),
        test_accuracy=scores.get("test_accuracy"),
        sklearn_test_accuracy=scores.get("sklearn_test_accuracy"),
        optimum_test_mse=scores.get("optimum_test_mse"),
        optimum_test_auc=scores.get("optimum_test_auc"),
        optimum_test_accuracy=scores.get("optimum_test_accuracy"),
        baseline_note=str(scores.get("baseline_note") or ""),
        payouts_wei={a: v for a, v in withdrawn.items() if a != buyer_address},
        refund_wei=withdrawn.get(buyer_address, 0),
        contributions=result.get("contributions", {}),
        metrics=metrics,
        verified=outcome.verified if outcome is not None else False,
        statuses={o["owner"]: o["status"] for o in view["offers"]},
        error=view.get("error", ""),
        **about,
    )
