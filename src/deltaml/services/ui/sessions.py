"""Logging in to a local node: the password check, sessions, CSRF tokens and a rate limit.

The password of the web UI is the node's own: the ``DELTAML_PASSWORD`` that
created (on first start) or unlocked its keystore. The node does not keep it:
at start it keeps an scrypt hash of it under a random salt
(:class:`PasswordCheck`), so a login costs one scrypt and a memory dump of the
node does not hold the password itself (the buyer node keeps it anyway: it
seals each request's Paillier key with it).

A successful login creates a :class:`Session`: a random token (256 bits) in an
``HttpOnly``, ``SameSite=Strict`` cookie, kept server-side with an idle expiry
and an absolute one, and its own CSRF token that every form posts back. Only a
hash of the session token is kept, so the table of sessions alone does not let
anyone in.

Wrong passwords are rate-limited per client address (:class:`LoginLimiter`):
the first few are free, then each further failure locks that client out for
twice as long as the one before, up to a ceiling; while locked out, the
password is not even checked. A success clears the client's record.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deltaml.errors import DeltaMLValueError

Clock = Callable[[], float]

SESSION_COOKIE = "deltaml_session"
#: The cookie that carries the login form's own CSRF token (before there is a session).
LOGIN_COOKIE = "deltaml_login"
#: A session ends after this long without a request...
SESSION_IDLE_S = 3600.0
#: ...and in any case this long after the login.
SESSION_MAX_S = 12 * 3600.0

#: scrypt cost of the stored password hash: about 50 ms and 16 MiB per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class PasswordCheck:
    """An scrypt hash of the node's password; :meth:`matches` compares in constant time."""

    def __init__(self, salt: bytes, digest: bytes) -> None:
        self._salt = salt
        self._digest = digest

    @classmethod
    def from_password(cls, password: str) -> PasswordCheck:
        if not password:
            raise DeltaMLValueError("the web UI needs the node's password (it is empty)")
        salt = secrets.token_bytes(16)
        return cls(salt, cls._hash(password, salt))

    @staticmethod
    def _hash(password: str, salt: bytes) -> bytes:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
        )

    def matches(self, password: str) -> bool:
        if len(password) > 1024:  # scrypt of a huge input would be an easy way to burn CPU
            return False
        return hmac.compare_digest(self._hash(password, self._salt), self._digest)


@dataclass
class Session:
    csrf_token: str
    created_at: float
    last_seen: float
    #: One-shot messages for the next page: (kind, text), kind ``ok``, ``error`` or ``info``.
    flashes: list[tuple[str, str]] = field(default_factory=list)


class SessionStore:
    """Sessions by (the hash of) their cookie token; in memory: a restart logs everyone out."""

    def __init__(
        self,
        idle_s: float = SESSION_IDLE_S,
        max_s: float = SESSION_MAX_S,
        clock: Clock = time.time,
    ) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> tuple[str, Session]:
        """A new session and the token for its cookie (the store keeps only its hash)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen=now)
        with self._lock:
            self._prune(now)
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (and mark it used), or None if unknown or expired."""
        if not token:
            return None
        now = self.clock()
        key = _digest(token)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created_at > self.max_s:
                del self._sessions[key]
                return None
            session.last_seen = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _prune(self, now: float) -> None:
        dead = [
            k
            for k, s in self._sessions.items()
            if now - s.last_seen > self.idle_s or now - s.created_at > self.max_s
        ]
        for key in dead:
            del self._sessions[key]


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last_at: float = 0.0
    #: Attempts let through whose password check has not finished yet.
    pending: int = 0


class LoginLimiter:
    """Exponential lockout of a client after ``free_attempts`` wrong passwords.

    After failure number ``free_attempts + k`` (k ≥ 1) the client waits
    ``base_delay_s * 2**(k-1)`` seconds, at most ``max_delay_s``, before it may try
    again. A client's record is forgotten after ``forget_s`` without a failure.

    Attempts are *reserved* atomically (:meth:`wait_s`): a password check in
    progress counts as a failure until :meth:`failed` or :meth:`succeeded` says how
    it went, so many parallel wrong passwords cannot all pass the check before the
    first is counted.
    """

    def __init__(
        self,
        free_attempts: int = 3,
        base_delay_s: float = 2.0,
        max_delay_s: float = 300.0,
        forget_s: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_s = forget_s
        self.clock = clock
        self._clients: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Reserve an attempt for ``client``: 0 if it may check a password now, else the
        seconds it must wait (nothing reserved).

        A 0 must be followed by :meth:`failed` or :meth:`succeeded` for that attempt.
        """
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            record = self._clients.setdefault(client, _Failures(last_at=now))
            if record.locked_until > now:
                return record.locked_until - now
            if record.count + record.pending >= self.free_attempts and record.pending:
                # Attempts in flight would use up the free ones: wait for their outcome.
                return self.base_delay_s
            record.pending += 1
            record.last_at = now
            return 0.0

    def failed(self, client: str) -> float:
        """Record a wrong password; the lockout it earns, in seconds (0: none yet)."""
        now = self.clock()
        with self._lock:
            record = self._clients.setdefault(client, _Failures())
            record.pending = max(0, record.pending - 1)
            record.count += 1
            record.last_at = now
            over = record.count - self.free_attempts
            if over <= 0:
                return 0.0
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(over - 1, 30))
            record.locked_until = now + delay
            return delay

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_old(self, now: float) -> None:
        old = [
            c
            for c, r in self._clients.items()
            if now - r.last_at > self.forget_s and r.locked_until <= now and not r.pending
        ]
        for client in old:
            del self._clients[client]


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a posted token with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


@dataclass
class LoginConfig:
    """What the UI of one node needs to let its user in."""

    password: PasswordCheck
    sessions: SessionStore
    limiter: LoginLimiter

    @classmethod
    def from_password(cls, password: str) -> LoginConfig:
        return cls(PasswordCheck.from_password(password), SessionStore(), LoginLimiter())
