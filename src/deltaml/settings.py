"""Every environment variable and command-line default of DeltaML, in one place.

Nothing here runs at import time: an entry point builds :class:`Settings` with
:meth:`Settings.from_env` when it starts and passes the values in. The few
library-level readers that must look at the environment themselves (the key-size
check, a JSON-RPC client's CA file, the anvil binary) call the one reader of
their variable here, at the moment they need it, so that a test can change it.

Secrets have file variants, as container secrets are mounted:
``DELTAML_PASSWORD_FILE`` and ``DELTAML_DATABASE_URL_FILE`` name a file whose
content (one trailing newline stripped) is the value. Setting a variable and its
``_FILE`` variant both is an error, as is a file that cannot be read.

This module is the bottom layer: it imports nothing from DeltaML but its errors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from deltaml.errors import DeltaMLValueError

#: The password that protects a node's keystore (and its web UI's login).
PASSWORD_ENV = "DELTAML_PASSWORD"
PASSWORD_FILE_ENV = PASSWORD_ENV + "_FILE"
#: The node's SQLAlchemy database URL (default: an SQLite file in its folder).
DATABASE_URL_ENV = "DELTAML_DATABASE_URL"
DATABASE_URL_FILE_ENV = DATABASE_URL_ENV + "_FILE"
#: The conventional name, read when neither of the two above is set.
PLAIN_DATABASE_URL_ENV = "DATABASE_URL"
#: A PEM file of the CA certificates every client of this process (and its children)
#: trusts for https:// URLs: the services, the JSON-RPC chain. ``--ca`` sets it.
CA_ENV = "DELTAML_CA_FILE"
#: ``1`` lets Paillier keys under 2048 bits through every key check of this process
#: and its children: the test suite sets it, nothing in production may.
TEST_KEYS_ENV = "DELTAML_ALLOW_TEST_KEYS"
#: The anvil binary to run as a local dev chain (default: npm's, else one on PATH).
ANVIL_BIN_ENV = "DELTAML_ANVIL_BIN"
#: Host ports the compose stack publishes (deploy/compose.yaml: same names, same defaults).
COMPOSE_PORTS: Mapping[str, tuple[str, int]] = {
    "aggregator": ("DELTAML_AGGREGATOR_PORT", 8700),
    "buyer": ("DELTAML_BUYER_PORT", 8702),
    "chain": ("DELTAML_CHAIN_PORT", 8545),
    "owner-1": ("DELTAML_OWNER1_PORT", 8711),
    "owner-2": ("DELTAML_OWNER2_PORT", 8712),
    "owner-3": ("DELTAML_OWNER3_PORT", 8713),
}

#: Where a node listens unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
#: Each service's default port (``--port``).
DEFAULT_PORTS: Mapping[str, int] = {"aggregator": 8700, "owner": 8701, "buyer": 8702, "chain": 8545}
#: Seconds a party may take to answer before its request fails (``--party-timeout``).
DEFAULT_PARTY_TIMEOUT_S = 120.0


def default_node_dir(what: str) -> Path:
    """A node's folder unless ``--dir`` names one: ``.deltaml/<what>``."""
    return Path(".deltaml") / what


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``$name``, or the content of the file ``$name_FILE`` names.

    An empty variable counts as unset. The file's one trailing newline (``\\n`` or
    ``\\r\\n``) is stripped, nothing else. Both set, or a file that cannot be read:
    a one-line :class:`~deltaml.errors.DeltaMLValueError`.
    """
    env = _env(environ)
    value = env.get(name) or None
    file_name = name + "_FILE"
    path = env.get(file_name) or None
    if path is None:
        return value
    if value is not None:
        raise DeltaMLValueError(f"set {name} or {file_name}, not both")
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DeltaMLValueError(f"{file_name}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DeltaMLValueError(f"{file_name}: {path} is not UTF-8 text") from None
    for ending in ("\r\n", "\n"):
        if content.endswith(ending):
            return content[: -len(ending)]
    return content


def password(environ: Mapping[str, str] | None = None) -> str | None:
    """The keystore password (``DELTAML_PASSWORD`` or ``DELTAML_PASSWORD_FILE``), if set."""
    return read_secret(PASSWORD_ENV, environ)


def require_password(environ: Mapping[str, str] | None = None) -> str:
    """The keystore password; a one-line error when it is not set."""
    value = password(environ)
    if not value:
        raise DeltaMLValueError(
            f"set {PASSWORD_ENV} (or {PASSWORD_FILE_ENV}) to the password that protects "
            "this node's keys"
        )
    return value


def database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``DELTAML_DATABASE_URL`` (or its ``_FILE``), else ``DATABASE_URL``, else ``None``."""
    return (
        read_secret(DATABASE_URL_ENV, environ) or _env(environ).get(PLAIN_DATABASE_URL_ENV) or None
    )


def ca_file(environ: Mapping[str, str] | None = None) -> str | None:
    """The CA certificates (a PEM file) clients trust, if ``DELTAML_CA_FILE`` names one."""
    return _env(environ).get(CA_ENV) or None


def set_ca_file(path: Path) -> None:
    """Make ``path`` the CA file of this process's clients and of its children."""
    os.environ[CA_ENV] = str(path.resolve())


def test_keys_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DELTAML_ALLOW_TEST_KEYS=1`` lets small Paillier keys through."""
    return _env(environ).get(TEST_KEYS_ENV) == "1"


def anvil_bin(environ: Mapping[str, str] | None = None) -> Path | None:
    """The anvil binary ``DELTAML_ANVIL_BIN`` names, if any (not checked here)."""
    configured = _env(environ).get(ANVIL_BIN_ENV)
    return Path(configured) if configured else None


def compose_ports(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The host ports of the compose stack: ``DELTAML_*_PORT``, else their defaults."""
    env = _env(environ)
    ports = {}
    for service, (name, default) in COMPOSE_PORTS.items():
        raw = env.get(name) or str(default)
        try:
            port = int(raw)
        except ValueError:
            raise DeltaMLValueError(f"{name}={raw!r}: not a port number") from None
        if not 0 < port < 65536:
            raise DeltaMLValueError(f"{name}={port}: a port is between 1 and 65535")
        ports[service] = port
    return ports


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the environment says, read once at an entry point and passed in.

    The secrets (``password``, ``database_url``) never appear in the ``repr``.
    """

    password: str | None = dataclasses.field(default=None, repr=False)
    database_url: str | None = dataclasses.field(default=None, repr=False)
    ca_file: str | None = None
    allow_test_keys: bool = False
    anvil_bin: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable now; a misconfigured one is a one-line error."""
        return cls(
            password=password(environ),
            database_url=database_url(environ),
            ca_file=ca_file(environ),
            allow_test_keys=test_keys_allowed(environ),
            anvil_bin=anvil_bin(environ),
        )

    def require_password(self) -> str:
        """The keystore password; a one-line error when it is not set."""
        return require_password({PASSWORD_ENV: self.password or ""})
