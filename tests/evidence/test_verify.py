"""``verify_transcript`` accepts an honest run and names every kind of tampering.

One small run (512-bit key, six owners: four trainers and two validators, a refresh)
writes its transcript; each test changes one thing — as an outsider who edits the
file, or as a dishonest party who signs a wrong body with its own key — and checks
that verification fails on the named check, at the named record.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from deltaml.evidence.signatures import canonical_json, sign_body
from deltaml.evidence.transcript import GENESIS, read_records, read_sealed, record_hash
from deltaml.evidence.verify import VerificationReport, verify_records, verify_transcript
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol.records import EXACT_KINDS, FORM_KINDS, OPTIONAL_KINDS, RECORD_TYPES
from deltaml.simulation import SimulationConfig, SimulationResult, owner_ids, simulate_shares

Records = list[dict[str, Any]]


@dataclass
class Run:
    path: Path
    records: Records
    sealed: dict[str, bytes]
    accounts: dict[str, Any]
    result: SimulationResult


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 6, seed=0)
    accounts = {pid: Account.create() for pid in ["buyer", "aggregator", *owner_ids(6)]}
    path = tmp_path_factory.mktemp("run") / "run.jsonl"
    config = SimulationConfig(
        rounds=9,
        eval_every=3,
        key_bits=512,
        allow_test_keys=True,
        transcript=str(path),
        deposit_wei=10**18 + 7,
    )
    result = simulate_shares(config, "linear", "regression", shares, None, accounts=accounts)
    return Run(
        path, read_records(path), read_sealed(path.with_suffix(".sealed.jsonl")), accounts, result
    )


def _find(records: Records, kind: str, round_: int | None = None, party: str | None = None) -> int:
    for i, r in enumerate(records):
        if (
            r["type"] == kind
            and (round_ is None or r["round"] == round_)
            and (party is None or r["party"] == party)
        ):
            return i
    raise LookupError(kind)


def _rechain(records: Records) -> Records:
    """What an editor who also fixes up the hash chain would write."""
    prev = GENESIS
    for seq, record in enumerate(records):
        record["seq"], record["prev"] = seq, prev
        prev = record_hash(record)
    return records


def _resign(record: dict[str, Any], account: Any) -> None:
    """A party signs the (changed) body with its own key: dishonest, not forged."""
    record["signature"] = sign_body(account, record["body"])
    record["signer"] = account.address


def _verify(records: Records, sealed: dict[str, bytes] | None) -> VerificationReport:
    return verify_records(records, sealed)


def _checks(report: VerificationReport) -> set[str]:
    return report.failed_checks()


def _at(report: VerificationReport, check: str) -> set[int | None]:
    return {f.record for f in report.failures if f.check == check}


# -- the honest run ------------------------------------------------------------------------
def test_the_honest_run_verifies(run: Run) -> None:
    assert run.result.refreshes >= 1 and len(run.result.validators) == 2
    # Evaluations 0, 3, 6, 9 are remixed by the validators in turn; the columns by the first.
    v = run.result.validators
    remixers = [(r["round"], r["party"]) for r in run.records if r["type"] == "Remix"]
    assert remixers == [(0, v[0]), (3, v[1]), (6, v[0]), (9, v[1])]
    assert [r["party"] for r in run.records if r["type"] == "RemixColumns"] == [v[0]]
    assert run.result.verified is True
    report = verify_transcript(run.path)
    assert report.ok, report.failures
    assert report.sealed and report.records == len(run.records)
    assert report.head == record_hash(run.records[-1]) == run.result.transcript_head
    checks = ("hash chain", "signature", "participant", "decryption proof", "metric", "sum")
    for check in (*checks, "remixer"):
        assert report.passed[check] > 0, check
    assert report.passed["re-randomization"] > 0 and report.passed["shapley"] > 0
    assert report.metrics == {
        r.round: r.metric for r in run.result.rounds if r.metric is not None
    } | {0: run.result.initial_metric}
    assert report.payouts_wei == run.result.payouts_wei
    assert report.refund_wei == run.result.refund_wei
    assert sum(report.payouts_wei.values()) + report.refund_wei == 10**18 + 7


def test_every_typed_record_of_a_run_reads_back_to_its_written_body(run: Run) -> None:
    """Writer and verifier share the record classes: each body the run wrote parses
    and gives back exactly the fields it had (``kind`` and ``key`` aside)."""
    kinds = set()
    for record in run.records:
        body = record["body"]
        cls = RECORD_TYPES.get(body["kind"])
        if cls is None:
            continue
        kinds.add(body["kind"])
        fields = {k: v for k, v in body.items() if k not in ("kind", "key")}
        assert cls.from_body(body).to_body() == fields, body["kind"]
    # An honest run with metrics and contributions writes every typed kind but the
    # optional ones, those of the exact route (tests/roles/test_exact_route.py) and those
    # of the Gram metric (tests/attacks/test_forms_verify.py).
    assert kinds == set(RECORD_TYPES) - OPTIONAL_KINDS - EXACT_KINDS - FORM_KINDS


def test_the_public_transcript_alone_verifies_what_the_public_can(run: Run) -> None:
    report = verify_transcript(run.path, use_sealed=False)
    assert report.ok and not report.sealed
    assert "re-randomization" not in report.passed
    assert report.skipped


def test_each_record_is_one_canonical_line_hashed_as_written(run: Run) -> None:
    lines = run.path.read_text().splitlines()
    assert len(lines) == len(run.records)
    for line, record in zip(lines, run.records, strict=True):
        assert line.encode() == canonical_json(record)
        assert hashlib.sha256(line.encode()).hexdigest() == record_hash(record)


# -- tampering ------------------------------------------------------------------------------
Mutation = Callable[[Run, Records, dict[str, bytes]], int]


def _flip_blob(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def public_ciphertext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "StatsTotal")
    blobs = records[i]["blobs"]
    digest = next(iter(blobs))
    blobs[digest] = _flip_blob(blobs[digest])
    return i


def sealed_ciphertext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "StateUpdate", 2)
    digest = records[i]["body"]["state"]["sha256"]
    raw = bytearray(sealed[digest])
    raw[7] ^= 0x10
    sealed[digest] = bytes(raw)
    return _find(records, "Sum", 2)  # where the states are used


def aggregator_invents_a_sum(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The aggregator signs a total that is not the product of the trainers' states."""
    i = _find(records, "Sum", 4)
    digest = records[i]["body"]["total"]["sha256"]
    other = sealed[records[_find(records, "Sum", 3)]["body"]["total"]["sha256"]]
    new_digest = hashlib.sha256(other).hexdigest()
    sealed[new_digest] = other
    for record in records[i:]:  # everything after refers to the new total
        text = json.dumps(record["body"]).replace(digest, new_digest)
        record["body"] = json.loads(text)
        if record["party"] == "aggregator":
            _resign(record, run.accounts["aggregator"])
    return i


