"""The data-owner node: keeps the data on this machine and does its encrypted work.

``deltaml owner serve --data DIR_OR_CSV --aggregator URL`` profiles each CSV
(rows, columns, types, nulls — never a value; no column is assumed to be the
target, a request names it), says each file's problems in plain words, starts
with the files it can use and registers them with the
aggregator and itself on the contract, and then, on a background thread, accepts
or declines the requests offered to it (by its accept policy, or by hand through
its local API), answers the protocol messages of the trainings it is in with a
:class:`deltaml.roles.DataOwner`, and withdraws what it earned once a request is
settled. Its history and earnings are kept in its own database.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaml.errors import DataError, DeltaMLError, DeltaMLValueError, ProtocolError
from deltaml.evidence.verify import verify_against_chain, verify_transcript
from deltaml.learning.data import Dataset
from deltaml.ledger.base import Ledger, RequestStatus, Role
from deltaml.protocol.messages import Message
from deltaml.protocol.status import OfferStatus, Status
from deltaml.roles import DataOwner
from deltaml.services.owner_data import (  # select_columns: re-exported
    dataset_profile,
    find_csvs,
    request_dataset,
    select_columns,  # noqa: F401
)
from deltaml.services.owner_join import join_offer
from deltaml.services.party import (
    AggregatorClient,
    AggregatorError,
    WorkLoop,
    approve_or_dispute,
    seat_book,
)
from deltaml.services.serve import guarded
from deltaml.services.store import Store

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


log = logging.getLogger(__name__)

ACCEPT_POLICIES = ("all", "manual")
#: A dataset added through the web UI: letters, digits, ``.``, ``_``, ``-``.
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass
class OwnerConfig:
    account: LocalAccount
    data: list[Path]
    aggregator_url: str
    database_url: str
    work_dir: Path
    name: str = "data owner"
    #: ``all``: accept every request its data matches (and whose offered reward is at
    #: least ``min_reward_wei``); ``manual``: wait for a decision through the API.
    accept: str = "all"
    min_reward_wei: int = 0
    #: Withdraw each payment as soon as the contract settles (otherwise only by hand).
    auto_withdraw: bool = True
    poll_seconds: float = 10.0
    #: Connect to this chain instead of the one the aggregator names.
    chain_url: str | None = None
    offers_interval: float = 1.0
    datasets: dict[str, Path] = field(default_factory=dict)


class OwnerNode:
    def __init__(self, config: OwnerConfig, ledger_factory: Any = None) -> None:
        self.config = config
        self.account = config.account
        self.address = str(config.account.address)
        found = dict(config.datasets) or find_csvs(config.data)
        for path in sorted(self.uploads_dir.glob("*.csv")):
            found.setdefault(path.stem, path)
        #: Files that are not a table at all, by name: the one-line reason (not offered).
        self.unusable: dict[str, str] = {}
        self.datasets: dict[str, Path] = {}
        self.profiles: list[dict[str, Any]] = []
        for name, path in found.items():
            try:
                prof = dataset_profile(name, path)
            except DataError as exc:
                self.unusable[name] = str(exc)
                log.warning("dataset %s is not offered: %s", name, exc)
                continue
            for problem in prof["problems"]:
                log.warning("dataset %s: %s", name, problem)
            self.datasets[name] = path
            self.profiles.append(prof)
        self.store = Store(config.database_url)
        self.client = AggregatorClient(config.aggregator_url, config.account)
        self.loop = WorkLoop(self.client, self.handle, config.poll_seconds)
        self._ledger_factory = ledger_factory
        self.ledger: Ledger | None = None
        self.aggregator_address = ""
        self.roles: dict[int, DataOwner] = {}
        self.offers: list[dict[str, Any]] = []
        #: Per request: its dataset as read for it, and what reading it did in plain words
        #: (empty cells filled, unknown levels counted as other; counts, never values).
        self._prepared: dict[int, Dataset] = {}
        self.request_notes: dict[int, list[str]] = {}
        self._results: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="offers", daemon=True)
        self._lock = threading.Lock()

    # -- start and stop -------------------------------------------------------------
    def start(self) -> None:
        info = self.client.wait_ready()
        self.aggregator_address = str(info.get("address", ""))
        self.ledger = self._connect_ledger(info)
        if self.ledger is not None and not self.ledger.has_role(self.address, Role.DATA_OWNER):
            self.ledger.register(Role.DATA_OWNER)
        self.register()
        self.loop.start()
        self._thread.start()

    def register(self) -> None:
        """Tell the aggregator who this owner is and the profiles of its datasets."""
        self.client.post(
            "/owners",
            {
                "name": self.config.name,
                "datasets": self.profiles,
                "min_reward_wei": self.config.min_reward_wei,
            },
        )
        log.info("registered %d dataset(s) as %s", len(self.profiles), self.address)

    @property
    def uploads_dir(self) -> Path:
        """Where the datasets added through the web UI are kept (read again at start)."""
        return self.config.work_dir / "datasets"

    def add_dataset(self, name: str, filename: str, content: bytes) -> dict[str, Any]:
        """Check a CSV, keep it as dataset ``name`` (default: the file's name) and offer it.

        Raises :class:`DataError` naming ``filename`` and the first problem in one
        line if any column has one (files found at start are offered with what they
        can, since nobody is there to fix them); nothing is kept then.
        """
        shown = Path(filename).name or "the file"
        if not name:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(shown).stem).lstrip("._-") or "data"
        if not DATASET_NAME.fullmatch(name):
            raise DeltaMLValueError(
                "dataset name: use at most 100 letters, digits, '.', '_' or '-', "
                "starting with a letter or a digit"
            )
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if name in self.datasets:
                raise DeltaMLValueError(f"dataset name {name!r} is taken: choose another name")
            partial = self.uploads_dir / f".{name}.upload"
            partial.write_bytes(content)
            try:
                found = dataset_profile(name, partial)
                if found["problems"]:
                    # The owner is here to fix the file: it is kept only when all usable.
                    raise DataError(f"{partial}: {found['problems'][0]}")
            except DataError as exc:
                partial.unlink()
                raise DataError(str(exc).replace(str(partial), shown, 1)) from None
            path = self.uploads_dir / f"{name}.csv"
            partial.replace(path)
            self.datasets[name] = path
            self.profiles = [*self.profiles, found]
        log.info("dataset %s added: %d rows", name, found["rows"])
        try:
            self.register()
        except AggregatorError as exc:
            raise AggregatorError(
                f"dataset {name} was kept, but the aggregator could not be told ({exc}); "
                "it is offered again at the next start",
                exc.status,
            ) from None
        return found

    def _connect_ledger(self, info: dict[str, Any]) -> Ledger | None:
        if self._ledger_factory is not None:
            return self._ledger_factory(info)
        url = self.config.chain_url or info.get("chain_url")
        if not info.get("contract") or not url:
            return None
        from deltaml.ledger import Web3Ledger, connect

        return Web3Ledger(connect(url), info["contract"], self.account)

    def stop(self) -> None:
        self._stop.set()
        self.loop.stop()
        self.client.close()

    # -- offers and earnings ----------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            guarded("offers", self.refresh_offers)
            self._stop.wait(self.config.offers_interval)

    def refresh_offers(self) -> list[dict[str, Any]]:
        offers: list[dict[str, Any]] = self.client.get("/offers")
        self.offers = offers
        for offer in offers:
            rid = int(offer["request_id"])
            self.store.put("offers", str(rid), offer)
            if (
                offer["status"] == OfferStatus.READY
                and self.config.accept == "all"
                and int(offer["offered_reward_wei"]) >= self.config.min_reward_wei
                and self.store.get("refused", str(rid)) is None
            ):
                try:
                    self.decide(rid, True)
                except (ProtocolError, DataError) as exc:  # never join: not committed, or
                    # the data cannot be read as the request needs (file, column, row)
                    self.store.put("refused", str(rid), {"reason": str(exc), "at": time.time()})
                    log.warning("request %d not joined: %s", rid, exc)
                    if isinstance(exc, DataError):
                        guarded(
                            f"request {rid}: decline", functools.partial(self.decide, rid, False)
                        )
            if offer["status"] in (OfferStatus.FINISHED, OfferStatus.FAILED, OfferStatus.CANCELLED):
                self.roles.pop(rid, None)
                self._prepared.pop(rid, None)
            if offer["status"] == OfferStatus.FINISHED:
                guarded(f"request {rid}: review", functools.partial(self.review, rid))
            if offer["status"] == OfferStatus.FINISHED and self.config.auto_withdraw:
                self.withdraw(rid)
        return offers

    def _offer(self, rid: int) -> dict[str, Any]:
        offer = next((o for o in self.offers if int(o["request_id"]) == rid), None)
        if offer is None:
            offer = next((o for o in self.refresh_offers() if int(o["request_id"]) == rid), None)
        if offer is None:
            raise ProtocolError(f"request {rid} was not offered to this owner")
        return offer

    def join(self, rid: int) -> dict[str, Any]:
        """Consent on chain, with this owner's own account, to exactly the request the
        aggregator offers: only if its spec hashes to the committed spec hash and its
        Paillier key is the committed key (so no other key is ever used for its data).
        Returns what was joined (also kept in this node's database)."""
        offer = self._offer(rid)
        if self.ledger is None:
            return {}
        state, spec_hash, key_hash = join_offer(self.ledger, rid, offer, self.aggregator_address)
        cid = int(offer["chain_request_id"])
        joined = {
            "chain_request_id": cid,
            "spec_hash": spec_hash.hex(),
            "key_hash": key_hash.hex(),
            "arbiter": state.arbiter,
            "at": time.time(),
        }
        self.store.put("joined", str(rid), joined)
        log.info("request %d: joined on chain (request %d)", rid, cid)
        return joined

    def decide(self, rid: int, accept: bool) -> dict[str, Any]:
        if accept:
            offer = self._offer(rid)
            if offer.get("dataset"):  # read it as the request needs: a DataError before consent
                self.dataset_for(rid, offer)
            self.join(rid)
        result: dict[str, Any] = self.client.post(
            f"/requests/{rid}/{'accept' if accept else 'decline'}"
        )
        self.store.put("decisions", str(rid), {"accept": accept, "at": time.time()})
        log.info("request %d: %s", rid, "accepted" if accept else "declined")
        return result

    def verify(self, rid: int, chain_request_id: int | None = None) -> Any:
        """Download the public transcript and verify it: against the contract's record
        of ``chain_request_id`` when this node has a chain (the check
        :meth:`BuyerNode.verify` makes), else against the head the aggregator names."""
        folder = self.config.work_dir / "transcripts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"request-{rid}.jsonl"
        self.client.download(f"/requests/{rid}/transcript", path)
        if self.ledger is not None and chain_request_id is not None:
            return verify_against_chain(path, self.ledger, chain_request_id, use_sealed=False)
        view = self.client.get(f"/requests/{rid}")
        return verify_transcript(
            path, use_sealed=False, expected_head=view["result"]["transcript_head"]
        )

    def review(self, rid: int) -> dict[str, Any] | None:
        """Once the result of a request this owner sits in is on chain: verify the public
        transcript and the contract's record of it, then approve the result on chain,
        or dispute it with the hash of the reason. Done once per request."""
        if self.ledger is None or self.store.get("reviews", str(rid)) is not None:
            return None
        view = self.client.get(f"/requests/{rid}")
        if view["status"] != Status.FINISHED:
            return None
        cid = int(view["chain_request_id"])
        state = self.ledger.request(cid)
        seats = seat_book(view.get("result"))
        if self.ledger.seat_of(cid, seats=seats) is None:
            return None
        if state.status != RequestStatus.FINISHED or self.ledger.has_approved(cid):
            review = {"approved": self.ledger.has_approved(cid), "note": state.status.name}
            self.store.put("reviews", str(rid), review)
            return review
        review = approve_or_dispute(
            self.ledger,
            cid,
            self.verify(rid, cid),
            view["result"]["transcript_head"],
            who="this owner",
            seats=seats,
        )
        self.store.put("reviews", str(rid), review)
        log.info("request %d: result %s", rid, "approved" if review.get("approved") else "disputed")
        return review

    def withdraw(self, rid: int) -> int:
        """Withdraw this owner's credit for request ``rid`` once the contract has settled it."""
        if self.ledger is None or self.store.get("earnings", str(rid)) is not None:
            return 0
        view = self.client.get(f"/requests/{rid}")
        cid = int(view["chain_request_id"])
        state = self.ledger.request(cid)
        if state.status != RequestStatus.SETTLED or self.ledger.has_withdrawn(cid):
            return 0
        seats = seat_book(view.get("result"))
        if self.ledger.claimable(cid, seats=seats) == 0:
            self.store.put("earnings", str(rid), {"wei": "0", "at": time.time()})
            return 0
        amount = self.ledger.withdraw(cid, seats=seats)
        self.store.put("earnings", str(rid), {"wei": str(amount), "at": time.time()})
        log.info("request %d: withdrew %d wei", rid, amount)
        return amount

    def earnings(self) -> dict[str, Any]:
        per = {k: int(v["wei"]) for k, v in self.store.items("earnings")}
        return {
            "total_wei": str(sum(per.values())),
            "by_request": {k: str(v) for k, v in per.items()},
        }

    def _result(self, rid: int) -> dict[str, Any]:
        """The final result of a finished request (it never changes: fetched once)."""
        if rid not in self._results:
            view = self.client.get(f"/requests/{rid}")
            if view["status"] != Status.FINISHED:
                return {}
            self._results[rid] = view.get("result") or {}
        return self._results[rid]

    def pending_earnings(self) -> int:
        """Wei earned in finished requests and not withdrawn yet."""
        withdrawn = {k for k, _ in self.store.items("earnings")}
        total = 0
        for offer in list(self.offers):
            rid = int(offer["request_id"])
            if offer["status"] != OfferStatus.FINISHED or str(rid) in withdrawn:
                continue
            try:
                total += int((self._result(rid).get("payouts_wei") or {}).get(self.address, 0))
            except DeltaMLError as exc:
                log.warning("request %d: %s", rid, exc)
        return total

    def payment(self, rid: int, view: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where this owner's payment for request ``rid`` stands, in plain words too
        (``view``: the aggregator's view of it, if the caller has just fetched it)."""
        saved = self.store.get("earnings", str(rid))
        if saved is not None:
            return {
                "state": "withdrawn",
                "withdrawn_wei": saved["wei"],
                "claimable_wei": "0",
                "explanation": "Withdrawn.",
            }
        view = view or self.client.get(f"/requests/{rid}")
        out = {"state": "", "withdrawn_wei": "0", "claimable_wei": "0", "explanation": ""}
        if view["status"] in (Status.FAILED, Status.CANCELLED):
            status = view["status"].lower()
            return {**out, "state": "none", "explanation": f"Nothing to withdraw: {status}."}
        if view["status"] != Status.FINISHED:
            return {
                **out,
                "state": "running",
                "explanation": "Nothing to withdraw until the training has finished.",
            }
        if self.ledger is None:
            return {**out, "state": "none", "explanation": "This marketplace has no contract."}
        cid = int(view["chain_request_id"])
        state = self.ledger.request(cid)
        if state.status == RequestStatus.FINISHED:
            return {
                **out,
                "state": "awaiting_approval",
                "explanation": "The training has finished; you can withdraw once the buyer "
                "and every participant approve the result, or its challenge window passes.",
            }
        if state.status == RequestStatus.DISPUTED:
            return {
                **out,
                "state": "awaiting_approval",
                "explanation": "The result is disputed: its arbiter "
                f"({state.arbiter}) decides whether the payments stand.",
            }
        if state.status != RequestStatus.SETTLED:
            return {**out, "state": "none", "explanation": f"The request is {state.status.name}."}
        if self.ledger.has_withdrawn(cid):
            return {**out, "state": "withdrawn", "explanation": "Withdrawn."}
        claimable = self.ledger.claimable(cid, seats=seat_book(view.get("result")))
        if not claimable:
            return {**out, "state": "none", "explanation": "Nothing is owed to you here."}
        return {
            **out,
            "state": "claimable",
            "claimable_wei": str(claimable),
            "explanation": "Settled: ready to withdraw.",
        }

    # -- protocol work --------------------------------------------------------------
    def handle(self, rid: int, message: Message) -> Message:
        with self._lock:
            role = self.roles.get(rid)
            if role is None:
                role = self.roles[rid] = self._role_for(rid)
        return role.handle(message)

    def _role_for(self, rid: int) -> DataOwner:
        offer = next((o for o in self.offers if int(o["request_id"]) == rid), None)
        if offer is None:
            offer = next((o for o in self.refresh_offers() if int(o["request_id"]) == rid), None)
        if offer is None or not offer.get("dataset"):
            raise ProtocolError(f"request {rid} was not accepted by this owner")
        ds = self.dataset_for(rid, offer)
        key = self._committed_key(rid, offer)
        return DataOwner(
            self.address, ds.X, ds.y, committed_key=key, account=self.account,
            buyer=self._buyer_of(rid),
        )  # fmt: skip

    def _buyer_of(self, rid: int) -> str | None:
        """The address of request ``rid``'s buyer: the contract's when there is one, else
        the aggregator's word (a run without a chain trusts it for the rest too)."""
        view = self.client.get(f"/requests/{rid}")
        if self.ledger is not None and view.get("chain_request_id") is not None:
            return str(self.ledger.request(int(view["chain_request_id"])).buyer)
        buyer = view.get("buyer")
        return str(buyer) if isinstance(buyer, str) else None

    def dataset_for(self, rid: int, offer: dict[str, Any]) -> Dataset:
        """The offered dataset as request ``rid`` needs it (read once; notes kept)."""
        if rid not in self._prepared:
            path = self.datasets.get(str(offer.get("dataset") or ""))
            if path is None:
                raise ProtocolError(f"dataset {offer.get('dataset')!r} is no longer here")
            model = str(offer.get("spec", {}).get("model", "linear"))
            ds, notes = request_dataset(path, offer["requirements"], model)
            self._prepared[rid], self.request_notes[rid] = ds, notes
            for note in notes:
                log.info("request %d, dataset %s: %s", rid, offer["dataset"], note)
        return self._prepared[rid]

    def _committed_key(self, rid: int, offer: dict[str, Any]) -> bytes:
        """The fingerprint of the only key this owner encrypts under for request ``rid``.

        The buyer's commitment on chain (``keyHash``) when the contract records one;
        otherwise the fingerprint offered with the request, pinned for its whole run.
        """
        if self.ledger is not None:
            view = self.client.get(f"/requests/{rid}")
            state = self.ledger.request(int(view["chain_request_id"]))
            on_chain = getattr(state, "key_hash", b"")
            if on_chain and any(on_chain):
                return bytes(on_chain)
        offered = offer.get("key_fingerprint")
        if isinstance(offered, str) and re.fullmatch(r"[0-9a-f]{64}", offered):
            return bytes.fromhex(offered)
        raise ProtocolError(f"request {rid} names no key to encrypt under")
