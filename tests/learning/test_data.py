"""Tests for deltaml.learning.data: loading, refusing bad input, splitting, profiles."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split as sk_train_test_split

from deltaml.errors import DataError
from deltaml.learning.data import (
    Dataset,
    load_dataset,
    make_synthetic,
    profile,
    split_owners,
    train_test_split,
)


def write_csv(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_dataset(n_rows: int = 60, n_features: int = 3, task: str = "regression") -> Dataset:
    """A data set whose first feature is the row id, so rows can be traced."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n_rows, n_features))
    X[:, 0] = np.arange(n_rows)
    if task == "classification":
        y = (np.arange(n_rows) % 3 == 0).astype(float)
        classes: tuple[str, ...] | None = ("no", "yes")
    else:
        y = rng.normal(size=n_rows)
        classes = None
    return Dataset(
        X=X,
        y=y,
        feature_names=tuple(f"f{j}" for j in range(n_features)),
        target_name="t",
        task=task,  # type: ignore[arg-type]
        source="test",
        classes=classes,
    )


def row_ids(ds: Dataset) -> list[int]:
    return [int(v) for v in ds.X[:, 0]]


# --------------------------------------------------------------------------- built-ins


def test_load_diabetes_matches_sklearn() -> None:
    ds = load_dataset("diabetes")
    bunch = sk_datasets.load_diabetes(scaled=False)
    assert (ds.n_rows, ds.n_features) == (442, 10)
    assert ds.task == "regression"
    assert ds.classes is None
    assert ds.feature_names == tuple(bunch.feature_names)
    assert ds.target_name == "target"
    assert ds.source == "diabetes"
    np.testing.assert_array_equal(ds.X, bunch.data)
    np.testing.assert_array_equal(ds.y, bunch.target)
    assert ds.X.dtype == np.float64 and ds.y.dtype == np.float64


def test_load_breast_cancer_matches_sklearn() -> None:
    ds = load_dataset("breast_cancer")
    bunch = sk_datasets.load_breast_cancer()
    assert (ds.n_rows, ds.n_features) == (569, 30)
    assert ds.task == "classification"
    assert ds.classes == ("malignant", "benign")
    np.testing.assert_array_equal(ds.X, bunch.data)
    np.testing.assert_array_equal(ds.y, bunch.target.astype(float))


def test_builtin_refuses_other_target_and_impossible_task() -> None:
    with pytest.raises(DataError, match=r"^diabetes: .*'target'"):
        load_dataset("diabetes", target="bmi")
    with pytest.raises(DataError, match=r"^diabetes: .*classification needs exactly two"):
        load_dataset("diabetes", task="classification")
    as_regression = load_dataset("breast_cancer", task="regression")
    assert as_regression.task == "regression" and as_regression.classes is None


@pytest.mark.parametrize("name", ["diabetes", "breast_cancer"])
def test_train_test_split_matches_sklearn(name: str) -> None:
    ds = load_dataset(name)
    loader = getattr(sk_datasets, f"load_{name}")
    bunch = loader(scaled=False) if name == "diabetes" else loader()
    stratify = bunch.target if ds.task == "classification" else None
    X_train, X_test, y_train, y_test = sk_train_test_split(
        bunch.data, bunch.target, test_size=0.2, random_state=0, stratify=stratify
    )
    train, test = train_test_split(ds, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(train.X, X_train)
    np.testing.assert_array_equal(test.X, X_test)
    np.testing.assert_array_equal(train.y, y_train)
    np.testing.assert_array_equal(test.y, y_test)
    assert train.feature_names == ds.feature_names and test.task == ds.task


def test_train_test_split_sizes_disjoint_and_stratified() -> None:
    ds = make_dataset(n_rows=90, task="classification")
    train, test = train_test_split(ds, test_fraction=0.3, seed=5)
    assert (train.n_rows, test.n_rows) == (63, 27)
    assert set(row_ids(train)).isdisjoint(row_ids(test))
    assert sorted(row_ids(train) + row_ids(test)) == list(range(90))
    # a third of the rows are class 1; stratification keeps that share in both parts
    assert test.y.sum() == 9 and train.y.sum() == 21
    other_train, _ = train_test_split(ds, test_fraction=0.3, seed=6)
    assert row_ids(other_train) != row_ids(train)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_train_test_split_refuses_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match="test_fraction"):
        train_test_split(make_dataset(), test_fraction=fraction)


