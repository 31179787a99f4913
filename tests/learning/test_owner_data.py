"""Owners' real files: profiled without a value, their problems said in plain words,
the usable ones offered, and every owner coding a logistic target the same way."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from deltaml.errors import DataError
from deltaml.learning.data import (
    MAX_ABS_VALUE,
    load_dataset,
    profile_csv,
    save_csv,
    split_owners,
    train_test_split,
)
from deltaml.services.owner import OwnerConfig, OwnerNode, select_columns
from deltaml.simulation import SimulationConfig, simulate_shares


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_profile_assumes_no_target_and_says_each_problem_without_a_value(
    tmp_path: Path,
) -> None:
    rows = [f"{i},{i * 7 % 5},{'yes' if i % 2 else 'no'},{i if i != 3 else ''}" for i in range(9)]
    rows[5] = "5,1e200,yes,5"
    path = _write(tmp_path / "mixed.csv", "age,dose,outcome,weight\n" + "\n".join(rows) + "\n")
    prof = profile_csv(path)
    assert prof["rows"] == 9 and prof["target"] == "" and prof["task"] == ""
    columns = {c["name"]: c for c in prof["columns"]}  # type: ignore[attr-defined,index]
    assert set(columns) == {"age", "outcome", "weight"}  # dose is not usable
    assert columns["outcome"]["type"] == "text" and columns["weight"]["nulls"] == 1
    assert columns["age"]["type"] == "int" and columns["age"]["role"] == "column"
    problems = prof["problems"]
    assert problems == [
        f"value infinite, NaN or too large (magnitude {MAX_ABS_VALUE:.3g} or more) in column "
        "'dose' at row 6 (line 7): the column is not offered until that is fixed",
        "non-numeric value in column 'outcome' at row 1 (line 2): it holds text, so it can "
        "only be a categorical column of a request that names its levels, or the target "
        "of a logistic request that names its classes",
        "missing values in column 'weight' (1 row): only requests that let it be missing "
        "can use it",
    ]
    assert "1e200" not in str(prof) and "yes" not in str(prof)


def test_a_node_starts_with_whatever_files_it_has(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _write(folder / "good.csv", "a,b,y\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(9)))
    _write(folder / "labels.csv", "a,label\n1,sick\n2,sick\n3,sick\n")  # one class, as text
    (folder / "broken.csv").write_bytes(b"\xff\xfe\x00garbage")
    node = OwnerNode(
        OwnerConfig(
            account=Account.create(),
            data=[folder],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'owner.sqlite'}",
            work_dir=tmp_path / "node",
        )
    )
    try:
        assert set(node.datasets) == {"good", "labels"}
        assert [p["name"] for p in node.profiles] == ["good", "labels"]
        assert list(node.unusable) == ["broken"] and "not a UTF-8" in node.unusable["broken"]
        # the one-class text target is usable by a request that names its classes
        ds = select_columns(node.datasets["labels"], ["a"], "label", "logistic", ["well", "sick"])
        assert ds.y.tolist() == [1.0, 1.0, 1.0] and ds.classes == ("well", "sick")
    finally:
        node.store.close()


def test_every_owner_codes_the_classes_alike_even_with_one_class(tmp_path: Path) -> None:
    """Coding labels by each owner's sorted values would turn an owner's only class
    into 0 — a positive-only owner would train as negative. The request's pair rules."""
    only_positive = _write(tmp_path / "pos.csv", "a,b,y\n1,2,1\n2,1,1\n3,3,1\n")
    ds = select_columns(only_positive, ["b", "a"], "y", "logistic")
    assert ds.y.tolist() == [1.0, 1.0, 1.0] and ds.classes == ("0", "1")
    assert ds.feature_names == ("b", "a") and ds.X[:, 1].tolist() == [1.0, 2.0, 3.0]
    only_negative = _write(tmp_path / "neg.csv", "a,b,y\n1,2,0.0\n2,1,0\n")
    assert select_columns(only_negative, ["a", "b"], "y", "logistic").y.tolist() == [0.0, 0.0]
    # Labels that sort the other way round still follow the request's order.
    text = _write(tmp_path / "text.csv", "a,note,y\n1,x,yes\n2,y,no\n3,z,yes\n")
    named = select_columns(text, ["a"], "y", "logistic", ["yes", "no"])
    assert named.y.tolist() == [0.0, 1.0, 0.0]  # "no" is the positive class here
    with pytest.raises(DataError, match=r"other than the request's classes .* at row 1 \(line 2\)"):
        select_columns(text, ["a"], "y", "logistic", ["no", "maybe"])
    with pytest.raises(DataError, match="at row 1"):
        select_columns(text, ["a"], "y", "logistic")  # text labels need named classes
    with pytest.raises(DataError, match="non-numeric value in column 'note'"):
        select_columns(text, ["a", "note"], "y", "logistic", ["no", "yes"])


