"""The public rules: reproducible from their documented constructions, in a few lines."""

from __future__ import annotations

import hashlib
import math

import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.protocol import rules


def independent_split(owners: list[str], fraction: float, seed: int) -> tuple[list, list]:
    """split_roles as its docstring states it, written without deltaml."""
    n = len(owners)
    t = min(n - 1, max(1, math.floor(fraction * n + 0.5)))

    def key(owner: str) -> tuple[bytes, str]:
        data = b"deltaml-split-roles/1\x00" + str(seed).encode() + b"\x00" + owner.encode()
        return hashlib.sha256(data).digest(), owner

    ordered = sorted(owners, key=key)
    return sorted(ordered[:t]), sorted(ordered[t:])


@pytest.mark.parametrize("seed", [0, 1, 7, 2**64 - 1])
@pytest.mark.parametrize("n", [2, 3, 5, 10, 64])
def test_split_roles_is_the_documented_sha256_construction(seed: int, n: int) -> None:
    owners = [f"0x{i:040x}" for i in range(n)]
    assert rules.split_roles(owners, 0.7, seed) == independent_split(owners, 0.7, seed)
    # the order the owners are listed in does not matter
    assert rules.split_roles(owners[::-1], 0.7, seed) == rules.split_roles(owners, 0.7, seed)


def test_a_known_split() -> None:
    """Pinned: a change of the construction breaks every transcript already written."""
    owners = [f"owner-{i}" for i in range(1, 6)]
    assert rules.split_roles(owners, 0.7, 0) == (
        ["owner-1", "owner-3", "owner-4", "owner-5"],
        ["owner-2"],
    )


def test_the_seed_changes_the_split_and_sizes_hold() -> None:
    owners = [f"o{i}" for i in range(10)]
    assert len({tuple(rules.split_roles(owners, 0.7, s)[1]) for s in range(20)}) > 1
    for n in range(2, 30):
        t, v = rules.split_roles([f"o{i}" for i in range(n)], 0.7, 3)
        assert len(t) == rules.n_trainers(n, 0.7) and t and v and len(t) + len(v) == n
    with pytest.raises(DeltaMLValueError):
        rules.split_roles(["only"], 0.7, 0)
    with pytest.raises(DeltaMLValueError):
        rules.split_roles(["a", "b"], 1.0, 0)


def test_the_shapley_seed_is_the_documented_hash() -> None:
    head = "ab" * 32
    digest = hashlib.sha256(b"deltaml-shapley-seed/1\x00" + head.encode()).digest()
    assert rules.shapley_seed(head) == int.from_bytes(digest[:16], "big")


def test_the_old_import_paths_are_the_same_rules() -> None:
    from deltaml.evidence import published
    from deltaml.learning import contributions, metrics
    from deltaml.ledger import payouts
    from deltaml.roles import aggregator

    assert aggregator.split_roles is rules.split_roles
    assert published.is_evaluated is rules.is_evaluated
    assert published.last_round is rules.last_round
    assert published.shapley_seed is rules.shapley_seed
    assert metrics.metric_remixer is rules.metric_remixer
    assert contributions.contribution_remixer is rules.contribution_remixer
    assert payouts.compute_payouts is rules.compute_payouts


def test_the_protocol_layer_imports_only_errors_from_deltaml() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import sys, deltaml.protocol.spec, deltaml.protocol.rules, deltaml.protocol.status;"
        "import json; print(json.dumps([m for m in sys.modules if m.startswith('deltaml')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = {m for m in json.loads(out) if not m.startswith("deltaml.protocol")}
    assert loaded == {"deltaml", "deltaml.errors"}
