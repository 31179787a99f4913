"""``run_demo``: the demo as a sequence of steps over a :class:`LocalMarket`.

Start the chain, start the nodes, wait for the owners to register, ask for a model,
follow the training (injecting the faults a test asks for), wait for the
settlement's withdrawals and check payouts + refund = deposit
(:func:`~deltaml.services.demo.steps.wait_paid_out`), collect the scores and the
evidence, and build the result; :mod:`.report` prints it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from deltaml.errors import DeltaMLValueError
from deltaml.learning.data import Dataset, load_dataset
from deltaml.services.demo import steps
from deltaml.services.demo.config import DemoConfig, DemoResult
from deltaml.services.demo.processes import LocalMarket, prepare_dir, write_shares
from deltaml.services.serve import ServiceProcess


def demo_data(config: DemoConfig) -> tuple[str, Dataset]:
    """The model type and the data set of the demo (the model type by the data's task
    unless ``config.model`` names one; a logistic model reads the target as two classes)."""
    task = {"linear": "regression", "logistic": "classification"}.get(config.model or "")
    data = load_dataset(config.dataset, target=config.target, task=task)
    if data.multiclass:
        raise DeltaMLValueError(
            f"{config.dataset} has {len(data.classes or ())} classes; the services train "
            "two-class models: use deltaml simulate (one-vs-rest) for it"
        )
    model = config.model or ("logistic" if data.task == "classification" else "linear")
    return model, data


@dataclass
class _Faults:
    """The faults a test asks for (``crash_after_round``, ``kill_owner_after_round``),
    injected while the training is followed (:meth:`on_view`)."""

    market: LocalMarket
    config: DemoConfig
    aggregator: ServiceProcess
    owners: list[ServiceProcess]
    owner_addresses: list[str]
    say: Callable[[str], None]
    #: The aggregator's client (a new one after a restart: same URL, new connections).
    client: httpx.Client
    restarts: int = 0
    killed: ServiceProcess | None = None

    def on_view(self, view: dict[str, Any]) -> bool:
        crash = self.config.crash_after_round
        if (
            crash is not None
            and not self.restarts
            and view["rounds_done"] >= crash
            and view["status"] == "IN_PROGRESS"
        ):
            self._restart_aggregator(view["rounds_done"])
            return True
        kill = self.config.kill_owner_after_round
        if kill is not None and self.killed is None and view["rounds_done"] >= kill:
            self._kill_owner(view)
        return False

    def _restart_aggregator(self, done: int) -> None:
        old = self.aggregator
        self.say(f"killing the aggregator after round {done} (pid {old.pid})")
        self.market.kill(old)
        self.aggregator = self.market.restart_aggregator(old)
        self.client = self.market.client(self.aggregator.url)
        self.restarts += 1
        self.say(f"aggregator restarted (pid {self.aggregator.pid})")

    def _kill_owner(self, view: dict[str, Any]) -> None:
        role = self.config.kill_role
        victim = next(o["owner"] for o in view["offers"] if o["role"] == role)
        self.killed = self.owners[self.owner_addresses.index(victim)]
        self.say(f"killing {self.killed.name}, a {role} (pid {self.killed.pid})")
        self.market.kill(self.killed)


def run_demo(
    config: DemoConfig,
    say: Callable[[str], None] = print,
    on_result: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Run the demo; ``on_result`` is called with the result while the processes still run."""
    model_type, data = demo_data(config)  # a bad --dataset fails before anything starts
    prepare_dir(config.work_dir)
    market = LocalMarket(config)
    try:
        outcome = _run(market, config, model_type, data, say)
        if on_result is not None:
            on_result(outcome)
        return outcome
    finally:
        market.stop()


def _run(
    market: LocalMarket,
    config: DemoConfig,
    model_type: str,
    data: Dataset,
    say: Callable[[str], None],
) -> DemoResult:
    t0 = time.perf_counter()
    if config.tls:
        market.use_tls(say)
    market.start_chain()
    say(f"chain: {market.chain_label}")
    owner_names = [f"owner-{i + 1}" for i in range(config.owners)]
    accounts = market.make_accounts(["aggregator", "buyer", *owner_names])
    paths, shares, test = write_shares(config, data)
    aggregator = market.start_aggregator()
    say(f"aggregator: {aggregator.url}/docs (pid {aggregator.pid})")
    buyer, owners = market.start_nodes(aggregator.url, paths)
    say(f"buyer node: {buyer.url} (pid {buyer.pid})")
    say(f"{len(owners)} data owners: " + ", ".join(f"{o.url} (pid {o.pid})" for o in owners))
    agg_client = market.client(aggregator.url)
    buyer_client = market.client(buyer.url, timeout=600, token_of="buyer")
    steps.wait_registered(agg_client, len(owners))
    startup = time.perf_counter() - t0
    say(f"started in {startup:.1f} s")

    t1 = time.perf_counter()
    spec = steps.request_spec(
        model_type,
        shares[0],
        config.owners,
        rounds=config.rounds,
        eval_every=config.eval_every,
        deposit_wei=config.deposit_wei,
        key_bits=config.key_bits,
        seed=config.seed,
        arbiter=str(accounts["arbiter"].address),
        solver=config.solver,
        metric_protocol=config.metric_protocol,
    )
    rid = steps.create_request(buyer_client, spec)
    say(
        f"request {rid} created: {model_type} model of {data.target_name!r}, "
        + ("one exact solve" if config.solver == "exact" else f"{config.rounds} rounds")
        + f", deposit {config.deposit_wei} wei"
    )
    owner_addresses = [str(accounts[name].address) for name in owner_names]
    faults = _Faults(market, config, aggregator, owners, owner_addresses, say, agg_client)
    deadline = time.monotonic() + config.timeout
    view = steps.watch_request(
        lambda: steps.ok(faults.client.get(f"/requests/{rid}")),
        deadline,
        say,
        "validation MSE" if model_type == "linear" else "validation loss",
        faults.on_view,
    )
    if view["status"] != "FINISHED":
        say(f"request {rid} ended {view['status']}: {view.get('error', '')}")
    contract = steps.ok(faults.client.get("/info"))["contract"]
    buyer_address = str(accounts["buyer"].address)
    withdrawn = steps.wait_paid_out(market.chain_url, contract, view, buyer_address, deadline)
    seconds = time.perf_counter() - t1
    transcript = config.work_dir / "aggregator" / "transcripts" / f"request-{rid}.jsonl"
    outcome = None
    if view["status"] == "FINISHED":
        say(f"settled and paid out in {seconds:.1f} s after the request")
        outcome = steps.finished_outcome(
            view, buyer_client, transcript, owner_addresses, shares, test, deadline
        )
    result = steps.demo_result(
        view,
        withdrawn,
        buyer_address,
        outcome,
        seconds=seconds,
        startup_seconds=startup,
        chain=market.chain_label,
        model=model_type,
        dataset=config.dataset,
        deposit_wei=config.deposit_wei,
        transcript=str(transcript),
        owners=steps.owner_rows(owner_names, owner_addresses, shares, outcome),
        urls={
            "aggregator": faults.aggregator.url,
            "buyer": buyer.url,
            **{name: o.url for name, o in zip(owner_names, owners, strict=True)},
        },
        restarts=faults.restarts,
    )
    return result
