"""Node pieces: request specs, the decryption policy, keys at rest, resumable transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deltaml.crypto import generate_keypair
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.estimator import TrainedModel
from deltaml.evidence.transcript import TranscriptWriter, read_records, sealed_path_for
from deltaml.protocol import messages as m
from deltaml.services.buyer import open_key, parse_request_spec, seal_key

SPEC = {"features": ["age", "bmi"], "target": "y", "owners": 3}


def test_a_request_spec_gets_defaults_and_clear_errors() -> None:
    spec = parse_request_spec(SPEC)
    assert spec["model"] == "linear" and spec["rounds"] == 12 and spec["key_bits"] == 2048
    bad = [
        ({**SPEC, "colour": "red"}, "unknown field(s) colour"),
        ({"features": ["a"], "target": "y"}, "needs 'owners'"),
        ({**SPEC, "rounds": "ten"}, "rounds has the wrong type"),
        ({**SPEC, "rounds": True}, "rounds must be a number"),
        ({**SPEC, "owners": 1}, "owners must be at least 2"),
        ({**SPEC, "target": "age"}, "target cannot also be a feature"),
        ({**SPEC, "features": []}, "non-empty list"),
        ({**SPEC, "model": "forest"}, "linear or logistic"),
        ({**SPEC, "target_improvement": 100}, "target_improvement must be at least 0 and below"),
        (["not", "a", "mapping"], "mapping"),
    ]
    for doc, message in bad:
        with pytest.raises(
            DeltaMLValueError, match=message.replace("(", r"\(").replace(")", r"\)")
        ):
            parse_request_spec(doc)


def test_the_private_key_at_rest_needs_the_password() -> None:
    _, private = generate_keypair(512, allow_test_keys=True)
    sealed = seal_key(private, "correct horse")
    assert str(private.p) not in json.dumps(sealed)
    assert open_key(sealed, "correct horse").p == private.p
    with pytest.raises(DeltaMLValueError, match="wrong password"):
        open_key(sealed, "wrong")


def test_the_buyer_node_decrypts_only_what_the_spec_allows(tmp_path: Path) -> None:
    from eth_account import Account

    from deltaml.services.buyer import BuyerConfig, BuyerNode

    node = BuyerNode(
        BuyerConfig(
            account=Account.create(),
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'b.sqlite'}",
            work_dir=tmp_path,
            key_password="pw",
        )
    )
    spec = m.TrainingSpec(model="linear", rounds=6, eval_every=3, contributions=False)
    public, _ = generate_keypair(512, allow_test_keys=True)
    from deltaml.crypto import EncryptedVector

    vector = EncryptedVector.encrypt(public, np.zeros(3), 40)
    for round_ in (0, 3, 6):
        node._allow(1, spec, m.MetricRequest(round_, vector, 10))
    for round_ in (1, 4, 7):
        with pytest.raises(ProtocolError, match="no evaluation"):
            node._allow(1, spec, m.MetricRequest(round_, vector, 10))
    with pytest.raises(ProtocolError, match="did not ask for contributions"):
        node._allow(1, spec, m.GramRequest((vector,), 0))
    node._allow(1, spec, m.MetricRequest(3, vector, 10))
    node._allow(1, spec, m.MetricRequest(3, vector, 10))
    with pytest.raises(ProtocolError, match="too many times"):
        node._allow(1, spec, m.MetricRequest(3, vector, 10))
    node.client.close()


def test_a_reopened_transcript_goes_on_from_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with path.open("w") as public, sealed_path_for(path).open("w") as sealed:
        writer = TranscriptWriter(public=public, sealed=sealed, keep=False)
        for i in range(3):
            writer.append(
                party="a",
                signer="",
                body={"kind": "K", "i": i},
                signature="",
                sealed_blobs={f"d{i}": b"x"},
            )
        head, count = writer.head, writer.count
        writer.append(party="a", signer="", body={"kind": "K", "i": 3}, signature="")  # lost
    reopened = TranscriptWriter.reopen(path, head, count)
    reopened.append(
        party="a",
        signer="",
        body={"kind": "K", "i": 99},
        signature="",
        sealed_blobs={"d0": b"x", "d9": b"y"},
    )
    reopened.public.close()  # type: ignore[union-attr]
    reopened.sealed.close()  # type: ignore[union-attr]
    records = read_records(path)
    assert [r["body"]["i"] for r in records] == [0, 1, 2, 99]
    assert records[3]["prev"] == head
    digests = [
        json.loads(line)["sha256"] for line in sealed_path_for(path).read_text().splitlines()
    ]
    assert digests == ["d0", "d1", "d2", "d9"]
    with pytest.raises(DeltaMLValueError, match="does not hold"):
        TranscriptWriter.reopen(path, "00" * 32, 4)


def test_a_trained_model_file_predicts_and_refuses_garbage(tmp_path: Path) -> None:
    model = TrainedModel("linear", ("a", "b"), "y", np.array([2.0, -1.0]), 0.5, 12)
    path = model.save(tmp_path / "model.json")
    loaded = TrainedModel.load(path)
    assert loaded.predict([[1.0, 1.0], [0.0, 2.0]]).tolist() == [1.5, -1.5]
    with pytest.raises(DeltaMLValueError, match="2 features"):
        loaded.predict([[1.0]])
    with pytest.raises(DeltaMLValueError, match="classification"):
        loaded.predict_proba([[1.0, 1.0]])
    logistic = TrainedModel("logistic", ("a",), "y", np.array([1.0]), 0.0)
    assert logistic.predict([[3.0], [-3.0]]).tolist() == [1.0, 0.0]
    assert logistic.predict_proba([[0.0]])[0].tolist() == [0.5, 0.5]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DeltaMLValueError, match="not a deltaml-model/1"):
        TrainedModel.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("model", "task", "classes"),
    [("logistic", "classification", ("malignant", "benign")), ("linear", "regression", None)],
)
def test_an_owner_reads_its_csv_as_the_request_s_model_type_needs(
    tmp_path: Path, model: str, task: str, classes: tuple[str, ...] | None
) -> None:
    """A logistic request used to fail on every owner: the columns were re-selected
    without the class labels, so a two-class target raised on the first job."""
    from deltaml.learning.data import load_dataset, save_csv
    from deltaml.services.owner import select_columns

    source = load_dataset("breast_cancer")
    path = save_csv(source, tmp_path / "cancer.csv")
    features = [source.feature_names[3], source.feature_names[0]]
    ds = select_columns(path, features, source.target_name, model)
    assert ds.task == task and ds.classes == (None if classes is None else ("0", "1"))
    assert ds.feature_names == tuple(features)
    np.testing.assert_array_equal(ds.X[:, 1], source.X[:, 0])
    np.testing.assert_array_equal(ds.y, source.y)