def test_a_positive_only_owner_trains_with_the_others(tmp_path: Path) -> None:
    """Through the protocol: one owner holds only the positive class and the model is
    as good as scikit-learn's on the same rows."""
    data = load_dataset("breast_cancer")
    train, test = train_test_split(data, 0.2, 0)
    positives = train.subset(train.y == 1)
    rest = train.subset(train.y == 0)
    shares = [
        positives.subset(np.arange(60)),
        *split_owners(
            train.subset(np.r_[np.flatnonzero(train.y == 0), np.flatnonzero(train.y == 1)[60:]]),
            3,
            seed=0,
        ),
    ]
    assert rest.n_rows > 0
    owners = []
    for i, share in enumerate(shares):
        path = save_csv(share, tmp_path / f"owner{i}.csv")
        owners.append(select_columns(path, list(data.feature_names), "target", "logistic"))
    assert owners[0].y.min() == 1.0
    config = SimulationConfig(
        rounds=5,
        eval_every=5,
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        verify=False,
        contributions=False,
    )
    result = simulate_shares(config, "logistic", "classification", owners, test)
    assert abs(result.test["test_auc"] - result.test["sklearn_test_auc"]) <= 0.01


@pytest.mark.parametrize("value", ["1e154", "-1e308", "1e142", "inf"])
def test_a_value_beyond_the_encoding_is_refused_naming_file_column_and_row(
    tmp_path: Path, value: str
) -> None:
    path = _write(tmp_path / "big.csv", f"a,b,y\n1,2,3\n2,{value},5\n3,1,4\n4,4,4\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy warning reaches the user
        with pytest.raises(DataError) as caught:
            load_dataset(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "column 'b' at row 2 (line 3)" in message
    assert value not in message.replace("infinite", "")  # never the value
    ok = _write(tmp_path / "ok.csv", "a,b,y\n1,2,3\n2,1e140,5\n3,1,4\n4,4,4\n")
    assert load_dataset(ok).X[1, 1] == 1e140


def test_a_one_row_file_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.csv", "a,y\n1,2\n")
    with pytest.raises(DataError, match="only one data row"):
        load_dataset(path)
    # an owner's share of one row is the federation's business, not an error
    assert select_columns(path, ["a"], "y").n_rows == 1


def test_a_logistic_request_may_name_its_classes_and_the_aggregator_keeps_them() -> None:
    from deltaml.services.aggregator import Requirements, request_hash
    from deltaml.services.buyer import parse_request_spec

    base = {"model": "logistic", "features": ["a"], "target": "y", "owners": 2}
    assert parse_request_spec(base)["classes"] is None
    assert parse_request_spec({**base, "classes": ["well", "sick"]})["classes"] == ["well", "sick"]
    for bad, message in [
        (["x"], "two labels"),
        (["x", "x"], "two different"),
        ([1, 2], "two labels"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_request_spec({**base, "classes": bad})
    with pytest.raises(ValueError, match="only apply to a logistic"):
        parse_request_spec({**base, "model": "linear", "classes": ["a", "b"]})
    # What the buyer commits to on chain is what the aggregator hashes, with and without.
    for extra in ({}, {"classes": ["well", "sick"]}):
        sent = {"features": ["a"], "target": "y", "min_rows": 1, "owners": 2, **extra}
        kept = Requirements(**sent).model_dump(exclude_none=True)
        assert kept == sent and request_hash({}, kept) == request_hash({}, sent)


def test_a_text_column_is_offered_only_as_a_named_classes_target() -> None:
    from deltaml.services.aggregator import matching_dataset

    columns = [
        {"name": "a", "type": "float", "nulls": 0},
        {"name": "note", "type": "text", "nulls": 0},
        {"name": "label", "type": "text", "nulls": 0},
        {"name": "y", "type": "binary", "nulls": 0},
    ]
    owner = {"datasets": [{"name": "d", "rows": 10, "columns": columns}]}
    req = {"features": ["a"], "target": "label", "min_rows": 1}
    assert matching_dataset(owner, req) is None  # a text target, no classes named
    assert matching_dataset(owner, {**req, "classes": ["no", "yes"]}) == "d"
    assert matching_dataset(owner, {**req, "features": ["a", "note"], "target": "y"}) is None
    assert matching_dataset(owner, {**req, "target": "y"}) == "d"
