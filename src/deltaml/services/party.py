"""What the owner and buyer nodes share: a signed client of the aggregator and the work loop.

A node never opens a port to the aggregator: it long-polls ``GET /work`` for
the protocol messages queued for it, answers each with its role object, and
posts the reply (or, if it cannot do the work, a one-line reason).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.ledger.base import RequestStatus
from deltaml.protocol.merkle import SeatBook
from deltaml.protocol.messages import Message
from deltaml.services import wire
from deltaml.services.auth import SignedAuth
from deltaml.services.http_errors import install_error_handlers
from deltaml.services.serve import client_tls, guard_bodies

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.evidence.verify import VerificationReport
    from deltaml.ledger.base import Ledger

log = logging.getLogger(__name__)

#: A node's answer to one protocol message of one request.
Handler = Callable[[int, Message], Message]


class AggregatorError(DeltaMLError):
    """The aggregator refused a call or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def error_detail(response: httpx.Response) -> str:
    """The one-line reason a service gave for refusing a call (its ``detail``)."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return str(detail)


#: The most a node downloads from the aggregator in one answer (a public transcript).
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024


class AggregatorClient:
    """Signed calls to the aggregator at ``url`` as ``account``."""

    def __init__(self, url: str, account: LocalAccount, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.account = account
        # https: certificates checked against --ca ($DELTAML_CA_FILE) or the system's store.
        self.http = httpx.Client(
            base_url=self.url,
            auth=SignedAuth(account),
            timeout=timeout,
            trust_env=False,
            verify=client_tls(),
        )

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AggregatorError(f"cannot reach the aggregator at {self.url}: {exc}") from None
        except RuntimeError:  # httpx: the client was closed (this node is stopping)
            if not self.http.is_closed:
                raise
            raise AggregatorError("this node is stopping: no more calls") from None
        if response.status_code >= 400:
            raise AggregatorError(
                f"the aggregator refused {method} {path}: {error_detail(response)}",
                response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def download(self, path: str, dest: Path, max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
        """GET ``path`` into the file ``dest``, streamed, refusing more than ``max_bytes``
        (an aggregator cannot exhaust this node's memory or disk with one answer)."""
        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise AggregatorError(
                        f"the aggregator refused GET {path}: {error_detail(response)}",
                        response.status_code,
                    )
                size = 0
                with dest.open("wb") as out:
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise AggregatorError(
                                f"GET {path}: the answer is larger than {max_bytes} bytes"
                            )
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise AggregatorError(f"cannot reach the aggregator at {self.url}: {exc}") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: Any = None) -> Any:
        return self.call("POST", path, json=json)

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """``/info``, once the aggregator answers (it may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info: dict[str, Any] = self.get("/info")
                return info
            except AggregatorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def fetch_work(self, wait: float) -> tuple[int, int, Message] | None:
        """One queued job (id, request id, message), or None after ``wait`` seconds."""
        try:
            response = self.http.get("/work", params={"wait": wait}, timeout=wait + 30)
        except httpx.HTTPError as exc:
            raise AggregatorError(f"cannot reach the aggregator at {self.url}: {exc}") from None
        if response.status_code == 204:
            return None
        if response.status_code >= 400:
            raise AggregatorError(f"/work: {response.text}", response.status_code)
        job = int(response.headers["X-DeltaML-Job"])
        rid = int(response.headers["X-DeltaML-Request"])
        return job, rid, wire.loads(response.content)

    def reply(self, job: int, message: Message) -> None:
        self.call("POST", f"/work/{job}", content=wire.dumps(message))

    def fail(self, job: int, error: str) -> None:
        self.post(f"/work/{job}/error", {"error": error[:2000]})


class WorkLoop:
    """Fetches this node's work and answers it on a background thread until stopped."""

    def __init__(self, client: AggregatorClient, handler: Handler, poll_seconds: float = 10.0):
        self.client = client
        self.handler = handler
        self.poll_seconds = poll_seconds
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="work-loop", daemon=True)
        self.jobs_done = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _loop(self) -> None:
        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                job = self.client.fetch_work(self.poll_seconds)
                backoff = 0.5
            except AggregatorError as exc:
                log.warning("%s; retrying in %.1f s", exc, backoff)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if job is None:
                continue
            job_id, rid, message = job
            try:
                reply = self.handler(rid, message)
            except DeltaMLError as exc:
                log.warning("request %d: cannot answer %s: %s", rid, message.kind, exc)
                self._send(self.client.fail, job_id, str(exc))
                continue
            except Exception as exc:  # report, never leave the aggregator waiting
                log.exception("request %d: error answering %s", rid, message.kind)
                self._send(self.client.fail, job_id, type(exc).__name__)
                continue
            self._send(self.client.reply, job_id, reply)
            self.jobs_done += 1

    def _send(self, action: Callable[[int, Any], None], job_id: int, payload: Any) -> None:
        try:
            action(job_id, payload)
        except AggregatorError as exc:
            # 409: the job went stale (the aggregator restarted); it will ask again.
            log.info("reply not taken: %s", exc)


