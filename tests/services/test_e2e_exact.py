"""The exact solve through the services (``deltaml demo --solver exact``, issue 14).

An aggregator, a buyer and five owner nodes as child processes over real HTTP, the
contract on the session's anvil node, 1024-bit keys: the masked solve, the initial and
the exact model's metrics, each trainer's contribution (its part of the exact model),
the split settled on chain, and the model delivered only
after that (held by the aggregator service like the iterative route's final model);
its test MSE is the exact optimum's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaml.services.demo import DemoConfig, run_demo

pytestmark = pytest.mark.slow


def test_the_exact_solve_through_the_services_settles_at_the_optimum(
    tmp_path: Path, anvil_url: str
) -> None:
    lines: list[str] = []
    config = DemoConfig(
        work_dir=tmp_path / "demo", solver="exact", key_bits=1024, chain_url=anvil_url
    )
    result = run_demo(config, say=lines.append)
    assert result.status == "FINISHED", result.error
    assert set(result.statuses.values()) == {"FINISHED"}
    assert result.verified
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert set(result.metrics) == {"1"}  # the exact model's, after the initial one
    # every trainer's part of the exact model, valued and posted; they add up to the
    # improvement the metric shows (efficiency, in validation SSE units)
    assert len(result.contributions) == 4 and len(set(result.contributions.values())) == 4
    assert sum(result.contributions.values()) > 0
    assert result.test_mse is not None and result.optimum_test_mse is not None
    assert abs(result.test_mse / result.optimum_test_mse - 1) <= 1e-6
    assert any("one exact solve" in line for line in lines)
