"""A request's public record: the contract's events about it, read and cached."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth_utils import keccak

from deltaml.ledger.base import LedgerEvent
from deltaml.ledger.transactions import check_uint

if TYPE_CHECKING:
    from deltaml.ledger.artifact import ContractArtifact
    from deltaml.ledger.chain import Chain

#: Blocks behind the head that ``history`` re-reads on a public chain.
REORG_DEPTH_BLOCKS = 64


class EventLog:
    """Reads every event about a request from the Marketplace at ``contract``.

    Logs are read from the contract's deployment block on, and each request's
    events are cached up to the last block deep enough not to be reorganised
    (the latest block on a dev chain, 64 behind it elsewhere), so polling reads
    only new blocks.
    """

    def __init__(
        self, chain: Chain, contract: Any, artifact: ContractArtifact, from_block: int
    ) -> None:
        self._chain = chain
        self._contract = contract
        self._artifact = artifact
        self._from_block = from_block
        self._cache: dict[int, tuple[int, list[LedgerEvent]]] = {}
        self._topics: dict[bytes, Any] | None = None

    def history(self, request_id: int) -> list[LedgerEvent]:
        rid = check_uint(request_id, "request_id")
        w3 = self._chain.w3
        latest = int(w3.eth.block_number)
        final = latest if self._chain.is_dev_chain else latest - REORG_DEPTH_BLOCKS
        cached = self._cache.setdefault(rid, (self._from_block - 1, []))
        scanned_to, known = cached
        if latest <= scanned_to:
            return list(known)
        # every per-request event has the request id as its first indexed topic
        topic = rid.to_bytes(32, "big")
        address = self._contract.address
        logs: list[Any] = []
        for first, last in self._chain.log_block_ranges(address, [topic], scanned_to + 1, latest):
            logs += w3.eth.get_logs(
                {
                    "address": address,
                    "fromBlock": first,
                    "toBlock": last,
                    "topics": [None, "0x" + topic.hex()],
                }
            )
        fresh = [event for event in map(self._decode_log, logs) if event is not None]
        settled = [e for e in fresh if e.block_number <= final]
        if final > scanned_to:
            self._cache[rid] = (final, known + settled)
        return known + fresh

    def _decode_log(self, log: Any) -> LedgerEvent | None:
        event = self._events_by_topic.get(bytes(log["topics"][0]))
        if event is None:
            return None
        decoded = event().process_log(log)
        return LedgerEvent(
            name=str(decoded["event"]),
            args=dict(decoded["args"]),
            block_number=int(decoded["blockNumber"]),
            tx_hash="0x" + bytes(decoded["transactionHash"]).hex(),
        )

    @property
    def _events_by_topic(self) -> dict[bytes, Any]:
        if self._topics is None:
            topics = {}
            for entry in self._artifact.abi:
                if entry.get("type") != "event":
                    continue
                types = ",".join(i["type"] for i in entry["inputs"])
                topic = keccak(text=f"{entry['name']}({types})")
                topics[topic] = getattr(self._contract.events, entry["name"])
            self._topics = topics
        return self._topics
