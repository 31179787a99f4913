"""The Gram metric through the services (``deltaml demo --metric-protocol gram``, issue 15).

An aggregator, a buyer and five owner nodes as child processes over real HTTP, the
contract on the session's anvil node, 1024-bit keys: the validator's Gram matrix once,
every evaluation and the contributions as masked products with the buyer node, the
transcript verified by every seat, the split settled on chain. (That the numbers equal
the rotations' is tests/roles/test_gram_metric.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaml.evidence.transcript import read_records
from deltaml.services.demo import DemoConfig, run_demo

pytestmark = pytest.mark.slow


def test_the_gram_metric_through_the_services_verifies_and_settles(
    tmp_path: Path, anvil_url: str
) -> None:
    config = DemoConfig(
        work_dir=tmp_path / "demo", metric_protocol="gram", key_bits=1024, rounds=6,
        chain_url=anvil_url,
    )  # fmt: skip
    result = run_demo(config, say=lambda line: None)
    assert result.status == "FINISHED", result.error
    assert set(result.statuses.values()) == {"FINISHED"}
    assert result.verified
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert set(result.metrics) == {"3", "6"}  # after the initial model's
    assert len(result.contributions) == 4 and sum(result.contributions.values()) > 0
    kinds = {r["type"] for r in read_records(result.transcript)}
    assert {"GramShare", "FormCross", "FormOpened", "FormValues"} <= kinds
    assert not kinds & {"Mix", "Remix", "EncryptedResiduals", "ContributionColumns"}