def test_train_test_split_refuses_unsplittable_classes() -> None:
    ds = make_dataset(n_rows=20, task="classification")
    lonely = dataclasses.replace(ds, y=np.r_[1.0, np.zeros(19)])
    with pytest.raises(DataError, match="cannot split"):
        train_test_split(lonely)


# --------------------------------------------------------------------------- CSV: good


def test_load_csv_default_target_is_last_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ok.csv", "a, b ,y\n1,2,3.5\n2,1,4\n3,5,-1\n4,4,2\n\n")
    ds = load_dataset(path)
    assert ds.feature_names == ("a", "b") and ds.target_name == "y"
    assert ds.task == "regression" and ds.classes is None
    assert ds.source == str(path)
    np.testing.assert_array_equal(ds.X, [[1, 2], [2, 1], [3, 5], [4, 4]])
    np.testing.assert_array_equal(ds.y, [3.5, 4, -1, 2])


def test_load_csv_named_target_and_inferred_classification(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "cls.csv", "label,a,b\n2,1,0\n1,2,1\n2,3,0\n1,4,5\n2,5,1\n")
    ds = load_dataset(str(path), target="label")
    assert ds.feature_names == ("a", "b")
    assert ds.task == "classification"
    assert ds.classes == ("1", "2")
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0, 1])
    forced = load_dataset(str(path), target="label", task="regression")
    assert forced.task == "regression" and forced.classes is None
    np.testing.assert_array_equal(forced.y, [2, 1, 2, 1, 2])


def test_load_csv_text_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "text.csv", "a,b,sick\n1,0,yes\n2,1,no\n3,0,yes\n4,5,no\n")
    ds = load_dataset(path)
    assert ds.task == "classification"
    assert ds.classes == ("no", "yes")
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])


# --------------------------------------------------------------------------- CSV: bad

SECRET_TEXT = "hunter2secret"
SECRET_NUMBER = "31337.125"

