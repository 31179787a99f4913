"""The model buyer's node: holds the Paillier private key and pays.

``deltaml buyer serve --aggregator URL`` creates requests (from a spec file via
``deltaml buyer request SPEC.yaml``, or its local API), escrows the payment on
the contract, and on a background thread answers what the protocol asks of it
— the statistics, refreshes, metrics, contributions and the final model, each
through :class:`deltaml.roles.ModelBuyer`, and only as many as the request's
spec allows. When the aggregator reports a request finished it checks the
public transcript (:func:`deltaml.evidence.verify.verify_transcript`) and
approves the settlement only if it verifies; then it withdraws its refund.

The private key is kept encrypted at rest (scrypt + AES-GCM under the node's
password) in the node's own database; the decrypted model can be downloaded and
used as a :class:`deltaml.estimator.TrainedModel`.

Here: the node, its requests and its protocol work. The keys at rest are in
:mod:`.keys`, the settlement thread in :mod:`.settlement`, the local API in :mod:`.api`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaml.crypto import generate_keypair
from deltaml.crypto.paillier import key_fingerprint
from deltaml.crypto.serialization import pack_vectors
from deltaml.errors import (
    DeltaMLError,
    DeltaMLValueError,
    NotFoundError,
    ProtocolError,
    UnsupportedError,
)
from deltaml.estimator import DEFAULT_CLASSES, TrainedModel
from deltaml.evidence.signatures import vector_digest
from deltaml.evidence.transcript import final_model_digest, read_records, record_hash
from deltaml.evidence.verify import VerificationReport, verify_against_chain, verify_transcript
from deltaml.learning.models import raw_coefficients
from deltaml.ledger.base import Ledger, Role
from deltaml.protocol import messages as m
from deltaml.protocol import spec as protocol_spec
from deltaml.protocol.exact_messages import ExactModel
from deltaml.protocol.merkle import SeatBook
from deltaml.protocol.rules import EXACT_ROUND, evaluates, request_hash
from deltaml.protocol.spec import REQUEST_DEFAULTS, REQUEST_FIELDS
from deltaml.protocol.status import SeatRole
from deltaml.roles import ModelBuyer
from deltaml.roles.buyer import Seats
from deltaml.services.buyer.keys import SCRYPT_LOG2_N, open_key, seal_key, sealed_cost
from deltaml.services.buyer.settlement import Settlement
from deltaml.services.party import (
    AggregatorClient,
    AggregatorError,
    WorkLoop,
)
from deltaml.services.store import Store

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

#: How many times the same decryption may be asked again (after an aggregator restart).
MAX_REPEATS = 3

#: The fields of a request spec and their defaults (:mod:`deltaml.protocol.spec`).
SPEC_FIELDS = REQUEST_FIELDS
SPEC_DEFAULTS = REQUEST_DEFAULTS


def parse_request_spec(doc: Any) -> dict[str, Any]:
    """A request spec (from YAML or JSON) checked field by field, with defaults filled in."""
    return protocol_spec.parse_request_spec(doc)


@dataclass
class BuyerConfig:
    account: LocalAccount
    aggregator_url: str
    database_url: str
    work_dir: Path
    #: Encrypts the Paillier private keys at rest.
    key_password: str
    allow_test_keys: bool = False
    poll_seconds: float = 10.0
    chain_url: str | None = None
    #: Approve the settlement once the evidence verifies (otherwise only by hand).
    auto_approve: bool = True
    watch_interval: float = 1.0
    #: Who resolves a dispute, for a request spec that names no ``arbiter``.
    arbiter: str = ""


class BuyerNode:
    def __init__(self, config: BuyerConfig, ledger_factory: Any = None) -> None:
        self.config = config
        self.account = config.account
        self.address = str(config.account.address)
        self.store = Store(config.database_url)
        self.client = AggregatorClient(config.aggregator_url, config.account)
        self.loop = WorkLoop(self.client, self.handle, config.poll_seconds)
        self._ledger_factory = ledger_factory
        self.ledger: Ledger | None = None
        self.aggregator_address = ""
        self.roles: dict[int, ModelBuyer] = {}
        self._asked: dict[tuple[int, str, int], int] = {}
        self._lock = threading.Lock()
        self._creating = threading.Lock()
        self.settlement = Settlement(self)

    def start(self) -> None:
        info = self.client.wait_ready()
        self.aggregator_address = info["address"]
        if self._ledger_factory is not None:
            self.ledger = self._ledger_factory(info)
        elif info.get("contract") and (self.config.chain_url or info.get("chain_url")):
            from deltaml.ledger import Web3Ledger, connect

            url = self.config.chain_url or info["chain_url"]
            self.ledger = Web3Ledger(connect(url), info["contract"], self.account)
        if self.ledger is not None and not self.ledger.has_role(self.address, Role.BUYER):
            self.ledger.register(Role.BUYER)
        self.loop.start()
        self.settlement.start()

    def stop(self) -> None:
        self.settlement.stop()
        self.loop.stop()
        self.client.close()

    # -- requests -------------------------------------------------------------------
    def create_request(self, doc: Any) -> dict[str, Any]:
        req_spec = parse_request_spec(doc)
        spec = m.TrainingSpec(
            model=req_spec["model"],
            rounds=req_spec["rounds"],
            l2=req_spec["l2"],
            eval_every=req_spec["eval_every"],
            split_seed=req_spec["split_seed"],
            contributions=req_spec["contributions"],
            metric_noise=float(req_spec["metric_noise"]),
            metric_protocol=req_spec["metric_protocol"],
            target_improvement=float(req_spec["target_improvement"]),
            deposit_wei=req_spec["deposit_wei"],
            min_trainers=req_spec["min_trainers"],
            impute=protocol_spec.imputes(req_spec),
            solver=req_spec["solver"],
        )
        requirements = {
            "features": list(req_spec["features"]),
            "target": req_spec["target"],
            "min_rows": req_spec["min_rows"],
            "owners": req_spec["owners"],
        }
        if req_spec["classes"] is not None:
            # Every owner codes its target with this pair: classes[1] is the positive class.
            requirements["classes"] = list(req_spec["classes"])
        for name in ("missing", "categorical"):  # a mixed table; absent if empty
            if req_spec[name]:
                requirements[name] = req_spec[name]
        if req_spec["missing"] and not req_spec["missing_indicator"]:
            requirements["missing_indicator"] = False  # absent when true, as before
        arbiter = req_spec["arbiter"] or self.config.arbiter
        protocol_spec.check_field("arbiter", arbiter)
        if self.ledger is not None:
            if not arbiter:
                raise protocol_spec.SpecError(
                    "arbiter",
                    "the request spec needs 'arbiter': the address that resolves a dispute",
                )
            if arbiter.lower() in (self.address.lower(), self.aggregator_address.lower()):
                raise DeltaMLValueError("the arbiter can be neither the buyer nor the aggregator")
            if self.ledger.balance_wei() < spec.deposit_wei:
                raise DeltaMLValueError(
                    f"this account holds less than the deposit ({spec.deposit_wei} wei)"
                )
        public_key, private_key = generate_keypair(
            req_spec["key_bits"], allow_test_keys=self.config.allow_test_keys
        )
        role = ModelBuyer(
            self.address,
            spec,
            keypair=(public_key, private_key),
            account=self.account,
            allow_test_keys=self.config.allow_test_keys,
        )
        initial = role.initial_model(len(protocol_spec.requirement_features(requirements)) + 1)
        # Sealed now: scrypt takes a while, and once the aggregator has the request it
        # may ask for work at once (the role must be found by then).
        sealed = seal_key(private_key, self.config.key_password)
        spec_dict = dataclasses.asdict(spec)
        chain_id = 0
        if self.ledger is not None:
            deadline = self.ledger.now() + int(req_spec["deadline_hours"] * 3600)
            chain_id = self.ledger.create_request(
                self.aggregator_address,
                spec.deposit_wei,
                deadline,
                req_spec["challenge_window_s"],
                request_hash(spec_dict, requirements),
                arbiter=arbiter,
                key_hash=key_fingerprint(public_key),
            )
        sealed = seal_key(private_key, self.config.key_password)
        # Held until the request is stored: the aggregator may ask for work at once.
        with self._creating:
            return self._send_request(
                chain_id, spec_dict, requirements, public_key, initial, role, sealed
            )

    def _send_request(
        self,
        chain_id: int,
        spec_dict: dict[str, Any],
        requirements: dict[str, Any],
        public_key: Any,
        initial: Any,
        role: ModelBuyer,
        sealed: dict[str, str],
    ) -> dict[str, Any]:
        try:
            created = self.client.post(
                "/requests",
                {
                    "chain_request_id": chain_id,
                    "spec": spec_dict,
                    "requirements": requirements,
                    "public_key": public_key.to_dict(),
                    "initial_model": pack_vectors([initial]),
                },
            )
        except AggregatorError as exc:
            if self.ledger is None:
                raise
            raise self._cancel_refused(chain_id, exc) from None
        rid = int(created["id"])
        with self._lock:
            self.roles[rid] = role
        self.store.put(
            "requests",
            str(rid),
            {
                "chain_request_id": chain_id,
                "spec": spec_dict,
                "requirements": requirements,
                "private_key": sealed,
                "created_at": time.time(),
            },
        )
        log.info("request %d created (on chain: %d)", rid, chain_id)
        return {"id": rid, "chain_request_id": chain_id, "status": created["status"]}

    def _cancel_refused(self, cid: int, exc: AggregatorError) -> AggregatorError:
        """The aggregator refused a request already escrowed: cancel it on chain at once
        (the deposit comes back) and record it, so that no deposit is left stranded."""
        assert self.ledger is not None
        record: dict[str, Any] = {"error": str(exc), "at": time.time()}
        try:
            self.ledger.cancel(cid)
            record["cancelled"] = True
            note = "the escrow was cancelled and the deposit returned"
        except DeltaMLError as cancel_error:
            record["cancelled"] = False
            record["cancel_error"] = str(cancel_error)
            note = f"cancelling the escrow failed too ({cancel_error}); cancel it by hand"
        self.store.put("refused", str(cid), record)
        log.warning("on-chain request %d refused by the aggregator; %s", cid, note)
        return AggregatorError(f"{exc}; {note}", exc.status)

    def _role(self, rid: int) -> ModelBuyer:
        if self.store.get("requests", str(rid)) is None:
            with self._creating:  # a request being created now is stored first
                pass
        with self._lock:
            role = self.roles.get(rid)
            if role is not None:
                return role
            saved = self.store.get("requests", str(rid))
            if saved is None:
                raise ProtocolError(f"request {rid} is not one of this buyer's")
            private_key = open_key(saved["private_key"], self.config.key_password)
            if sealed_cost(saved["private_key"]) < SCRYPT_LOG2_N:  # an older, cheaper sealing
                saved["private_key"] = seal_key(private_key, self.config.key_password)
                self.store.put("requests", str(rid), saved)
                log.info("request %d: key re-sealed with scrypt 2**%d", rid, SCRYPT_LOG2_N)
            role = ModelBuyer(
                self.address,
                m.TrainingSpec(**saved["spec"]),
                keypair=(private_key.public_key, private_key),
                account=self.account,
                allow_test_keys=self.config.allow_test_keys,
            )
            role.restore(self.store.get("progress", str(rid), {}))
            self.roles[rid] = role
            return role

    # -- protocol work --------------------------------------------------------------
    def handle(self, rid: int, message: m.Message) -> m.Message:
        role = self._role(rid)
        self._allow(rid, role.spec, message)
        final = message if isinstance(message, m.FinalModel | ExactModel) else None
        if role.seats is None and not isinstance(message, m.FinalModel):
            role.seats = self._seats(rid)  # the exact model's check parts are the seats'
        if final is not None:
            self._check_final_model(rid, final)
        reply = role.handle(message)
        self.store.put("progress", str(rid), role.snapshot())
        if final is not None:
            rounds = final.rounds if isinstance(final, m.FinalModel) else EXACT_ROUND
            self.store.put("models", str(rid), self._model_json(rid, role, rounds))
            log.info("request %d: final model received", rid)
        return reply

    def _check_final_model(self, rid: int, message: m.FinalModel | ExactModel) -> None:
        """The delivered model must be the one the request's evidence commits to.

        The public transcript names the final model by its digest only (its
        ciphertexts are sealed), and its head is the evidence hash on chain. An
        aggregator that delivers any other vector — a single trainer's state, a
        stale round — is refused: nothing is decrypted. Without a chain there is no
        evidence hash to hold the transcript to, and nothing is checked here.
        """
        if self.ledger is None:
            return
        cid = int(self.saved(rid)["chain_request_id"])
        evidence = self.ledger.request(cid).evidence_hash.hex()
        path = self.config.work_dir / "transcripts" / f"request-{rid}.jsonl"
        records = read_records(path) if path.exists() else []
        if not records or record_hash(records[-1]) != evidence:
            self.verify(rid)  # downloads the transcript the aggregator publishes
            records = read_records(path)
        committed = final_model_digest(records)
        if (
            record_hash(records[-1]) != evidence
            or committed is None
            or committed
            != vector_digest(message.total if isinstance(message, m.FinalModel) else message.model)
        ):
            raise ProtocolError(
                f"request {rid}: the final model is not the one the evidence on chain "
                "commits to; refusing to decrypt it"
            )

    def _seats(self, rid: int) -> Seats:
        """The owners request ``rid`` seats: the aggregator's view, checked against the
        seat root the contract holds (``start``) whenever there is a chain; at least as
        many as the request asked for.

        The buyer checks every vector it decrypts against them (signed by a seat, one
        per seat), so they are bound to the chain whenever there is one.
        """
        saved = self.store.get("requests", str(rid))
        if saved is None:
            raise ProtocolError(f"request {rid} is not one of this buyer's")
        view = self.client.get(f"/requests/{rid}")
        offers = sorted(view.get("offers", []), key=lambda o: str(o["owner"]))
        trainers = [str(o["owner"]) for o in offers if o.get("role") == SeatRole.TRAINER]
        validators = [str(o["owner"]) for o in offers if o.get("role") == SeatRole.VALIDATOR]
        if self.ledger is not None:
            # the contract holds the seats' Merkle root: the aggregator's must hash to it
            cid = int(saved["chain_request_id"])
            state = self.ledger.request(cid)
            root = SeatBook.of(trainers, validators).seat_root(self.ledger.binding(cid))
            if root != state.seat_root:
                raise ProtocolError(
                    f"request {rid}: the aggregator's seats are not the contract's seat root;"
                    " refusing to decrypt"
                )
        wanted = int(saved["requirements"]["owners"])
        if len(trainers) + len(validators) < wanted or not trainers or not validators:
            raise ProtocolError(
                f"request {rid} seats fewer than the {wanted} owners it asked for: "
                "refusing to decrypt"
            )
        return Seats.of(trainers, validators)

    def _allow(self, rid: int, spec: m.TrainingSpec, message: m.Message) -> None:
        """Decrypt only what the protocol of this request asks for, and not over and over."""
        round_ = int(getattr(message, "round", 0))
        if isinstance(message, m.MetricRequest) and not evaluates(round_, spec):
            raise ProtocolError(f"round {round_} has no evaluation in this request's spec")
        if isinstance(message, m.GramRequest) and not spec.contributions:
            raise ProtocolError("this request did not ask for contributions")
        if isinstance(message, m.RefreshRequest | m.MetricRequest | m.DecryptStats | m.GramRequest):
            key = (rid, message.kind, round_)
            self._asked[key] = self._asked.get(key, 0) + 1
            if self._asked[key] > MAX_REPEATS:
                raise ProtocolError(f"{message.kind} for round {round_} asked too many times")

    def _model_json(self, rid: int, role: ModelBuyer, rounds: int) -> dict[str, Any]:
        assert role.weights is not None and role.stats is not None
        saved = self.store.get("requests", str(rid))
        coef, intercept = raw_coefficients(role.weights, role.stats)
        req = saved["requirements"]
        classes = None
        if role.spec.model == "logistic":
            classes = tuple(req.get("classes") or DEFAULT_CLASSES)
        mixed = bool(req.get("missing") or req.get("categorical"))
        table = {k: req.get(k) for k in ("features", "missing", "categorical")} if mixed else None
        if table is not None and role.stats.impute_means is not None:
            table["missing_indicator"] = False
            table["impute_means"] = role.stats.impute_means.tolist()
        return TrainedModel(
            role.spec.model,
            tuple(protocol_spec.requirement_features(req)),
            req["target"],
            coef,
            intercept,
            rounds,
            classes,
            table,
        ).to_json()

    def saved(self, rid: int) -> dict[str, Any]:
        """This buyer's record of request ``rid``; :class:`NotFoundError` if it is not its own."""
        saved: dict[str, Any] | None = self.store.get("requests", str(rid))
        if saved is None:
            raise NotFoundError(f"request {rid} is not one of this buyer's")
        return saved

    def model_json(self, rid: int) -> dict[str, Any]:
        """The trained model as stored (``TrainedModel`` JSON); a 404 until it is here."""
        self.saved(rid)
        data: dict[str, Any] | None = self.store.get("models", str(rid))
        if data is None:
            raise NotFoundError(f"request {rid} has no model yet")
        return data

    def model_onnx(self, rid: int) -> bytes:
        """The trained model as ONNX (a 404 until it is here; a 501 without skl2onnx)."""
        model = TrainedModel.from_json(self.model_json(rid))
        try:
            return model.to_onnx_bytes()
        except DeltaMLValueError as exc:
            raise UnsupportedError(str(exc)) from None

    # -- settlement -----------------------------------------------------------------
    def settle(self, rid: int, approve: bool = True) -> dict[str, Any] | None:
        """Verify, approve or dispute, withdraw (see :meth:`.Settlement.settle`)."""
        return self.settlement.settle(rid, approve)

    def verify(self, rid: int) -> VerificationReport:
        """Download the public transcript and check it against the request on chain.

        With a ledger, the transcript must be the evidence of this buyer's request
        on the contract (:func:`~deltaml.evidence.verify.verify_against_chain`): its
        head the evidence hash posted, its key this buyer's key fingerprint on chain,
        its buyer, aggregator, seats, spec and the numbers posted the request's. A
        transcript re-signed from another run fails, however consistent in itself.
        Without a ledger it is checked only against itself and the head on record.
        """
        folder = self.config.work_dir / "transcripts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"request-{rid}.jsonl"
        self.client.download(f"/requests/{rid}/transcript", path)
        view = self.client.get(f"/requests/{rid}")
        head = view.get("result", {}).get("transcript_head")
        if self.ledger is None:
            return verify_transcript(path, use_sealed=False, expected_head=head)
        cid = int(self.saved(rid)["chain_request_id"])  # what this buyer escrowed
        return verify_against_chain(path, self.ledger, cid, use_sealed=False)

    def status(self) -> list[dict[str, Any]]:
        return [self.overview(int(key), saved) for key, saved in self.store.items("requests")]

    def overview(self, rid: int, saved: dict[str, Any] | None = None) -> dict[str, Any]:
        """The aggregator's public view of one of this buyer's requests, with what only
        the buyer knows: whether the model is here, and the settlement."""
        key = str(rid)
        saved = saved or self.saved(rid)
        try:
            view: dict[str, Any] = self.client.get(f"/requests/{key}")
        except AggregatorError as exc:
            view = {"id": rid, "status": "UNKNOWN", "error": str(exc)}
        view["model_ready"] = self.store.get("models", key) is not None
        view["settlement"] = self.store.get("settlement", key)
        view["chain_request_id"] = saved["chain_request_id"]
        return view

    def cancel(self, rid: int) -> dict[str, Any]:
        """Cancel an OPEN request; the deposit is reclaimed by the settlement thread."""
        self.saved(rid)
        result: dict[str, Any] = self.client.post(f"/requests/{rid}/cancel")
        log.info("request %d cancelled", rid)
        return result

    def withdrawn(self, rid: int, accounts: list[str]) -> dict[str, bool]:
        """Which of ``accounts`` have withdrawn their payment for ``rid`` from the contract."""
        saved = self.store.get("requests", str(rid))
        if self.ledger is None or saved is None:
            return {}
        cid = int(saved["chain_request_id"])
        return {a: self.ledger.has_withdrawn(cid, a) for a in accounts}
