"""Chain backends: where transactions run.

- ``embedded`` (the default): an in-process EVM (eth-tester on py-evm), in
  :mod:`deltaml.ledger.embedded`. Nothing to install or start; memory only, so
  its state ends with the process.
- any JSON-RPC URL (``http://127.0.0.1:8545``): a local ``anvil`` (npm package
  ``@foundry-rs/anvil``), a hardhat or ganache node, or a testnet.

:func:`connect` picks one from a setting. Dev-chain helpers (time travel, the
prefunded accounts) refuse to work on a chain that is not a known dev chain.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from deltaml import settings
from deltaml.errors import DeltaMLValueError, LedgerError

if TYPE_CHECKING:
    from web3 import Web3

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"

#: Chain ids of development chains (prefunded unlocked accounts, time travel).
DEV_CHAIN_IDS: dict[int, str] = {
    131277322940537: "eth-tester",
    31337: "anvil / hardhat",
    1337: "ganache / geth --dev",
}


class Chain(ABC):
    """A connection to one Ethereum chain.

    Attributes
    ----------
    url:
        ``"embedded"`` or the JSON-RPC URL.
    """

    def __init__(self, w3: Web3, url: str) -> None:
        self._w3 = w3
        self.url = url
        self._chain_id: int | None = None

    @property
    def w3(self) -> Web3:
        """The web3 instance talking to this chain."""
        return self._w3

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    @property
    def is_dev_chain(self) -> bool:
        """Whether this is a local development chain (by its chain id)."""
        return self.chain_id in DEV_CHAIN_IDS

    def now(self) -> int:
        """Timestamp of the latest block, unix seconds."""
        return int(self._w3.eth.get_block("latest")["timestamp"])

    def dev_accounts(self) -> list[str]:
        """The node's prefunded, unlocked accounts (empty on a public node)."""
        self._require_dev_chain("list prefunded accounts")
        return [str(a) for a in self._w3.eth.accounts]

    def advance_time(self, seconds: int) -> int:
        """Move a dev chain's clock forward and mine a block; returns its timestamp.

        The next transaction runs at a ``block.timestamp`` at least ``seconds``
        later than before this call.
        """
        if seconds < 0:
            raise DeltaMLValueError("time only moves forward")
        self._require_dev_chain("travel in time")
        self._advance_time(seconds)
        return self.now()

    @abstractmethod
    def _advance_time(self, seconds: int) -> None: ...

    def log_block_ranges(
        self, address: str, topics: Sequence[bytes], first: int, last: int
    ) -> list[tuple[int, int]]:
        """Block ranges within ``[first, last]`` that may hold logs emitted by
        ``address`` with all of ``topics``.

        A node indexes its logs, so by default this is the whole range; the
        embedded chain narrows it with each block's bloom filter.
        """
        return [(first, last)] if first <= last else []

    def close(self) -> None:  # noqa: B027 - a no-op unless a backend holds resources
        """Release the connection (the embedded chain's state is dropped)."""

    def __enter__(self) -> Chain:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_dev_chain(self, what: str) -> None:
        if not self.is_dev_chain:
            raise LedgerError(
                "NotADevChain",
                (self.chain_id,),
                f"refusing to {what} on chain {self.chain_id}: not a development chain",
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


#: The CA certificates (a PEM file) a JSON-RPC client trusts for https; the services'
#: ``--ca`` sets it (read through :func:`deltaml.settings.ca_file`).
CA_FILE_ENV = settings.CA_ENV


class RpcChain(Chain):
    """Any Ethereum JSON-RPC node over HTTP.

    Parameters
    ----------
    url:
        ``http://`` or ``https://`` URL of the node.
    timeout_s:
        Timeout of each HTTP request.
    """

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        import requests
        from web3 import Web3

        self._session = requests.Session()
        # https: certificates checked against $DELTAML_CA_FILE (the services' --ca) when
        # set, else the system's store.
        ca = settings.ca_file()
        if ca:
            self._session.verify = ca
        if urlparse(url).hostname in ("127.0.0.1", "localhost", "::1"):
            # no proxy applies to a local node; skips requests' per-call
            # environment lookups (halves the time of each call)
            self._session.trust_env = False
        provider = Web3.HTTPProvider(
            url, request_kwargs={"timeout": timeout_s}, session=self._session
        )
        provider.cache_allowed_requests = True  # eth_chainId & co. once, not per call
        super().__init__(Web3(provider), url)
        w3 = self._w3
        if not w3.is_connected():
            self._session.close()
            raise LedgerError("ChainUnreachable", (url,), f"no Ethereum JSON-RPC node at {url}")
        logger.info("connected to chain %s at %s", self.chain_id, url)

    def _advance_time(self, seconds: int) -> None:
        from web3.types import RPCEndpoint

        try:
            self._w3.manager.request_blocking(RPCEndpoint("evm_increaseTime"), [seconds])
            self._w3.manager.request_blocking(RPCEndpoint("evm_mine"), [])
        except Exception as exc:
            raise LedgerError(
                "TimeTravelUnsupported", (self.url,), f"{self.url} cannot travel in time: {exc}"
            ) from exc

    def close(self) -> None:
        self._session.close()


def connect(chain_url: str | None = None, *, timeout_s: float = 30.0) -> Chain:
    """Open the chain a setting names.

    Parameters
    ----------
    chain_url:
        ``None``, ``""`` or ``"embedded"`` for the in-process chain (the default);
        an ``http(s)://`` URL for a JSON-RPC node such as ``http://127.0.0.1:8545``.
    timeout_s:
        HTTP timeout for a JSON-RPC node.
    """
    if chain_url is None or chain_url.strip() in ("", EMBEDDED):
        from deltaml.ledger.embedded import EmbeddedChain

        return EmbeddedChain()
    scheme = urlparse(chain_url).scheme
    if scheme in ("http", "https"):
        return RpcChain(chain_url, timeout_s=timeout_s)
    raise DeltaMLValueError(
        f"unsupported chain URL {chain_url!r}: use 'embedded' or an http(s):// JSON-RPC URL"
    )
