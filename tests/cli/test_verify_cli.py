"""``deltaml verify`` as a user runs it: a summary and exit 0, or each failure and exit 3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


# -- against the chain ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def on_chain(embedded_node_url: str, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A run and a deployed Marketplace on a chain other processes can reach."""
    from eth_account import Account

    from deltaml.ledger.accounts import fund_from_dev_account, generate_account
    from deltaml.ledger.chain import RpcChain
    from deltaml.ledger.web3_ledger import Web3Ledger
    from evidence.chain_testkit import ETH, Escrow, new_accounts, simulate

    folder = tmp_path_factory.mktemp("chain-run")
    chain = RpcChain(embedded_node_url)
    deployer = generate_account()
    fund_from_dev_account(chain, deployer.address, 10 * ETH, demo=True)
    arbiter = Account.create()
    fund_from_dev_account(chain, arbiter.address, ETH, demo=True)
    escrow = Escrow(Web3Ledger.deploy(chain, deployer), arbiter=arbiter)
    run = simulate(folder, "run", new_accounts())
    return SimpleNamespace(url=embedded_node_url, escrow=escrow, run=run, arbiter=arbiter)


def _request(on_chain: SimpleNamespace, folder: Path, **posted: Any) -> tuple[int, Path]:
    """A finished request of the run, its transcript bound to it; ``posted`` changes
    what the aggregator posts (``final_metric``, ``contributions``)."""
    from evidence.chain_testkit import bind

    escrow, run = on_chain.escrow, on_chain.run
    rid = escrow.open(run)
    path, head = bind(run, escrow.binding(rid), folder / "run.jsonl")
    escrow.finish(run, rid, head, **posted)
    return rid, path


def test_without_a_chain_it_says_it_was_not_checked_against_one(
    on_chain: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(on_chain.run.path)]) == 0
    assert "NOT checked against a chain" in capsys.readouterr().out


def test_verified_against_the_chain(
    on_chain: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid, path = _request(on_chain, tmp_path)
    args = ["verify", str(path), "--chain-url", on_chain.url, "--request-id", str(rid)]
    assert main(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{path}: verified"
    contract = on_chain.escrow.ledger.contract_address
    assert f"checked against request {rid} of contract {contract}" in out
    assert "key fingerprint 1" in out and "NOT checked" not in out
    assert "the contract is the one the transcript names" in out
    assert main([*args, "--contract", contract]) == 0
    assert "the contract is the one the transcript names" not in capsys.readouterr().out
    assert main([*args, "--contract", contract, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["chain"]["request_id"] == rid


def test_numbers_posted_that_the_evidence_does_not_give_are_named_lines(
    on_chain: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    final = on_chain.run.final
    weights = list(final["contribution_weights"])
    rid, path = _request(
        on_chain,
        tmp_path,
        final_metric=int(final["final_metric"]) // 2,
        contributions=[sum(weights), *[0] * (len(weights) - 1)],
    )
    args = ["verify", str(path), "--chain-url", on_chain.url, "--request-id", str(rid)]
    assert main(args) == EXIT_NOT_VERIFIED
    out = capsys.readouterr().out
    assert "NOT verified (2 failed checks)" in out.splitlines()[0]
    fails = [line.strip() for line in out.splitlines() if line.strip().startswith("FAIL")]
    assert len(fails) == 2
    assert fails[0].startswith("FAIL transcript: metrics: posted initial and final metric")
    assert fails[1].startswith("FAIL transcript: contributions: the payouts posted are not")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--request-id", "1"], "--chain-url and --request-id go together"),
        (["--chain-url", "http://127.0.0.1:9"], "--chain-url and --request-id go together"),
        (["--contract", "0x" + "00" * 20], "--contract needs --chain-url"),
    ],
)
def test_chain_options_go_together(
    on_chain: SimpleNamespace, args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(on_chain.run.path), *args]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]


# -- the arbiter -----------------------------------------------------------------------------
@pytest.fixture
def arbiter_key(on_chain: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from deltaml.ledger.accounts import save_keystore

    monkeypatch.setenv("DELTAML_PASSWORD", "arbiter password")
    return save_keystore(
        on_chain.arbiter, tmp_path / "arbiter.json", "arbiter password", iterations=2**4
    )


@pytest.mark.parametrize("honest", [True, False], ids=["upheld", "voided"])
def test_the_arbiter_resolves_a_dispute_by_the_chain_check(
    on_chain: SimpleNamespace,
    arbiter_key: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    honest: bool,
) -> None:
    from deltaml.ledger.base import RequestStatus, Role

    final = on_chain.run.final
    posted = {} if honest else {"final_metric": int(final["final_metric"]) // 2}
    rid, path = _request(on_chain, tmp_path, **posted)
    buyer = on_chain.escrow.party(on_chain.run.accounts["buyer"], Role.BUYER)
    buyer.dispute(rid, b"\x01" * 32)
    args = ["arbiter", "resolve", "--transcript", str(path), "--key", str(arbiter_key)]
    args += ["--chain-url", on_chain.url, "--request-id", str(rid)]
    assert main([*args, "--dry-run"]) == 0
    assert "nothing sent" in capsys.readouterr().out
    assert buyer.request(rid).status == RequestStatus.DISPUTED
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    status = buyer.request(rid).status
    if honest:
        assert status == RequestStatus.SETTLED
        assert out[-1].startswith(f"request {rid}: UPHELD")
    else:
        assert status == RequestStatus.FAILED
        # the payout root posted with the better metric is the split by it: both fail
        failed = "2 check(s) failed: contributions; metrics"
        assert out[-1] == f"request {rid}: VOIDED: the deposit goes back ({failed})"
    # resolved: a second call is refused in one line
    assert main(args) == EXIT_ERROR
    assert "not disputed" in capsys.readouterr().err


def test_only_the_named_arbiter_may_resolve(
    on_chain: SimpleNamespace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eth_account import Account

    from deltaml.ledger.accounts import save_keystore

    monkeypatch.setenv("DELTAML_PASSWORD", "pw")
    key = save_keystore(Account.create(), tmp_path / "other.json", "pw", iterations=2**4)
    rid, path = _request(on_chain, tmp_path)
    args = ["arbiter", "resolve", "--transcript", str(path), "--key", str(key)]
    assert main([*args, "--chain-url", on_chain.url, "--request-id", str(rid)]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the arbiter of request" in err[0]


def test_an_unknown_request_on_chain_is_one_line_and_exit_1(
    on_chain: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = _request(on_chain, tmp_path)
    args = ["verify", str(path), "--chain-url", on_chain.url, "--request-id", "999999"]
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deltaml verify: error:"), err


def test_a_simulated_run_verifies_against_the_chain_it_settled_on(
    embedded_node_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``deltaml simulate --chain-url`` escrows, joins, posts and settles; its transcript's
    final record names that request, and ``deltaml verify --chain-url`` checks it."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    path = tmp_path / "run.jsonl"
    config = SimulationConfig(
        rounds=2,
        key_bits=512,
        allow_test_keys=True,
        transcript=str(path),
        chain_url=embedded_node_url,
    )
    result = simulate_shares(config, "linear", "regression", split_owners(train, 4), None)
    assert result.settlement is not None and result.verified
    rid = result.settlement.request_id
    args = ["verify", str(path), "--chain-url", embedded_node_url, "--request-id", str(rid)]
    assert main([*args, "--contract", result.settlement.contract]) == 0
    out = capsys.readouterr().out
    assert f"checked against request {rid} of contract {result.settlement.contract}" in out
    assert "(Settled)" in out
