"""``deltaml verify`` as a user runs it: a summary and exit 0, or each failure and exit 3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deltaml.cli import EXIT_ERROR, EXIT_NOT_VERIFIED, main
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, simulate_shares


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    path = tmp_path_factory.mktemp("run") / "run.jsonl"
    config = SimulationConfig(
        rounds=3, key_bits=512, allow_test_keys=True, transcript=str(path), verify=False
    )
    simulate_shares(config, "linear", "regression", split_owners(train, 5, seed=0), None)
    return path


def _copy(transcript: Path, target: Path) -> Path:
    shutil.copy(transcript, target / "run.jsonl")
    shutil.copy(transcript.with_suffix(".sealed.jsonl"), target / "run.sealed.jsonl")
    return target / "run.jsonl"


def test_an_honest_transcript_verifies(
    transcript: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(transcript)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{transcript}: verified"
    assert "sealed ciphertexts" in out and "decryption proof" in out
    assert "not checkable publicly" in out and "mixing rotations" in out


def test_json_report_and_public_only(transcript: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(transcript), "--public-only", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["sealed"] is None and report["failures"] == []
    assert report["passed"]["signature"] == report["records"]


def test_a_tampered_transcript_names_what_failed(
    transcript: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(transcript, tmp_path)
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"type":"MetricValue"' in line)
    record = json.loads(lines[index])
    record["body"]["value"] = record["body"]["value"] / 2
    lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(path)]) == EXIT_NOT_VERIFIED
    out = capsys.readouterr().out
    assert "NOT verified" in out.splitlines()[0]
    assert f"FAIL record {index} (MetricValue): signature" in out
    assert f"FAIL record {index + 1} (" in out and "hash chain" in out


def test_a_wrong_published_head_fails(transcript: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(transcript), "--head", "ab" * 32]) == EXIT_NOT_VERIFIED
    assert "published head" in capsys.readouterr().out


def test_a_record_missing_fields_is_a_format_failure(
    transcript: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(transcript, tmp_path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[3])
    del record["signature"]
    lines[3] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(path)]) == EXIT_NOT_VERIFIED
    assert "FAIL record 3 (EncryptedSums): format: missing field(s) signature" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such transcript"),
        ("", "empty"),
        ("{not json\n", "line 1 is not JSON"),
        ('{"seq": 0}\n[1, 2]\n', "line 2 is not a JSON object"),
        (b"\xff\xfe\x00", "cannot read"),
    ],
)
def test_a_missing_or_malformed_file_is_one_line_and_exit_1(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "t.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "deltaml.cli", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("deltaml verify: error:") and problem in lines[0]
    assert str(path) in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_malformed_sealed_file_or_a_directory_is_exit_1(
    transcript: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "sealed.jsonl"
    bad.write_text('{"sha256": "00"}\n')
    assert main(["verify", str(transcript), "--sealed", str(bad)]) == EXIT_ERROR
    assert "line 1 is not a sealed ciphertext entry" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == EXIT_ERROR
    assert "is a directory" in capsys.readouterr().err
