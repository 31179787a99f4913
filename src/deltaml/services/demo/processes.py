"""The demo's processes on this machine: a chain, an aggregator, a buyer and owners.

:class:`LocalMarket` starts each party as its own ``deltaml … serve`` process on
127.0.0.1 (with a throw-away CA when ``tls``), remembers them, and stops every one
of them (:meth:`LocalMarket.stop`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deltaml.crypto.paillier import TEST_KEYS_ENV
from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.learning.data import Dataset, save_csv, split_owners, train_test_split
from deltaml.marketplace import DEMO_FUNDING_WEI
from deltaml.services.demo.config import MARKER, DemoConfig
from deltaml.services.serve import CA_ENV, PASSWORD_ENV, ServiceProcess, client_tls


def make_demo_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1/localhost: (ca, cert, key) PEMs."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="DeltaML demo")
    issued = ca.issue_cert("127.0.0.1", "localhost", "::1")
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    with paths[1].open("wb") as f:
        for pem in issued.cert_chain_pems:
            f.write(pem.bytes())
    issued.private_key_pem.write_to_path(str(paths[2]))
    paths[2].chmod(0o600)
    return paths


def prepare_dir(path: Path) -> None:
    """An empty demo folder at ``path`` (a previous demo's is deleted; anything else refused)."""
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DeltaMLValueError(f"{path} exists and is not a demo folder; choose another --dir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("a deltaml demo folder: deleted by the next demo run\n")


def write_shares(config: DemoConfig, data: Dataset) -> tuple[list[Path], list[Dataset], Dataset]:
    """Each owner's share of the training rows as a CSV in its folder; and the test rows."""
    train, test = train_test_split(data, 0.2, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed)
    name = Path(config.dataset).stem or "data"
    paths = [
        save_csv(share, config.work_dir / f"owner-{i + 1}" / "data" / f"{name}.csv")
        for i, share in enumerate(shares)
    ]
    return paths, shares, test


@dataclass
class LocalMarket:
    """Every process the demo started, and what the nodes share (password, TLS)."""

    config: DemoConfig
    processes: list[ServiceProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    tls_args: list[str] = field(default_factory=list)
    #: How this process's HTTP clients check the nodes' certificates.
    verify: Any = True
    chain_url: str = ""
    chain_label: str = ""
    chain_node: Any = None
    aggregator_args: list[str] = field(default_factory=list)
    _ca_before: str | None = None
    _tls: tuple[Path, Path] | None = None

    # -- the steps that start things, in order --------------------------------------------
    def use_tls(self, say: Any) -> None:
        """A CA for this run; every node serves HTTPS and every client trusts it."""
        self._ca_before = os.environ.get(CA_ENV)
        ca_pem, cert_pem, key_pem = make_demo_ca(self.config.work_dir / "tls")
        self._tls = (cert_pem, key_pem)
        self.tls_args = ["--tls-cert", str(cert_pem), "--tls-key", str(key_pem)]
        # Every client trusts it, this process's JSON-RPC client included.
        os.environ[CA_ENV] = str(ca_pem.resolve())
        self.verify = client_tls(ca_pem)
        say(f"TLS: every node over HTTPS; CA certificate {ca_pem}")

    def start_chain(self) -> str:
        """The chain's JSON-RPC URL: ``config.chain_url``, else an embedded EVM started here."""
        if self.config.chain_url:
            self.chain_url = self.config.chain_url
            self.chain_label = f"external JSON-RPC node at {self.chain_url}"
            return self.chain_url
        from deltaml.ledger.node_process import EmbeddedNodeProcess

        if self._tls is not None:
            cert, key = self._tls
            self.chain_node = EmbeddedNodeProcess(tls_cert=str(cert), tls_key=str(key))
        else:
            self.chain_node = EmbeddedNodeProcess()
        self.chain_url = self.chain_node.url
        self.chain_label = f"embedded EVM (py-evm) served over JSON-RPC at {self.chain_url}"
        return self.chain_url

    def make_accounts(self, names: list[str]) -> dict[str, Any]:
        """A funded account per party (and the arbiter's), each node's keystore written
        under one throw-away password (the ``password`` file, readable by the user only)."""
        from deltaml.ledger import connect, fund_from_dev_account
        from deltaml.ledger.accounts import generate_account, save_keystore

        password = secrets.token_hex(16)
        self.env[PASSWORD_ENV] = password
        if self.config.key_bits < 2048:  # asked for test keys: every node must accept them
            self.env[TEST_KEYS_ENV] = "1"
        if self._tls is not None:
            self.env[CA_ENV] = os.environ[CA_ENV]  # the nodes trust it for every service
        secret = self.config.work_dir / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        # The arbiter resolves disputes; it runs no service (every honest party approves).
        accounts = {name: generate_account() for name in [*names, "arbiter"]}
        for name, account in accounts.items():
            folder = self.config.work_dir / name
            save_keystore(account, folder / "account.json", password, iterations=2**14)
        addresses = [str(a.address) for a in accounts.values()]
        fund_from_dev_account(connect(self.chain_url), addresses, DEMO_FUNDING_WEI, demo=True)
        return accounts

    def start(self, name: str, args: list[str], port: int = 0, wait: bool = True) -> ServiceProcess:
        """``deltaml ARGS`` as the node ``name``, with its folder, log and the shared env."""
        folder = self.config.work_dir / name
        proc = ServiceProcess(
            name,
            [*args, "--port", str(port), "--dir", str(folder), "--demo-keys", *self.tls_args],
            env=self.env,
            log_path=folder / "service.log",
            wait=wait,
        )
        self.processes.append(proc)
        return proc

    def start_aggregator(self) -> ServiceProcess:
        self.aggregator_args = [
            "aggregator",
            "serve",
            "--chain-url",
            self.chain_url,
            "--party-timeout",
            str(self.config.party_timeout),
        ]
        return self.start("aggregator", self.aggregator_args)

    def start_nodes(
        self, aggregator_url: str, data: list[Path]
    ) -> tuple[ServiceProcess, list[ServiceProcess]]:
        """The buyer and one owner per data file, started side by side (most of their
        start-up is importing and unlocking keys); returned once each answers."""
        test_keys = ["--allow-test-keys"] if self.config.key_bits < 2048 else []
        buyer = self.start(
            "buyer", ["buyer", "serve", "--aggregator", aggregator_url, *test_keys], wait=False
        )
        owners = [
            self.start(
                f"owner-{i + 1}",
                [
                    *("owner", "serve", "--data", str(path)),
                    *("--aggregator", aggregator_url, "--name", f"owner {i + 1}"),
                ],
                wait=False,
            )
            for i, path in enumerate(data)
        ]
        for proc in [buyer, *owners]:
            proc.wait_ready()
        return buyer, owners

    def client(self, url: str, timeout: float = 60, token_of: str | None = None) -> httpx.Client:
        """An HTTP client of a node (with the API token of node ``token_of``)."""
        headers = {}
        if token_of is not None:
            token = (self.config.work_dir / token_of / "api-token").read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(
            base_url=url, timeout=timeout, headers=headers, trust_env=False, verify=self.verify
        )

    # -- faults the tests inject ----------------------------------------------------------
    def kill(self, proc: ServiceProcess) -> None:
        proc.kill()
        self.processes.remove(proc)

    def restart_aggregator(self, old: ServiceProcess) -> ServiceProcess:
        """The aggregator again (after :meth:`kill`), on the port the parties know."""
        port = int(old.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.start("aggregator", self.aggregator_args, port)
            except DeltaMLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process started here, and put the CA setting back."""
        for proc in self.processes:
            proc.terminate()
        for proc in reversed(self.processes):
            proc.stop()
        if self.chain_node is not None:
            self.chain_node.stop()
        if self._tls is not None:
            if self._ca_before is None:
                os.environ.pop(CA_ENV, None)
            else:
                os.environ[CA_ENV] = self._ca_before
