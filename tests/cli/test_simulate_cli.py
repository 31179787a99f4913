"""``deltaml simulate`` as a user runs it: JSON output, reports, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deltaml.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deltaml.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_simulate_json_has_the_promised_fields() -> None:
    proc = _run("simulate", "--rounds", "12", "--eval-every", "6", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in (
        "seconds",
        "rounds",
        "objective_gap",
        "test_mse",
        "sklearn_test_mse",
        "optimum_test_mse",
        "optimum_objective",
        "baseline_note",
        "trainers",
        "validators",
    ):
        assert key in out
    assert out["rounds"] == 12 and out["key_bits"] == 2048
    assert out["objective_gap"] <= 1e-3
    assert out["test_mse"] <= 1.01 * out["sklearn_test_mse"]
    # diabetes: scikit-learn's LinearRegression is the exact optimum there, so no note
    assert out["test_mse"] <= 1.01 * out["optimum_test_mse"]
    assert abs(out["sklearn_test_mse"] / out["optimum_test_mse"] - 1) < 1e-6
    assert out["baseline_note"] == ""
    assert len(out["trainers"]) == 4 and len(out["validators"]) == 1
    # evidence: contributions, the payment split, and the run's own transcript verified
    assert set(out["contributions"]) == set(out["trainers"])
    assert set(out["payouts_wei"]) == {*out["trainers"], *out["validators"], "aggregator"}
    assert sum(out["payouts_wei"].values()) + out["refund_wei"] == out["deposit_wei"] == 10**18
    assert out["verified"] is True and out["verification_failures"] == []
    transcript = Path(out["transcript"])
    assert transcript.is_file() and transcript.parent == Path(".deltaml/runs")
    assert transcript.with_suffix(".sealed.jsonl").is_file()
    assert len(out["transcript_hash"]) == 64
    assert main(["verify", str(transcript), "--head", out["transcript_hash"]]) == 0


def test_simulate_report_on_a_csv_classification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    path = tmp_path / "cancer.csv"
    header = ",".join(f"f{i}" for i in range(5)) + ",label"
    rows = [
        ",".join(f"{v:.6g}" for v in x[:5]) + f",{int(t)}"
        for x, t in zip(data.data, data.target, strict=True)
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    code = main(
        [
            "simulate",
            "--dataset",
            str(path),
            "--target",
            "label",
            "--owners",
            "4",
            "--rounds",
            "8",
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "logistic" in out and "test AUC" in out and "3 trainers, 1 validator" in out
    assert "contributions" in out and "payouts of a 1000000000000000000 wei deposit" in out
    assert "refund" in out and ": verified (" in out
    assert list(Path(".deltaml/runs").glob("*.jsonl"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("a,b,y\n1,2,3\n4,,6\n7,8,9\n1,1,1\n", "missing"),
        ("a,b,y\n1,2,3\n4,zz,6\n7,8,9\n1,1,1\n", "non-numeric"),
        ("a,b,y\n1,2,3\n2,1,5\n", "fewer"),
        ("a,b,y\n1,2,3\n1,3,4\n1,4,5\n1,5,7\n1,6,2\n", "constant"),
        ("y\n1\n2\n3\n", "feature"),
        ("a,b,y\n1,2,3\n4,1e308,6\n7,8,9\n1,1,1\n", "too large in column 'b' at row 2"),
        ("a,b,y\n1,2,3\n4,-1e154,6\n7,8,9\n1,1,1\n", "too large in column 'b' at row 2"),
        ("a,y\n1,2\n", "only one data row"),
    ],
)
def test_bad_csv_is_one_clear_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    proc = _run("simulate", "--dataset", str(path), "--quiet", "--owners", "2")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and problem in lines[0].lower()
    assert "Traceback" not in proc.stderr


def test_unknown_target_and_bad_options(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{i},{i * i % 7},{i % 5}" for i in range(30)) + "\n")
    proc = _run("simulate", "--dataset", str(path), "--target", "nope", "--quiet")
    assert proc.returncode == 1 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("simulate", "--owners", "0")
    assert proc.returncode == 2 and "at least 1" in proc.stderr
    proc = _run("simulate", "--owners", "1", "--quiet")
    assert proc.returncode == 1 and "at least 2" in proc.stderr


@pytest.mark.parametrize("suffix", [".json", ".onnx"])
def test_simulate_writes_the_trained_model(suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--model-out``: the model a data scientist takes away, JSON or ONNX."""
    from deltaml.estimator import TrainedModel
    from deltaml.learning.data import load_dataset

    path = Path("out") / f"model{suffix}"
    args = ["simulate", "--dataset", "breast_cancer", "--owners", "3", "--rounds", "3"]
    args += ["--eval-every", "3", "--no-chain", "--json", "--quiet", "--model-out", str(path)]
    assert main(args) == 1  # the folder does not exist: refused before the run
    assert "does not exist" in capsys.readouterr().err
    path.parent.mkdir()
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    ds = load_dataset("breast_cancer")
    labels = np.where(
        out["intercept"] + ds.X @ np.array(out["coefficients"]) > 0, "benign", "malignant"
    )
    if suffix == ".json":
        model = TrainedModel.load(path)
        assert model.classes == ("malignant", "benign") and model.features == ds.feature_names
        assert (model.predict(ds.X) == labels).all()
    else:
        ort = pytest.importorskip("onnxruntime")
        predicted = ort.InferenceSession(str(path)).run(None, {"X": ds.X})[0]
        assert (predicted == labels).all()


@pytest.mark.slow
def test_simulate_solver_exact(tmp_path: Path) -> None:
    """``--solver exact``: the optimum, its metric, verified and settled on the chain."""
    transcript = str(tmp_path / "run.jsonl")
    args = ("--solver", "exact", "--disclose-model", "--transcript", transcript)
    proc = _run("simulate", *args, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rounds"] == 1 and out["verified"] is True
    assert set(out["validation_metric"]) == {"1"} and out["initial_metric"] > 0
    assert out["chain"]["status"] == "SETTLED"
    assert abs(out["objective_gap"]) <= 1e-6
    assert abs(out["test_mse"] / out["optimum_test_mse"] - 1) <= 1e-6