# (file name, content, load_dataset keyword arguments, fragments the message must
# hold, a value from the file the message must not echo)
BAD_INPUTS = [
    ("empty.csv", "", {}, ["empty"], None),
    ("blank.csv", "\n \n\n", {}, ["empty"], None),
    ("header_only.csv", "a,b,y\n", {}, ["no data rows"], None),
    ("latin1.csv", b"a,b,y\n1,2,\xff\xfe\n", {}, ["UTF-8"], None),
    ("quotes.csv", f'a,b,y\n1,2,3\n"{SECRET_TEXT}"x,2,3\n', {}, ["CSV"], SECRET_TEXT),
    ("ragged.csv", "a,b,y\n1,2,3\n4,5\n", {}, ["row 2", "line 3", "2 fields", "3"], None),
    ("noheader.csv", f"1,2,3\n{SECRET_NUMBER},5,6\n", {}, ["header"], SECRET_NUMBER),
    (
        "missing.csv",
        f"a,b,y\n{SECRET_NUMBER},2,3\n4,,6\n7,8,NA\n9,1,2\n",
        {},
        ["missing", "'b'", "'y'", "row 2", "line 3"],
        SECRET_NUMBER,
    ),
    (
        "text.csv",
        f"a,b,y\n1,2,3\n4,{SECRET_TEXT},6\n7,8,9\n5,1,2\n",
        {},
        ["non-numeric", "'b'", "row 2", "line 3"],
        SECRET_TEXT,
    ),
    (
        "text_target.csv",
        f"a,b,y\n1,2,3\n4,5,{SECRET_TEXT}\n7,8,9\n5,1,2\n",
        {"task": "regression"},
        ["non-numeric", "'y'", "row 2"],
        SECRET_TEXT,
    ),
    (
        "three_labels.csv",
        f"a,b,y\n1,2,no\n4,5,{SECRET_TEXT}\n7,8,yes\n5,1,no\n",
        {},
        ["'y'", "3 distinct values", "classification"],
        SECRET_TEXT,
    ),
    (
        "unknown_target.csv",
        "a,b,y\n1,2,3\n4,5,6\n7,8,8\n5,1,2\n",
        {"target": "price"},
        ["'price'", "not found", "'a', 'b', 'y'"],
        None,
    ),
    ("empty_target.csv", "a,b,y\n1,2,3\n4,5,6\n", {"target": " "}, ["no target"], None),
    ("one_column.csv", "y\n1\n2\n3\n", {}, ["only one column", "feature"], None),
    ("duplicate.csv", "a,b,a,y\n1,2,3,4\n4,5,6,7\n", {}, ["duplicate", "'a'"], None),
    ("unnamed.csv", ",a,y\n0,1,2\n1,3,4\n", {}, ["column 1", "no name"], None),
    (
        "few_rows.csv",
        "a,b,c,y\n1,2,3,4\n5,6,7,9\n8,3,1,0\n",
        {},
        ["3 rows", "features + 1 = 4"],
        None,
    ),
    (
        "constant.csv",
        f"a,b,c,y\n1,{SECRET_NUMBER},0,1\n2,{SECRET_NUMBER},1,2\n3,{SECRET_NUMBER},0,3\n"
        f"4,{SECRET_NUMBER},1,5\n",
        {},
        ["constant feature", "'b'"],
        SECRET_NUMBER,
    ),
    (
        "constant_target.csv",
        f"a,y\n1,{SECRET_NUMBER}\n2,{SECRET_NUMBER}\n3,{SECRET_NUMBER}\n",
        {},
        ["'y'", "constant"],
        SECRET_NUMBER,
    ),
    (
        "many_classes.csv",
        f"a,b,y\n1,2,0\n4,5,1\n7,8,{SECRET_NUMBER}\n5,1,0\n",
        {"task": "classification"},
        ["'y'", "3 distinct values", "classification needs exactly two"],
        SECRET_NUMBER,
    ),
    (
        "one_class.csv",
        "a,b,y\n1,2,0\n4,5,0\n7,8,0\n5,1,0\n",
        {"task": "classification"},
        ["'y'", "1 distinct value", "exactly two"],
        None,
    ),
    (
        "infinite.csv",
        "a,b,y\n1,2,3\n4,5,6\n1e999,8,9\n5,1,2\n",
        {},
        ["non-finite", "'a'", "row 3", "line 4"],
        "1e999",
    ),
    ("nan.csv", "a,b,y\n1,2,3\n4,5,nan\n7,8,9\n", {}, ["non-finite", "'y'", "row 2"], None),
    ("inf.csv", "a,b,y\n1,-inf,3\n4,5,6\n7,8,9\n", {}, ["non-finite", "'b'", "row 1"], "-inf"),
    ("bad_task.csv", "a,b,y\n1,2,3\n4,5,6\n", {"task": "clustering"}, ["task"], None),
]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "fragments", "secret"),
    BAD_INPUTS,
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_csv_raises_one_line_data_error(
    tmp_path: Path,
    name: str,
    content: str | bytes,
    kwargs: dict[str, str],
    fragments: list[str],
    secret: str | None,
) -> None:
    path = write_csv(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        load_dataset(str(path), **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert name in message
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if secret is not None:
        assert secret not in message
    # raised on purpose, not a wrapped accident
    assert info.value.__cause__ is None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found$"):
        load_dataset(tmp_path / "nope.csv")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"folder\.csv: is a directory"):
        load_dataset(folder)


def test_message_escapes_newlines_in_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "odd.csv", 'a,"b\nc"\n1,2\n')
    with pytest.raises(DataError) as info:
        load_dataset(path, target="zz")
    assert "\n" not in str(info.value)
    assert "'b\\nc'" in str(info.value)


# --------------------------------------------------------------------------- Dataset


