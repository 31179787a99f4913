"""A whole marketplace in one process: the roles, an in-memory transport, a data set.

:func:`run_simulation` is what ``deltaml simulate`` runs. It splits a data set
into a held-out test set (the buyer's) and N owners' shares, runs the encrypted
protocol end to end, and compares the result with scikit-learn trained on the
same trainers' rows — the experimenter's view, which no party of the protocol has.

Every party gets a fresh Ethereum account; the aggregator writes the run's
transcript (to ``config.transcript`` and its sealed companion, or in memory) and
the run ends by verifying it with the same checks as ``deltaml verify``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from eth_account import Account

from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.transcript import TranscriptWriter, sealed_path_for
from deltaml.evidence.verify import verify_records, verify_transcript
from deltaml.learning.baseline import (
    baseline_metrics,
    exact_optimum,
    relative_gap,
    training_objective,
)
from deltaml.learning.data import Dataset, load_dataset, split_owners, train_test_split
from deltaml.learning.lda import Multinomial
from deltaml.learning.models import ModelType, Standardization, raw_coefficients
from deltaml.learning.standardize import impute_with
from deltaml.ledger.payouts import MAX_PARTICIPANTS, scale_metric
from deltaml.marketplace import OnChainRequest
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.spec import FIELDS, check_field, check_solver
from deltaml.roles import Aggregator, DataOwner, ModelBuyer
from deltaml.roles.aggregator import RoundRecord, split_roles
from deltaml.roles.buyer import Seats
from deltaml.simulation_exact import disclose_exact
from deltaml.simulation_multiclass import (
    check_multiclass,
    multiclass_figures,
    multiclass_test_metrics,
)
from deltaml.simulation_result import SimulationResult as SimulationResult
from deltaml.transport import Transport
from deltaml.transport.processes import party_transport

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

DEFAULT_ROUNDS: int = FIELDS["rounds"].default
DEFAULT_DEPOSIT_WEI: int = FIELDS["deposit_wei"].default
TASK_MODELS = {"regression": "linear", "classification": "logistic"}
SOLVERS = ("admm", "exact")


@dataclass(frozen=True)
class SimulationConfig:
    dataset: str = "diabetes"
    target: str | None = None
    owners: int = 5
    model: str | None = None  # default: by the data set's task
    key_bits: int = 2048
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    split_by: str | None = None
    eval_every: int = FIELDS["eval_every"].default
    test_fraction: float = 0.2
    l2: float | None = None
    rho: float = FIELDS["rho"].default
    relaxation: float = FIELDS["relaxation"].default
    precision_bits: int = FIELDS["precision_bits"].default
    contributions: bool = FIELDS["contributions"].default
    metric_noise: float = FIELDS["metric_noise"].default
    #: ``"rotation"`` or ``"gram"`` (:mod:`deltaml.roles.forms`).
    metric_protocol: str = FIELDS["metric_protocol"].default
    #: Stop once the validation metric is this many percent below the initial one (0: off).
    target_improvement: float = FIELDS["target_improvement"].default
    #: Go on without a silent trainer while this many remain (see ``TrainingSpec``).
    min_trainers: int = FIELDS["min_trainers"].default
    allow_test_keys: bool = False
    #: The buyer's payment in wei, split by the payment rule at the end.
    deposit_wei: int = DEFAULT_DEPOSIT_WEI
    #: Where to write the public transcript (its sealed ciphertexts go next to it);
    #: ``None`` keeps both in memory.
    transcript: str | None = None
    #: Verify the transcript at the end of the run.
    verify: bool = True
    #: Escrow and settle on a chain: the embedded one, or ``chain_url``.
    chain: bool = True
    chain_url: str | None = None
    #: ``"admm"``: the iterative protocol; ``"exact"``: the one-shot exact solve over ℤₙ
    #: with the key holder (:mod:`deltaml.roles.exact`).
    solver: str = FIELDS["solver"].default
    #: ``solver="exact"``: the buyer then publishes its model in the transcript (what a
    #: dispute does), so that verification checks ``H·w = g`` itself.
    disclose_model: bool = False
    #: Processes answering the owners: 1 keeps them in this process; ``None`` picks by
    #: the cores and the owners (:func:`deltaml.transport.processes.auto_workers`).
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise DeltaMLValueError(f"--solver must be one of {', '.join(SOLVERS)}")
        check_solver(
            {
                "solver": self.solver,
                "target_improvement": self.target_improvement,
                "metric_protocol": self.metric_protocol,
                "metric_noise": self.metric_noise,
            }
        )
        if self.workers is not None and self.workers < 1:
            raise DeltaMLValueError("--workers must be at least 1")
        if self.owners < 2:
            raise DeltaMLValueError("--owners must be at least 2 (one trainer and one validator)")
        # The training fields' types and ranges are the request spec's (a SpecError).
        for name in (
            "rounds",
            "eval_every",
            "l2",
            "rho",
            "relaxation",
            "precision_bits",
            "metric_noise",
            "metric_protocol",
            "target_improvement",
        ):
            check_field(name, getattr(self, name))
        if self.deposit_wei < 0:
            raise DeltaMLValueError("--deposit-wei must not be negative")
        if self.chain and self.deposit_wei < 1:
            raise DeltaMLValueError("--deposit-wei must be at least 1 to escrow it on a chain")
        if self.chain and self.owners > MAX_PARTICIPANTS:
            raise DeltaMLValueError(
                f"the contract seats at most {MAX_PARTICIPANTS} owners per request; "
                "use --no-chain for larger simulations"
            )


def owner_ids(n: int) -> list[str]:
    width = len(str(n))
    return [f"owner-{i + 1:0{width}d}" for i in range(n)]


def load_data(config: SimulationConfig) -> Dataset:
    """The data set ``config`` names, as :func:`run_simulation` reads it."""
    task = "classification" if config.model == "logistic" else None
    return load_dataset(config.dataset, target=config.target, task=task, multiclass=True)


def run_simulation(
    config: SimulationConfig,
    progress: Callable[[RoundRecord], None] | None = None,
    transport_wrapper: Callable[[Transport], Transport] | None = None,
    data: Dataset | None = None,
) -> SimulationResult:
    """Run the encrypted protocol on ``config`` and measure it against the centralized
    optimum (``data``: the data set already read by :func:`load_data`)."""
    dataset = load_data(config) if data is None else data
    model_name = config.model or TASK_MODELS[dataset.task]
    train, test = train_test_split(dataset, config.test_fraction, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed, by=config.split_by)
    return simulate_shares(
        config, model_name, dataset.task, shares, test, progress, transport_wrapper
    )


def simulate_shares(
    config: SimulationConfig,
    model_name: str,
    task: str,
    shares: list[Dataset],
    test: Dataset | None,
    progress: Callable[[RoundRecord], None] | None = None,
    transport_wrapper: Callable[[Transport], Transport] | None = None,
    accounts: Mapping[str, LocalAccount] | None = None,
) -> SimulationResult:
    """The protocol on shares that are already dealt out (used by benchmarks too).

    ``accounts`` (party id → account) replaces the fresh accounts of the named parties.
    """
    classes = shares[0].classes if model_name == "logistic" else None
    n_classes = len(classes) if classes is not None and len(classes) > 2 else 0
    if n_classes:
        check_multiclass(n_classes, config.solver, config.chain, config.contributions)
    spec = TrainingSpec(
        model=model_name,
        rounds=config.rounds,
        l2=config.l2,
        rho=config.rho,
        relaxation=config.relaxation,
        precision_bits=config.precision_bits,
        eval_every=config.eval_every,
        split_seed=config.seed,
        contributions=config.contributions,
        metric_noise=config.metric_noise,
        metric_protocol=config.metric_protocol,
        target_improvement=config.target_improvement,
        min_trainers=config.min_trainers,
        deposit_wei=config.deposit_wei,
        solver=config.solver,
        n_classes=n_classes,
        impute=any(s.gaps for s in shares),
    )
    ids = owner_ids(len(shares))
    given = dict(accounts or {})
    account = {pid: given.get(pid) or Account.create() for pid in ["buyer", "aggregator", *ids]}
    k0 = time.perf_counter()
    buyer = ModelBuyer(
        "buyer",
        spec,
        config.key_bits,
        allow_test_keys=config.allow_test_keys,
        account=account["buyer"],
    )
    keygen_seconds = time.perf_counter() - k0
    buyer.model.check_target(shares[0].y) if task == "classification" else None
    owners = {
        oid: DataOwner(
            oid,
            share.X,
            share.y,
            committed_key=key_fingerprint(buyer.public_key),
            account=account[oid],
            allow_test_keys=config.allow_test_keys,
            buyer=buyer.address,
        )
        for oid, share in zip(ids, shares, strict=True)
    }
    # The buyer checks the lineage of what it decrypts against the seats (on a chain,
    # the contract's): the public split of the owners, with their addresses.
    seated = split_roles(ids, spec.trainer_fraction, spec.split_seed)
    buyer.seats = Seats.of(*seated, {pid: str(a.address) for pid, a in account.items()})
    addresses = {pid: str(a.address) for pid, a in account.items()}
    n_features = shares[0].n_features

    on_chain = None
    if config.chain:
        trainers, validators = split_roles(ids, spec.trainer_fraction, spec.split_seed)
        # an arbiter (resolving disputes) is created by OnChainRequest; every
        # owner joins with its own account to this spec and the buyer's key
        on_chain = OnChainRequest(config.chain_url, account)
        on_chain.open(
            config.deposit_wei,
            dataclasses.asdict(spec),
            trainers,
            validators,
            key_hash=key_fingerprint(buyer.public_key),
        )

    with (
        party_transport(
            [buyer], list(owners.values()), config.workers, transport_wrapper
        ) as transport,
        _transcript_writer(config.transcript) as writer,
    ):
        writer.chain = on_chain.binding() if on_chain is not None else None
        aggregator = Aggregator(
            transport,
            buyer.party_id,
            ids,
            account=account["aggregator"],
            addresses=addresses,
            transcript=writer,
        )
        t0 = time.perf_counter()
        record = aggregator.train(
            spec,
            buyer.public_key,
            buyer.initial_model(n_features + 1),
            n_features,
            include_target=(task == "regression"),
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        if config.solver == "exact" and config.disclose_model:
            disclose_exact(aggregator, buyer, writer)
            record.transcript_head = writer.head
    assert buyer.weights is not None and buyer.stats is not None
    verification = None
    v0 = time.perf_counter()
    if config.verify:
        if config.transcript is not None:
            verification = verify_transcript(config.transcript)
        else:
            verification = verify_records(writer.records, writer.sealed_blobs)
    verify_seconds = time.perf_counter() - v0
    settlement = None
    if on_chain is not None:
        assert record.payouts is not None
        final = record.rounds[-1].metric
        assert record.initial_metric is not None and final is not None
        settlement = on_chain.close(
            metrics={
                r.round: scale_metric(r.metric) for r in record.rounds if r.metric is not None
            },
            initial_metric=scale_metric(record.initial_metric),
            final_metric=scale_metric(final),
            contribution_weights=record.contribution_weights,
            evidence_hash=bytes.fromhex(record.transcript_head),
            evidence_verified=verification is None or verification.ok,
            expected=record.payouts,
            trainers=record.trainers,
            validators=record.validators,
        )

    trainer_shares = [filled(shares[ids.index(oid)], buyer.stats) for oid in record.trainers]
    test = filled(test, buyer.stats) if test is not None else None
    x_train = np.concatenate([s.X for s in trainer_shares])
    y_train = np.concatenate([s.y for s in trainer_shares])
    intercept: float | np.ndarray
    if isinstance(buyer.model, Multinomial):
        gap, coef, intercept = multiclass_figures(
            buyer.model, buyer.stats, trainer_shares, buyer.weights
        )
    else:
        gap = objective_gap(buyer.model, buyer.stats, trainer_shares, buyer.weights)
        coef, intercept = raw_coefficients(buyer.weights, buyer.stats)
    result = SimulationResult(
        config=config,
        model=model_name,
        task=task,
        record=record,
        seconds=seconds,
        keygen_seconds=keygen_seconds,
        objective_gap=gap,
        weights=buyer.weights,
        coefficients=coef,
        intercept=intercept,
        addresses=addresses,
        payouts_wei=(
            record.payouts.by_party(record.trainers, record.validators, aggregator.party_id)
            if record.payouts
            else {}
        ),
        refund_wei=record.payouts.refund if record.payouts else 0,
        transcript=config.transcript,
        verification=verification,
        verify_seconds=verify_seconds,
        settlement=settlement,
        features=shares[0].feature_names,
        target=shares[0].target_name,
        classes=shares[0].classes,
        impute_means=(
            None if buyer.stats.impute_means is None else buyer.stats.impute_means.tolist()
        ),
    )
    if test is not None and n_classes:
        result.test = multiclass_test_metrics(result.trained_model(), x_train, y_train, test)
    elif test is not None:
        result.test, result.baseline_note = baseline_metrics(
            buyer.model, buyer.stats, buyer.weights, x_train, y_train, test.X, test.y
        )
    return result


def filled(share: Dataset, stats: Standardization) -> Dataset:
    """``share`` with its empty cells filled with the published means (as its owner and
    the buyer's model fill them), for measuring against centralized baselines."""
    if not share.gaps or stats.impute_means is None:
        return share
    x = impute_with(share.X, stats.impute_means)
    return dataclasses.replace(share, X=x, gaps=False)


@contextlib.contextmanager
def _transcript_writer(path: str | None) -> Iterator[TranscriptWriter]:
    """A writer to ``path`` and its sealed companion, or one that keeps everything in memory."""
    if path is None:
        yield TranscriptWriter(keep=True)
        return
    public_path = Path(path)
    try:
        public_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            public_path.open("w", encoding="utf-8") as public,
            sealed_path_for(public_path).open("w", encoding="utf-8") as sealed,
        ):
            os.chmod(sealed.name, 0o600)  # ciphertexts the buyer must never see
            yield TranscriptWriter(public, sealed, keep=False)
    except OSError as exc:
        raise DeltaMLValueError(f"{public_path}: cannot write the transcript ({exc})") from None


def objective_gap(
    model: ModelType, stats: Standardization, trainer_shares: list[Dataset], weights: np.ndarray
) -> float:
    """``(f(w) − f*) / |f*|`` for the training objective on the trainers' rows, against
    its exact optimum (see :mod:`deltaml.learning.baseline`)."""
    x = np.concatenate([s.X for s in trainer_shares])
    y = np.concatenate([s.y for s in trainer_shares])
    best = exact_optimum(model, stats, x, y)
    return relative_gap(training_objective(model, stats, x, y, weights), best.objective)


def test_metrics(
    model: ModelType,
    stats: Standardization,
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    test: Dataset,
) -> dict[str, float]:
    """Test metrics of our model next to the exact optimum's and scikit-learn's default,
    trained on the same rows (see :func:`deltaml.learning.baseline.baseline_metrics`)."""
    return baseline_metrics(model, stats, weights, x_train, y_train, test.X, test.y)[0]
