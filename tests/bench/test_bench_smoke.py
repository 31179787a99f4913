"""Smoke tests of the benchmarks: small insecure keys, few rounds, JSON shape and labels.

They check that the scripts run and report what they claim (an extrapolation is
labelled as one), not the timings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"deltaml_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _run_json(module: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert module.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_core_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    core = _load("core")
    out = _run_json(
        core,
        ["--key-bits", "1024", "--test-keys", "--rounds", "4", "--thesis-rounds", "2"],
        capsys,
    )
    assert out["runs"] == 1
    assert out["machine"]["cpu_model"]
    results = out["results"]
    assert set(results) == {
        "sklearn_centralized",
        "plaintext_federated_admm",
        "ours_encrypted",
        "thesis_protocol",
    }
    ours, thesis = results["ours_encrypted"], results["thesis_protocol"]
    # Trainers' products: two d x 2d blocks' worth per trainer, independent of rows.
    assert ours["products_per_round"] == 4 * 11 * 22
    # The thesis protocol: two products per sample and feature, plus the small terms.
    assert thesis["products_per_round"] == sum(thesis["products_per_round_breakdown"].values())
    assert thesis["max_abs_diff_vs_plaintext_gd"] < 1e-6
    assert ours["max_abs_diff_vs_plaintext_admm"] < 1e-6
    assert abs(results["sklearn_centralized"]["objective_gap"]) < 1e-9
    # Fewer than 100 thesis rounds: the extrapolation is there and says what it is.
    assert "EXTRAPOLATED" in out["extrapolation"]["label"]
    assert any("EXTRAPOLATED" in t["target"] for t in out["targets"])


def test_core_text_labels_extrapolation(capsys: pytest.CaptureFixture[str]) -> None:
    core = _load("core")
    argv = ["--key-bits", "1024", "--test-keys", "--rounds", "2", "--thesis-rounds", "1"]
    assert core.main(argv) == 0
    text = capsys.readouterr().out
    assert "EXTRAPOLATION, not measured" in text
    assert "Machine:" in text and "Runs: 1" in text


def test_targets_small(capsys: pytest.CaptureFixture[str]) -> None:
    targets = _load("targets")
    out = _run_json(
        targets,
        [
            "synthetic",
            "--key-bits",
            "1024",
            "--test-keys",
            "--owners",
            "4",
            "--rows",
            "40",
            "--features",
            "3",
            "--rounds",
            "3",
        ],
        capsys,
    )
    case = out["cases"]["synthetic"]
    # The initial model and the last round only: metrics are evaluated sparsely by default.
    assert case["evaluations"] == 2
    assert case["products_per_round"] == case["trainers"] * 4 * 8
    # The verdict is the measured figure held against the goal, not a constant.
    row = out["targets"][0]
    assert row["goal"] == f"<= {targets.TARGET_SYNTHETIC_SECONDS:.0f}"
    assert row["passed"] is (float(row["measured"]) <= targets.TARGET_SYNTHETIC_SECONDS)
