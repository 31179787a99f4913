"""What the exact solve's checks remember between records (one dict on the verifier)."""

from __future__ import annotations

from typing import Any


def exact_state(v: Any) -> dict[str, Any]:
    state = getattr(v, "_exact", None)
    if state is None:
        state = v._exact = {
            "systems": {},
            "masked": {},
            "checks": {},
            "digests": {},
            "sums": None,
            "solution": None,
        }
    return state
