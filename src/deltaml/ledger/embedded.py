"""The embedded chain: an in-process EVM (eth-tester on py-evm), the default.

eth-tester 0.14 with web3 8 needs three adjustments, each measured or shown by
a test in ``tests/ledger``:

- reverts: web3's eth-tester provider decodes every revert as ``Error(string)``,
  which garbles our custom errors (or raises ``OverflowError``); the endpoints
  are wrapped to raise :class:`~deltaml.ledger.reverts.RawRevert` with the bytes;
- gas estimates: py-evm's binary search runs a transaction ~13 times; two runs
  suffice (``_two_run_gas_estimate``), which halves the time of a transaction;
- lookups: eth-tester finds a transaction by scanning all blocks, so receipts
  and ``eth_getLogs`` slow down as the chain grows; the backend uses py-evm's
  index instead, and :meth:`EmbeddedChain.log_block_ranges` skips blocks by
  their bloom filter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from deltaml.ledger.chain import EMBEDDED, Chain


def _keep_revert_data(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an eth-tester endpoint so a revert leaves it as ``RawRevert`` (with
    its bytes) instead of going through web3's lossy ``Error(string)`` decoding."""
    from eth_tester.exceptions import TransactionFailed

    from deltaml.ledger.reverts import RawRevert

    @functools.wraps(endpoint)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        except TransactionFailed as exc:
            raise RawRevert.from_tester(exc) from exc

    return wrapper


def _embedded_endpoints() -> dict[str, dict[str, Any]]:
    from web3.providers.eth_tester.defaults import API_ENDPOINTS

    return {
        namespace: {
            name: _keep_revert_data(fn) if callable(fn) else fn for name, fn in endpoints.items()
        }
        for namespace, endpoints in API_ENDPOINTS.items()
    }


def _two_run_gas_estimate(state: Any, transaction: Any) -> int:
    """Gas estimate in two EVM runs instead of py-evm's binary search (~13).

    Run once with the block's gas limit to measure the gas consumed before
    refunds, then confirm that this plus a margin for the 63/64 rule of nested
    calls suffices; fall back to the binary search if it does not. The estimate
    is only the transaction's gas limit: the gas used, and so the fee, is the
    same as with an exact estimate.
    """
    from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
    from eth.vm.spoof import SpoofTransaction

    def run(gas: int) -> Any:
        # free gas, as py-evm's own estimator: the sender's balance must cover
        # the value sent, not a fee for the trial gas limit
        free = {"gas_price": 0, "max_fee_per_gas": 0, "max_priority_fee_per_gas": 0}
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(SpoofTransaction(transaction, gas=gas, **free))
        finally:
            state.revert(snapshot)

    limit = int(state.gas_limit)
    computation = run(limit)
    if computation.is_error:
        raise computation.error
    consumed = limit - int(computation.get_gas_remaining())
    candidate = min(limit, consumed + consumed // 10 + 10_000)
    if not run(candidate).is_error:
        return candidate
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))


def _indexed_backend() -> Any:
    """eth-tester's py-evm backend, finding mined transactions by index.

    eth-tester 0.14 finds a transaction by scanning every block from the head
    down, so each receipt costs time proportional to the chain's length and
    ``eth_getLogs`` over the chain (one receipt per transaction) grows
    quadratically: 18 s for 300 blocks. py-evm already keeps a hash → (block,
    index) lookup for canonical blocks; this subclass uses it.
    """
    from eth.exceptions import TransactionNotFound
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm.serializers import (
        serialize_transaction,
        serialize_transaction_receipt,
    )

    class IndexedPyEVMBackend(PyEVMBackend):
        def _locate(self, transaction_hash: bytes) -> tuple[Any, Any, int] | None:
            pending = self.chain.get_block()
            for index, transaction in enumerate(pending.transactions):
                if transaction.hash == transaction_hash:
                    return pending, transaction, index
            try:
                number, index = self.chain.chaindb.get_transaction_index(transaction_hash)
            except TransactionNotFound:
                return None
            block = self.chain.get_canonical_block_by_number(number)
            return block, block.transactions[index], index

        def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
            found = self._locate(transaction_hash)
            if found is None:  # let eth-tester raise its own error
                return super().get_transaction_by_hash(transaction_hash)
            block, transaction, index = found
            is_pending = block.number == self.chain.get_block().number
            return serialize_transaction(block, transaction, index, is_pending)

        def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
            found = self._locate(transaction_hash)
            if found is None:
                return super().get_transaction_receipt(transaction_hash)
            block, transaction, index = found
            is_pending = block.number == self.chain.get_block().number
            receipts = block.get_receipts(self.chain.chaindb)
            return serialize_transaction_receipt(
                block, receipts, transaction, index, is_pending, self.chain.get_vm()
            )

    return IndexedPyEVMBackend()


class EmbeddedChain(Chain):
    """An in-process EVM: eth-tester on py-evm, ten prefunded accounts."""

    def __init__(self) -> None:
        from eth_tester import EthereumTester
        from web3 import Web3
        from web3.providers.eth_tester import EthereumTesterProvider

        backend = _indexed_backend()
        backend.chain.gas_estimator = _two_run_gas_estimate
        self._tester: Any = EthereumTester(backend)
        provider = EthereumTesterProvider(self._tester, api_endpoints=_embedded_endpoints())
        provider.cache_allowed_requests = True
        super().__init__(Web3(provider), EMBEDDED)

    def log_block_ranges(
        self, address: str, topics: Sequence[bytes], first: int, last: int
    ) -> list[tuple[int, int]]:
        # eth-tester reads every receipt of every block in a getLogs range;
        # a header's bloom rules most blocks out for ~20 µs each
        from eth_bloom import BloomFilter
        from eth_utils import to_canonical_address

        chain = self._tester.backend.chain
        wanted = [to_canonical_address(address), *topics]
        ranges: list[tuple[int, int]] = []
        for number in range(max(first, 0), last + 1):
            bloom = BloomFilter(chain.get_canonical_block_header_by_number(number).bloom)
            if all(item in bloom for item in wanted):
                if ranges and ranges[-1][1] == number - 1:
                    ranges[-1] = (ranges[-1][0], number)
                else:
                    ranges.append((number, number))
        return ranges

    def _advance_time(self, seconds: int) -> None:
        pending = int(self._tester.get_block_by_number("pending")["timestamp"])
        target = max(self.now() + seconds, pending)
        # eth-tester mines the travel block one second before its argument
        self._tester.time_travel(target + 1)
