"""Smoke test of bench/scale.py: tiny sizes, insecure keys; shape and counts, not timings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _scale() -> ModuleType:
    """bench/scale.py as a module."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("deltaml_bench_scale", BENCH / "scale.py")
    assert spec is not None and spec.loader is not None
    scale = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = scale
    spec.loader.exec_module(scale)
    return scale


def test_scale_reports_every_phase_and_the_mix_products(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scale = _scale()
    argv = ["--owners", "3", "5", "--rounds", "1", "--rows", "40", "--features", "3"]
    assert scale.main([*argv, "--key-bits", "512", "--test-keys", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sizes = out["sizes"]
    assert [s["owners"] for s in sizes] == [3, 5]
    for s in sizes:
        assert s["trainers"] + s["validators"] == s["owners"]
        assert s["contributions"] > 0 and s["training"] > 0 and s["metrics"] > 0
        assert s["shapley_method"] == "exact (closed form)"
        height = s["validators"] * (3 + 2)
        assert s["mix_products_per_evaluation"] == 2 * height**2
        assert s["mix_products_contributions"] == 2 * (s["trainers"] + 1) * height**2
    first, second = (scale.SizeResult(**s) for s in sizes)
    assert scale.exponent(first, second, "total") is not None


def test_scale_runs_each_size_on_each_worker_count(capsys: pytest.CaptureFixture[str]) -> None:
    scale = _scale()
    argv = ["--owners", "4", "--rounds", "1", "--rows", "40", "--features", "3", "--no-gas"]
    assert scale.main([*argv, "--workers", "1", "2", "--key-bits", "512", "--test-keys"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()]
    timed = [cells[2].strip() for cells in rows if len(cells) > 2 and "4 (3 + 1)" in cells[1]]
    assert timed == ["1", "2"]  # the wall-time table: the size once per worker count
