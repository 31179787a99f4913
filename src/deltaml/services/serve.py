"""Running the services: accounts from keystores, a uvicorn server per node, child processes.

Each ``deltaml … serve`` command binds its socket first (``--port 0`` picks a
free one), prints one line ``DeltaML <what> listening on <url>`` and serves
until SIGINT or SIGTERM. :class:`ServiceProcess` starts such a command as a child
process, waits for that line and stops it by its process id.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import ipaddress
import logging
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from deltaml import settings
from deltaml.errors import DeltaMLError, DeltaMLValueError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from fastapi import FastAPI

log = logging.getLogger(__name__)


def guarded(what: str, task: Callable[[], object]) -> None:
    """One pass of a background loop: a failure is logged and the loop goes on.

    A user-level error is one line; anything else (a bug, a database or network
    failure) gets its traceback in the log, but never ends the thread for good.
    """
    try:
        task()
    except DeltaMLError as exc:
        log.warning("%s: %s", what, exc)
    except Exception:
        log.exception("%s: unexpected error", what)


LISTENING = " listening on "
#: The names of the variables, as :mod:`deltaml.settings` defines them.
PASSWORD_ENV = settings.PASSWORD_ENV
CA_ENV = settings.CA_ENV


def password_from_env() -> str:
    """The node's keystore password (``$DELTAML_PASSWORD`` or ``…_FILE``); else a one-line error."""
    return settings.require_password()


def load_or_create_account(path: Path, password: str, *, fast_kdf: bool = False) -> LocalAccount:
    """The node's Ethereum account from its keystore, created there on first start.

    ``fast_kdf`` (throw-away demo accounts on a dev chain only) uses a cheaper scrypt.
    """
    from deltaml.ledger.accounts import generate_account, load_keystore, save_keystore

    if path.exists():
        return load_keystore(path, password)
    account = generate_account()
    save_keystore(account, path, password, iterations=2**14 if fast_kdf else None)
    return account


def private_files() -> None:
    """Files this process creates are its user's only: 0600 files in 0700 folders.

    Called at the start of every ``serve`` and ``demo``: the databases (mixing seeds,
    ciphertexts, sealed keys), transcripts and CSVs are nobody else's business.
    Child processes inherit it.
    """
    os.umask(0o077)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, *, tls: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; a non-loopback host only with TLS.

    Signed calls, login passwords and session cookies would otherwise cross the
    network in the clear: serve a remote interface with ``--tls-cert/--tls-key``.
    """
    if not tls and not is_loopback(host):
        raise DeltaMLValueError(
            f"refusing to listen on {host} without TLS: pass --tls-cert and --tls-key, "
            "or listen on 127.0.0.1"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listen now: the "listening on" line goes out before the server's loop starts,
        # and a client that connects in between must wait in the backlog, not be refused.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise DeltaMLValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """A server's certificate chain and private key (PEM files)."""

    cert: Path
    key: Path

    @classmethod
    def from_args(cls, cert: Path | None, key: Path | None) -> TLSFiles | None:
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise DeltaMLValueError("--tls-cert and --tls-key go together")
        for path in (cert, key):
            if not path.is_file():
                raise DeltaMLValueError(f"{path}: no such file")
        return cls(cert, key)


def client_tls(ca: str | Path | None = None) -> ssl.SSLContext:
    """What a client trusts: ``ca`` (a PEM file), else ``$DELTAML_CA_FILE``, else the
    system's store. Certificates and host names are always checked."""
    ca = ca or settings.ca_file()
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise DeltaMLValueError(f"cannot load the CA certificates {ca}: {exc}") from None


#: Largest request body a service reads by default; routes that carry ciphertexts
#: name a larger limit (:func:`guard_bodies`).
MAX_BODY_BYTES = 1024 * 1024
#: Bodies at least this large are checked (nesting depth) on a worker thread, not the loop.
_THREAD_CHECK_BYTES = 256 * 1024


class BodyLimit:
    """ASGI middleware: every request body bounded before any handler reads it.

    A body announced (``Content-Length``) or streamed beyond the route's limit is
    refused with 413 before the rest is read; at most the limit is ever buffered.
    JSON bodies (declared JSON, or no content type: FastAPI's own rule) are also
    refused with 400 when nested deeper than
    :data:`deltaml.protocol.json_limits.MAX_JSON_DEPTH` — with the Ethereum libraries
    loaded the recursion limit is so high that a deeply nested body would crash
    the process inside ``json.loads``; FastAPI parses bodies before any dependency
    runs, so the check has to come first, here. Large bodies are checked on a
    worker thread so that the event loop keeps serving.

    ``limits`` is a list of ``(method, path regex, bytes)``: the first match sets
    the limit, else ``default``.
    """

    def __init__(
        self,
        app: Any,
        default: int = MAX_BODY_BYTES,
        limits: Sequence[tuple[str, str, int]] = (),
        verifier: Any = None,
    ) -> None:
        import re

        self.app = app
        #: With a :class:`~deltaml.services.auth.RequestVerifier`, every POST outside
        #: ``/ui`` must be signed, and is checked here, before anything parses it.
        self.verifier = verifier
        self.default = default
        self.limits = [(m.upper(), re.compile(p), n) for m, p, n in limits]

    def limit_for(self, method: str, path: str) -> int:
        for m, pattern, n in self.limits:
            if m == method and pattern.fullmatch(path):
                return n
        return self.default

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope.get("path", ""))
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        refusal = _announced_refusal(headers.get("content-length"), limit)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        body = await _read_body(receive, send, limit)
        if body is None:
            return
        if not await self._body_acceptable(scope, headers, body, send):
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _body_acceptable(
        self, scope: Any, headers: dict[str, bytes], body: bytes, send: Any
    ) -> bool:
        """Check the signature (signed services), then the JSON nesting; refuse if either
        fails. A stranger's body is never parsed."""
        if self.verifier is not None and not scope.get("path", "").startswith("/ui"):
            from deltaml.services.auth import SCHEME, AuthError, verify_scope

            try:
                await verify_scope(self.verifier, scope, body)
            except AuthError as exc:
                await _refuse(send, 401, str(exc), [(b"www-authenticate", SCHEME.encode())])
                return False
        content_type = headers.get("content-type", b"").decode("latin-1").lower()
        if body and (not content_type or "json" in content_type):
            from deltaml.protocol.json_limits import check_json_depth

            try:
                if len(body) >= _THREAD_CHECK_BYTES:
                    import anyio

                    await anyio.to_thread.run_sync(check_json_depth, body)
                else:
                    check_json_depth(body)
            except DeltaMLValueError as exc:
                await _refuse(send, 400, str(exc))
                return False
        return True


