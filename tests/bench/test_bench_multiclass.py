"""Smoke test of bench/multiclass.py (issue 13): it runs the protocol on iris and its
targets say what was measured. Small keys, one split; not the timings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_iris_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(
        "deltaml_bench_multiclass", BENCH / "multiclass.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--seeds", "1", "--key-bits", "1024", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (run,) = out["runs"]
    assert run["verified"] is True and run["objective_gap"] <= 1e-6
    first = out["targets"][0]
    assert first["measured"] == f"{run['accuracy']:.4f} vs {run['sklearn_accuracy']:.4f}"
    assert first["passed"] == (run["accuracy"] >= run["sklearn_accuracy"] - 0.03)
