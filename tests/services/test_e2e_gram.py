"""The Gram metric through the services (``deltaml demo --metric-protocol gram``, issue 15).

An aggregator, a buyer and five owner nodes as child processes over real HTTP, the
contract on the session's anvil node, 1024-bit keys: the validator's Gram matrix once,
every evaluation and the contributions as masked products with the buyer node, the
transcript verified by every seat, the split settled on chain — with the same metrics
and contributions as the rotations give on the same data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaml.evidence.transcript import read_records
from deltaml.services.demo import DemoConfig, run_demo

pytestmark = pytest.mark.slow


def test_the_gram_metric_through_the_services_settles_with_the_rotations_numbers(
    tmp_path: Path, anvil_url: str
) -> None:
    def run(protocol: str):  # type: ignore[no-untyped-def]
        config = DemoConfig(
            work_dir=tmp_path / protocol,
            metric_protocol=protocol,
            key_bits=1024,
            rounds=6,
            chain_url=anvil_url,
        )
        result = run_demo(config, say=lambda line: None)
        assert result.status == "FINISHED", result.error
        assert result.verified
        assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
        return result

    gram, rotation = run("gram"), run("rotation")
    assert gram.metrics.keys() == rotation.metrics.keys()
    for k, value in gram.metrics.items():
        assert value == pytest.approx(rotation.metrics[k], rel=1e-9)
    assert gram.contributions.keys() == rotation.contributions.keys()
    for owner, value in gram.contributions.items():
        assert value == pytest.approx(rotation.contributions[owner], rel=1e-6)
    kinds = {r["type"] for r in read_records(gram.transcript)}
    assert {"GramShare", "FormValues"} <= kinds and "Mix" not in kinds