def test_dataset_is_immutable_and_copies() -> None:
    X = np.arange(12, dtype=float).reshape(6, 2)
    ds = Dataset(
        X=X,
        y=np.arange(6),
        feature_names=("a", "b"),
        target_name="y",
        task="regression",
        source="mem",
    )
    X[0, 0] = 99.0
    assert ds.X[0, 0] == 0.0
    assert ds.y.dtype == np.float64
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.task = "classification"  # type: ignore[misc]


def test_dataset_subset() -> None:
    ds = make_dataset(n_rows=10)
    part = ds.subset([3, 1, 7])
    assert part.n_rows == 3 and part.n_features == ds.n_features
    assert row_ids(part) == [3, 1, 7]
    np.testing.assert_array_equal(part.y, ds.y[[3, 1, 7]])
    assert (part.feature_names, part.target_name, part.source) == (
        ds.feature_names,
        ds.target_name,
        ds.source,
    )
    masked = ds.subset(ds.X[:, 0] >= 8)
    assert row_ids(masked) == [8, 9]


@pytest.mark.parametrize(
    "changes",
    [
        {"y": np.zeros(5)},
        {"feature_names": ("a",)},
        {"feature_names": ("f0", "f0", "f2")},
        {"target_name": "f1"},
        {"task": "ranking"},
        {"X": np.full((10, 3), np.inf)},
        {"task": "classification"},
        {"classes": ("a", "b")},
    ],
)
def test_dataset_refuses_inconsistent_fields(changes: dict[str, object]) -> None:
    with pytest.raises(DataError):
        dataclasses.replace(make_dataset(n_rows=10), **changes)


# --------------------------------------------------------------------------- owners


def test_split_owners_iid_sizes_disjoint_deterministic() -> None:
    ds = make_dataset(n_rows=103)
    owners = split_owners(ds, 4, seed=3)
    assert [o.n_rows for o in owners] == [26, 26, 26, 25]
    ids = [row_ids(o) for o in owners]
    assert sorted(i for owner_ids in ids for i in owner_ids) == list(range(103))
    assert [o.source for o in owners] == [f"test#owner{i}" for i in range(4)]
    assert [row_ids(o) for o in split_owners(ds, 4, seed=3)] == ids
    assert [row_ids(o) for o in split_owners(ds, 4, seed=4)] != ids
    # shuffled, not contiguous
    assert ids[0] != list(range(26))


def test_split_owners_non_iid_by_feature_gives_ordered_ranges() -> None:
    ds = make_dataset(n_rows=60)
    owners = split_owners(ds, 3, by="f1")
    assert [o.n_rows for o in owners] == [20, 20, 20]
    assert sorted(i for o in owners for i in row_ids(o)) == list(range(60))
    for lower, upper in itertools.pairwise(owners):
        assert lower.X[:, 1].max() <= upper.X[:, 1].min()
    assert np.all(np.diff(np.concatenate([o.X[:, 1] for o in owners])) >= 0)


def test_split_owners_by_target_skews_labels() -> None:
    ds = make_dataset(n_rows=60, task="classification")
    first, second = split_owners(ds, 2, by="t")
    assert first.y.max() <= second.y.min()
    assert first.y.mean() < second.y.mean()


def test_split_owners_refusals() -> None:
    ds = make_dataset(n_rows=20, n_features=3)
    with pytest.raises(DataError, match="at least 2 owners"):
        split_owners(ds, 1)
    with pytest.raises(DataError, match="features \\+ 2 = 5"):
        split_owners(ds, 5)  # 4 rows each
    assert len(split_owners(ds, 4)) == 4  # 5 rows each is enough
    with pytest.raises(DataError, match=r"'nope'.*'f0', 'f1', 'f2', 't'"):
        split_owners(ds, 2, by="nope")