def wrong_rerandomization(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "Broadcast", 5)
    exponents = records[i]["body"]["exponents"]
    exponents[0] = format(int(exponents[0], 16) + 1, "x")
    _resign(records[i], run.accounts["aggregator"])
    return i


def proof_plaintext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "MetricValue", 6)
    plaintexts = records[i]["body"]["plaintexts"]
    plaintexts[1] = format(int(plaintexts[1], 16) + 1, "x")
    _resign(records[i], run.accounts["buyer"])
    return i


def proof_randomness(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "ContributionValues")
    randomness = records[i]["body"]["randomness"]  # one per packed ciphertext
    randomness[2] = format(int(randomness[2], 16) * 3 % 2**500 + 1, "x")
    _resign(records[i], run.accounts["buyer"])
    return i


def packed_plaintext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The buyer publishes one packed plaintext of the columns one slot off."""
    i = _find(records, "ContributionValues")
    body = records[i]["body"]
    body["plaintexts"][0] = format(int(body["plaintexts"][0], 16) + (1 << body["slot_bits"]), "x")
    _resign(records[i], run.accounts["buyer"])
    return i


def dropped_packed_proof(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The last packed ciphertext of a metric vector goes unproven."""
    i = _find(records, "MetricValue", 9)
    body = records[i]["body"]
    assert len(body["plaintexts"]) >= 2
    del body["plaintexts"][-1], body["randomness"][-1]
    _resign(records[i], run.accounts["buyer"])
    return i


