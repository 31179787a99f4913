"""The compiled contract shipped with the package (no web3 needed to read it).

``contracts/Marketplace.json`` is written by ``scripts/compile_contract.js`` from
``contracts/Marketplace.sol`` with a pinned solc-js; CI recompiles and fails if
the committed file differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from deltaml.errors import DeltaMLValueError

MARKETPLACE = "Marketplace"


@dataclass(frozen=True)
class ContractArtifact:
    """ABI and bytecode of one compiled contract.

    Attributes
    ----------
    name:
        The Solidity contract's name.
    abi:
        The ABI, as the compiler wrote it.
    bytecode, deployed_bytecode:
        ``0x``-prefixed creation and runtime code.
    compiler_version:
        The exact solc-js release that produced it.
    evm_version:
        The EVM fork the code was compiled for.
    """

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str
    evm_version: str

    @classmethod
    def from_json(cls, text: str) -> ContractArtifact:
        """Parse an artifact written by ``scripts/compile_contract.js``."""
        try:
            data = json.loads(text)
            return cls(
                name=data["contractName"],
                abi=tuple(data["abi"]),
                bytecode=data["bytecode"],
                deployed_bytecode=data["deployedBytecode"],
                compiler_version=data["compiler"]["version"],
                evm_version=data["settings"]["evmVersion"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DeltaMLValueError(f"not a contract artifact: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> ContractArtifact:
        """Read an artifact file (for example a test contract's)."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def error_entries(self) -> list[dict[str, Any]]:
        """The ABI's custom ``error`` entries."""
        return [entry for entry in self.abi if entry.get("type") == "error"]


@cache
def load_artifact(name: str = MARKETPLACE) -> ContractArtifact:
    """Load a contract artifact shipped inside the package.

    Parameters
    ----------
    name:
        Contract name; ``contracts/<name>.json`` must exist in the package.
    """
    resource = resources.files("deltaml.ledger").joinpath("contracts", f"{name}.json")
    if not resource.is_file():
        raise DeltaMLValueError(f"no compiled artifact for contract {name!r} in the package")
    return ContractArtifact.from_json(resource.read_text(encoding="utf-8"))