def _announced_refusal(length: bytes | None, limit: int) -> tuple[int, str] | None:
    """Why a body announced as ``length`` bytes is refused before it is read, if it is."""
    if length is None:
        return None
    try:
        announced = int(length)
    except ValueError:
        return 400, "malformed Content-Length"
    if announced > limit:
        return 413, f"request body of {announced} bytes: at most {limit}"
    return None


async def _read_body(receive: Any, send: Any, limit: int) -> bytes | None:
    """The whole body, at most ``limit`` bytes buffered; ``None`` once refused (413) or
    the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _refuse(send, 413, f"request body larger than {limit} bytes")
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse(
    send: Any, status: int, detail: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    import json

    payload = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def guard_bodies(
    app: FastAPI,
    limits: Sequence[tuple[str, str, int]] = (),
    default: int = MAX_BODY_BYTES,
    verifier: Any = None,
) -> None:
    """Bound every request body of ``app`` (see :class:`BodyLimit`); 422s that never echo.

    FastAPI's validation errors repeat each bad input, which cannot be rendered when
    it is an infinity (a 500) and can be as large as the body: here they name the
    field and the problem only.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.requests import Request

    app.add_middleware(BodyLimit, default=default, limits=list(limits), verifier=verifier)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as ``{"loc", "msg", "type"}``, bounded, without the inputs."""
    out = []
    for error in list(errors)[:20]:
        loc = [p if isinstance(p, int) else str(p)[:100] for p in error.get("loc", ())][:20]
        out.append(
            {"loc": loc, "msg": str(error.get("msg", ""))[:300], "type": str(error.get("type"))}
        )
    return out


def serve(
    app: FastAPI,
    what: str,
    host: str,
    port: int,
    on_stop: Callable[[], None] | None = None,
    *,
    tls: TLSFiles | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Serve ``app`` until SIGINT/SIGTERM, after printing the ``listening on`` line.

    With ``tls`` it serves HTTPS only. ``on_listening`` gets the URL once the socket
    is bound (the aggregator learns the origin its callers must sign for).
    """
    private_files()
    # The event loop shares the GIL with training and signature threads: hand it over
    # more often (5 ms by default) so that short requests (/health) wait less for it.
    sys.setswitchinterval(0.001)
    sock = bind(host, port, tls=tls is not None)
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{sock.getsockname()[1]}"
    if on_listening is not None:
        on_listening(url)
    # Long-polls hold connections open: do not wait for them at shutdown.
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    server = uvicorn.Server(config)
    print(f"DeltaML {what}{LISTENING}{url}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        if on_stop is not None:
            on_stop()
        sock.close()
    return 0


class ServiceProcess:
    """A ``deltaml`` service as a child process; ``url`` once it listens; stopped by pid."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        wait: bool = True,
        ready_timeout: float = 120.0,
    ) -> None:
        self.name = name
        self._log = log_path.open("a", encoding="utf-8") if log_path else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deltaml", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log if self._log else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            text=True,
            start_new_session=True,  # Ctrl-C in a terminal goes to the parent, which stops us
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=self._read, daemon=True).start()
        self.url = ""
        if wait:
            self.wait_ready(ready_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._tail.append(line.rstrip())
            if self._log:
                self._log.write(line)
                self._log.flush()
            self._lines.put(line)
        self._lines.put(None)

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Wait for the ``listening on`` line (start several processes, then wait for each)."""
        if not self.url:
            self.url = self._wait(timeout)
        return self.url

    def _wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or (line == "" and time.monotonic() >= deadline):
                self.stop()
                why = "exited" if line is None else f"did not start within {timeout:g} s"
                raise DeltaMLValueError(
                    f"{self.name} {why}"
                    + (f"; see {self._log.name}" if self._log else "")
                    + (f": {self._tail[-1]}" if self._tail else "")
                )
            if LISTENING in line:
                return line.split(LISTENING, 1)[1].strip()

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting: stop several, then wait."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
            except ProcessLookupError:
                pass
        if self._log:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """Stop at once, as a crash would (no clean shutdown)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