def slot_width(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The buyer claims slots of another width than the public rule gives."""
    i = _find(records, "MetricValue", 3)
    records[i]["body"]["slot_bits"] -= 8
    _resign(records[i], run.accounts["buyer"])
    return i


def columns_slot_width(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "ContributionValues")
    records[i]["body"]["slot_bits"] += 1
    _resign(records[i], run.accounts["buyer"])
    return i


def broken_signature(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "EncryptedResiduals", 3)
    signature = records[i]["signature"]
    records[i]["signature"] = (
        signature[:20] + ("0" if signature[20] != "0" else "1") + signature[21:]
    )
    return i


def edited_body(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """An outsider edits a signed body: the signature no longer matches."""
    i = _find(records, "EncryptedResiduals", 6)
    records[i]["body"]["rows"] += 1
    return i


def metric_number(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The buyer under-reports a metric and signs it."""
    i = _find(records, "MetricValue", 3)
    records[i]["body"]["value"] *= 0.9
    _resign(records[i], run.accounts["buyer"])
    return i


def published_statistics(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "PublicStats")
    records[i]["body"]["means"][0] += 1e-9
    _resign(records[i], run.accounts["buyer"])
    return i


def contribution(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The buyer favours one trainer and signs it."""
    i = _find(records, "ContributionValues")
    values = records[i]["body"]["values"]
    values[0], values[1] = values[1], values[0]
    _resign(records[i], run.accounts["buyer"])
    return i


def gram_entry(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "ContributionValues")
    records[i]["body"]["gram"][0][0] *= 1.0001
    _resign(records[i], run.accounts["buyer"])
    return i


def shapley_seed(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "ContributionValues")
    records[i]["body"]["seed"] += 1
    _resign(records[i], run.accounts["buyer"])
    return i


def payout(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The aggregator moves wei from a trainer to the refund and signs it."""
    i = _find(records, "Payouts")
    body = records[i]["body"]
    body["trainers_wei"][0] -= 10**15
    body["refund_wei"] += 10**15
    _resign(records[i], run.accounts["aggregator"])
    return i


def forged_signer(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """An outsider signs a trainer's state with its own key and names itself the signer."""
    i = _find(records, "StateUpdate", 1)
    _resign(records[i], Account.create())
    return i


def borrowed_address(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The record names another participant's address as signer, without its key."""
    i = _find(records, "StateUpdate", 2)
    records[i]["signer"] = run.result.addresses["buyer"]
    return i


def wrong_role(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """A validator signs a state update under its own name: it is not a trainer."""
    i = _find(records, "StateUpdate", 3)
    validator = run.result.validators[0]
    records[i]["party"] = validator
    _resign(records[i], run.accounts[validator])
    return i


def another_key(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "EncryptedSums")
    party = records[i]["party"]
    records[i]["body"]["key"] = "0" * 64
    _resign(records[i], run.accounts[party])
    return i


def rigged_split(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The aggregator declares a trainer a validator (and the reverse) against the seed."""
    body = records[0]["body"]
    t, v = body["trainers"][0], body["validators"][0]
    body["trainers"][0], body["validators"][0] = v, t
    for p in body["participants"]:
        if p["id"] in (t, v):
            p["role"] = "validator" if p["id"] == t else "trainer"
    _resign(records[0], run.accounts["aggregator"])
    return 0


def swapped_records(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """A state moved before the total it answers (chain fixed up)."""
    i = _find(records, "Broadcast", 2)
    records[i], records[i + 1] = records[i + 1], records[i]
    return i


def dropped_record(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """One validator's vector removed: the mix (now one record earlier) is not over it."""
    i = _find(records, "EncryptedResiduals", 6)
    assert records[i + 2]["type"] == "Mix"
    del records[i]
    return i + 1


# -- the remix: Mix → Remix → MetricValue, MixColumns → RemixColumns → ContributionValues ----
def remix_ciphertext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The remixed vector the buyer decrypts is altered in the public record."""
    i = _find(records, "Remix", 3)
    blobs = records[i]["blobs"]
    digest = next(iter(blobs))
    blobs[digest] = _flip_blob(blobs[digest])
    return i


def remix_columns_ciphertext(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "RemixColumns")
    blobs = records[i]["blobs"]
    digest = sorted(blobs)[1]
    blobs[digest] = _flip_blob(blobs[digest])
    return i


def forged_remixer_signature(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """An outsider signs the remix with its own key, in the remixer's name."""
    i = _find(records, "Remix", 6)
    _resign(records[i], Account.create())
    return i


def broken_remix_signature(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "RemixColumns")
    signature = records[i]["signature"]
    records[i]["signature"] = (
        signature[:30] + ("0" if signature[30] != "0" else "1") + signature[31:]
    )
    return i


def wrong_remixer(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The validator the rule does not name remixes round 3, signing as itself."""
    i = _find(records, "Remix", 3)
    other = next(v for v in run.result.validators if v != records[i]["party"])
    records[i]["party"] = other
    _resign(records[i], run.accounts[other])
    return i


def wrong_columns_remixer(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "RemixColumns")
    assert records[i]["party"] == run.result.validators[0]  # the published choice
    other = run.result.validators[1]
    records[i]["party"] = other
    _resign(records[i], run.accounts[other])
    return i


def remix_by_a_trainer(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "Remix", 9)
    trainer = run.result.trainers[0]
    records[i]["party"] = trainer
    _resign(records[i], run.accounts[trainer])
    return i


def remix_of_another_vector(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The remixer signs a remix of round 3's mixed vector as round 6's."""
    i = _find(records, "Remix", 6)
    records[i]["body"]["input"] = records[_find(records, "Mix", 3)]["body"]["mixed"]["sha256"]
    _resign(records[i], run.accounts[records[i]["party"]])
    return i


def remix_precision(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The remix claims another fixed-point exponent than one rotation adds."""
    i = _find(records, "Remix", 3)
    records[i]["body"]["vector"]["exponent"] += 1
    _resign(records[i], run.accounts[records[i]["party"]])
    return i


def skipped_remix(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    """The aggregator sends the buyer its own mix: the metric does not decrypt a remix."""
    i = _find(records, "Remix", 6)
    assert records[i + 1]["type"] == "MetricValue"
    del records[i]
    return i  # the metric, now one record earlier


def skipped_columns_remix(run: Run, records: Records, sealed: dict[str, bytes]) -> int:
    i = _find(records, "RemixColumns")
    assert records[i + 1]["type"] == "ContributionValues"
    del records[i]
    return i


CASES: list[tuple[Mutation, str]] = [
    (public_ciphertext, "ciphertexts"),
    (sealed_ciphertext, "ciphertexts"),
    (aggregator_invents_a_sum, "sum"),
    (wrong_rerandomization, "re-randomization"),
    (proof_plaintext, "decryption proof"),
    (proof_randomness, "decryption proof"),
    (packed_plaintext, "decryption proof"),
    (dropped_packed_proof, "decryption proof"),
    (slot_width, "packing"),
    (columns_slot_width, "packing"),
    (broken_signature, "signature"),
    (edited_body, "signature"),
    (metric_number, "metric"),
    (published_statistics, "statistics"),
    (contribution, "shapley"),
    (gram_entry, "gram"),
    (shapley_seed, "shapley seed"),
    (payout, "payouts"),
    (forged_signer, "participant"),
    (borrowed_address, "signature"),
    (wrong_role, "participant"),
    (another_key, "key"),
    (rigged_split, "split"),
    (swapped_records, "link"),
    (dropped_record, "link"),
    (remix_ciphertext, "ciphertexts"),
    (remix_columns_ciphertext, "ciphertexts"),
    (forged_remixer_signature, "participant"),
    (broken_remix_signature, "signature"),
    (wrong_remixer, "remixer"),
    (wrong_columns_remixer, "remixer"),
    (remix_by_a_trainer, "participant"),
    (remix_of_another_vector, "link"),
    (remix_precision, "remixer"),
    (skipped_remix, "link"),
    (skipped_columns_remix, "link"),
]


@pytest.mark.parametrize(("mutate", "check"), CASES, ids=[c[0].__name__ for c in CASES])
def test_tampering_is_detected_and_named(run: Run, mutate: Mutation, check: str) -> None:
    records, sealed = copy.deepcopy(run.records), dict(run.sealed)
    where = mutate(run, records, sealed)
    report = _verify(_rechain(records), sealed)
    assert not report.ok
    assert check in _checks(report), [str(f) for f in report.failures]
    assert where in _at(report, check), [str(f) for f in report.failures]
    assert "hash chain" not in _checks(report)  # the chain was fixed up: the check is the catch


def test_packed_decryptions_are_checked_against_the_magnitude_bound(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every metric vector and the columns are decrypted packed; the verifier unpacks them
    with the public rule and applies the bound (here one no real value meets)."""
    report = _verify(copy.deepcopy(run.records), dict(run.sealed))
    decrypted = {
        i for i, r in enumerate(run.records) if r["type"] in ("MetricValue", "ContributionValues")
    }
    assert report.passed["packing"] == len(decrypted) == 5
    monkeypatch.setattr("deltaml.crypto.packing.magnitude_limit", lambda exponent: 1)
    report = _verify(copy.deepcopy(run.records), dict(run.sealed))
    metrics = {i for i in decrypted if run.records[i]["type"] == "MetricValue"}
    assert _at(report, "packing") == metrics
    assert "magnitude bound" in next(f.detail for f in report.failures if f.check == "packing")
    # The columns are measured from the round-0 metric, which is now unproven.
    assert {f.record for f in report.failures} == decrypted


def test_a_dishonest_buyer_is_named_at_its_record(run: Run) -> None:
    """A buyer who under-reports a middle metric and signs it fails the metric check there.

    Rewriting history also moves the Shapley seed, which the chain fixes: that is named too.
    """
    records = copy.deepcopy(run.records)
    i = metric_number(run, records, {})
    report = _verify(_rechain(records), dict(run.sealed))
    seed_at = _find(records, "ContributionValues")
    assert [(f.record, f.check) for f in report.failures] == [
        (i, "metric"),
        (seed_at, "shapley seed"),
    ]
    assert "round 3" in report.failures[0].detail


def test_the_last_record_is_bound_by_the_published_head(run: Run) -> None:
    records = copy.deepcopy(run.records)
    records[-1]["body"]["refund_wei"] += 1  # an edit of the last record breaks no link ...
    report = _verify(records, dict(run.sealed))
    assert "hash chain" not in _checks(report)
    expected = run.result.transcript_head
    checked = verify_records(records, dict(run.sealed), expected_head=expected)
    assert "hash chain" in checked.failed_checks()  # ... but the head on the contract
    assert verify_records(run.records, dict(run.sealed), expected_head=expected).ok


@pytest.mark.parametrize(
    "mutate", [public_ciphertext, metric_number, contribution, swapped_records]
)
def test_without_fixing_the_chain_the_hash_chain_fails(run: Run, mutate: Mutation) -> None:
    records = copy.deepcopy(run.records)
    i = mutate(run, records, dict(run.sealed))
    report = _verify(records, dict(run.sealed))
    assert "hash chain" in _checks(report)
    assert _at(report, "hash chain") & {i, i + 1}


def test_a_truncated_transcript_is_incomplete(run: Run) -> None:
    report = _verify(copy.deepcopy(run.records[:-3]), dict(run.sealed))
    assert _checks(report) == {"completeness"}
    assert "payouts" in report.failures[0].detail and report.failures[0].record is None


def test_a_sealed_ciphertext_tampered_goes_unseen_without_the_sealed_file(run: Run) -> None:
    """What the public cannot check: without the sealed file, the digests still bind."""
    records, sealed = copy.deepcopy(run.records), dict(run.sealed)
    sealed_ciphertext(run, records, sealed)
    assert _verify(records, None).ok
    assert not _verify(records, sealed).ok


def test_a_missing_sealed_ciphertext_is_named(run: Run) -> None:
    records, sealed = copy.deepcopy(run.records), dict(run.sealed)
    i = _find(records, "StateUpdate", 4)
    del sealed[records[i]["body"]["state"]["sha256"]]
    report = _verify(records, sealed)
    assert _checks(report) == {"ciphertexts"}
    assert "sealed" in report.failures[0].detail


def test_files_can_be_verified_and_moved(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    shutil.copy(run.path, target)
    assert verify_transcript(target).sealed is False  # no sealed file next to it
    shutil.copy(run.path.with_suffix(".sealed.jsonl"), tmp_path / "sealed.jsonl")
    report = verify_transcript(target, tmp_path / "sealed.jsonl")
    assert report.ok and report.sealed and report.passed["sum"] > 0


def test_exact_shapley_values_recompute_beyond_eight_trainers(tmp_path: Path) -> None:
    """Nine trainers (sampled before): the values are exact, and a changed one is caught."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    accounts = {"buyer": Account.create()}
    path = tmp_path / "many.jsonl"
    config = SimulationConfig(
        rounds=2, eval_every=2, key_bits=512, allow_test_keys=True, transcript=str(path)
    )
    shares = split_owners(train, 13, seed=0)
    result = simulate_shares(config, "linear", "regression", shares, None, accounts=accounts)
    assert len(result.trainers) == 9 and result.verified
    records = read_records(path)
    i = _find(records, "ContributionValues")
    assert records[i]["body"]["method"] == "exact"
    assert records[i]["body"]["seed"] != 0
    records[i]["body"]["values"][4] += 1e-3 * abs(records[i]["body"]["values"][4])
    _resign(records[i], accounts["buyer"])
    report = _verify(records, read_sealed(path.with_suffix(".sealed.jsonl")))
    assert _at(report, "shapley") == {i}