#: The owner's page for adding a CSV takes files up to 64 MiB (and the form around them).
UPLOAD_LIMIT_BYTES = 64 * 2**20 + 64 * 1024


def api_token(work_dir: Path) -> str:
    """The local API's bearer token, created on first use (readable by its owner only)."""
    path = work_dir / "api-token"
    if not path.exists():
        work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    token = path.read_text().strip()
    if not token:
        raise DeltaMLValueError(f"{path} is empty")
    return token


def local_api(title: str, work_dir: Path) -> FastAPI:
    """A node's local JSON API: bearer token from its folder, JSON guard, one-line errors."""
    token = api_token(work_dir)

    # ``Request`` must be a module-level name: annotations are strings here, and FastAPI
    # resolves them in the module's namespace (else it takes ``request`` for a query).
    def authorized(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {token}":
            raise HTTPException(
                401, "missing or wrong API token (see api-token in the node folder)"
            )

    app = FastAPI(title=title, dependencies=[Depends(authorized)])
    # 1 MiB for every JSON call; a CSV upload in the owner's pages may be larger.
    guard_bodies(app, [("POST", r"/ui/datasets", UPLOAD_LIMIT_BYTES)])

    # A refusal the aggregator gave keeps its status (AggregatorError.status).
    install_error_handlers(app)

    return app


def seat_book(result: Mapping[str, Any] | None) -> SeatBook | None:
    """The seats and their payouts that the aggregator reports for a finished request
    (``None`` without them). Proofs built from it hold only if it is what the roots
    on chain commit to: the contract checks every proof."""
    if not result or "trainers" not in result or "validators" not in result:
        return None
    seats = [*result["trainers"], *result["validators"]]
    paid = result.get("payouts_wei") or {}
    payouts = {a: int(paid[a]) for a in seats} if all(a in paid for a in seats) else None
    return SeatBook.of(result["trainers"], result["validators"], payouts)


def approve_or_dispute(
    ledger: Ledger,
    cid: int,
    report: VerificationReport,
    transcript_head: str,
    *,
    approve: bool = True,
    who: str = "this node",
    seats: SeatBook | None = None,
) -> dict[str, Any]:
    """A seat's or the buyer's verdict on a finished result, put on chain.

    The result holds when ``report`` (the transcript checked against the chain) has
    no failure and the contract's evidence hash is ``transcript_head``; then it is
    approved (if ``approve``), else disputed with the SHA-256 of the reasons. A
    verdict that lost the race to another party's (the request settled or was
    disputed meanwhile) is recorded in ``note``, not retried; while the request is
    still finished the error is raised so that the caller tries again. A seat
    proves its seat from ``seats`` (the buyer needs no proof).
    """
    failures = [str(f) for f in report.failures]
    if ledger.request(cid).evidence_hash.hex() != transcript_head:
        failures.append("the contract holds another evidence hash than the transcript's")
    verified = report.ok and not failures
    verdict: dict[str, Any] = {"verified": verified, "failures": failures, "approved": False}
    try:
        if verified and approve:
            ledger.approve(cid, seats=seats)
            verdict["approved"] = True
        elif not verified:
            reason = "; ".join(failures) or "the transcript does not verify"
            ledger.dispute(cid, hashlib.sha256(reason.encode()).digest(), seats=seats)
            verdict["disputed"] = reason
            log.warning("chain request %d: the result does NOT verify; disputed", cid)
    except DeltaMLError:
        now = ledger.request(cid).status
        if now == RequestStatus.FINISHED:
            raise  # try again at the next look
        verdict["note"] = f"{now.name} before {who}'s verdict was on chain"
    return verdict