# --------------------------------------------------------------------------- profile


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_profile_has_names_types_counts_and_no_values(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "p.csv",
        "height,count,flag,y\n"
        "171.25,3,0,1\n183.5,7,1,0\n165.75,12,1,1\n190.125,5,0,0\n177.375,9,1,1\n",
    )
    ds = load_dataset(path)
    result = profile(ds)
    assert result == {
        "rows": 5,
        "target": "y",
        "task": "classification",
        "columns": [
            {"name": "height", "role": "feature", "type": "float", "nulls": 0},
            {"name": "count", "role": "feature", "type": "int", "nulls": 0},
            {"name": "flag", "role": "feature", "type": "binary", "nulls": 0},
            {"name": "y", "role": "target", "type": "binary", "nulls": 0},
        ],
    }
    json.dumps(result)  # publishable as it is
    numbers = {leaf for leaf in _leaves(result) if isinstance(leaf, int | float)}
    assert numbers <= {ds.n_rows, 0}
    strings = {leaf for leaf in _leaves(result) if isinstance(leaf, str)}
    allowed = {*ds.feature_names, ds.target_name, ds.task, "feature", "target"}
    assert strings <= allowed | {"float", "int", "binary"}
    assert ds.classes is not None and not set(ds.classes) & strings - allowed


def test_profile_of_builtin_has_no_values() -> None:
    ds = load_dataset("diabetes")
    text = json.dumps(profile(ds))
    for value in (ds.X[0, 0], ds.X.min(), ds.X.max(), ds.y.mean(), ds.y[0]):
        assert repr(float(value)) not in text
        assert f"{value:.4f}" not in text


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_make_synthetic_shapes_and_determinism(task: str) -> None:
    owners = make_synthetic(3, 50, 4, task=task, seed=7)
    assert len(owners) == 3
    for i, ds in enumerate(owners):
        assert (ds.n_rows, ds.n_features) == (50, 4)
        assert ds.feature_names == ("x0", "x1", "x2", "x3") and ds.target_name == "y"
        assert ds.task == task and ds.source == f"synthetic:owner{i}"
    again = make_synthetic(3, 50, 4, task=task, seed=7)
    other = make_synthetic(3, 50, 4, task=task, seed=8)
    for a, b in zip(owners, again, strict=True):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(owners[0].X, other[0].X)
    assert not np.array_equal(owners[0].X, owners[1].X)


def test_make_synthetic_needs_standardization_and_has_signal() -> None:
    owners = make_synthetic(2, 1000, 6, seed=0, noise=0.1)
    X = np.vstack([o.X for o in owners])
    y = np.concatenate([o.y for o in owners])
    stds = X.std(axis=0)
    assert stds.max() / stds.min() > 100
    assert np.abs(X.mean(axis=0)).max() > 5
    design = np.column_stack([X, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    assert 1 - residual.var() / y.var() > 0.95


def test_make_synthetic_classification_follows_logistic_link() -> None:
    from sklearn.linear_model import LogisticRegression

    owners = make_synthetic(2, 1000, 3, task="classification", seed=1)
    X = np.vstack([o.X for o in owners])
    y = np.concatenate([o.y for o in owners])
    assert set(np.unique(y)) == {0.0, 1.0}
    assert owners[0].classes == ("0", "1")
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    accuracy = LogisticRegression().fit(Z, y).score(Z, y)
    majority = max(y.mean(), 1 - y.mean())
    assert accuracy > 0.75 and accuracy > majority + 0.15


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_owners": 0},
        {"rows_per_owner": 0},
        {"n_features": 0},
        {"task": "ranking"},
        {"noise": -1.0},
        {"noise": float("nan")},
    ],
)
def test_make_synthetic_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"n_owners": 2, "rows_per_owner": 10, "n_features": 2}
    arguments.update(kwargs)
    with pytest.raises(DataError, match="synthetic"):
        make_synthetic(**arguments)  # type: ignore[arg-type]


def test_save_csv_round_trips_exactly(tmp_path) -> None:
    from deltaml.learning.data import save_csv

    ds = load_dataset("diabetes")
    back = load_dataset(save_csv(ds, tmp_path / "a" / "d.csv"))
    assert back.feature_names == ds.feature_names and back.target_name == ds.target_name
    assert np.array_equal(back.X, ds.X) and np.array_equal(back.y, ds.y)
