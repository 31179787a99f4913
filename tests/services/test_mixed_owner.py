"""An owner's mixed table as a request names it: empty cells and categorical columns
encoded alike, what was done said in counts, and a file the request cannot use refused
in one line naming file, column and row, without stopping the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from deltaml.errors import DataError
from deltaml.protocol.spec import requirement_features
from deltaml.services.aggregator import matching_dataset
from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.owner_data import dataset_profile, request_dataset

CSV = "x,color,y\n1.5,red,1\n,green,2\n3,purple,3\n4,,4\n5,blue,5\n"
REQ: dict[str, Any] = {
    "features": ["x", "color"],
    "target": "y",
    "min_rows": 1,
    "owners": 2,
    "missing": ["x", "color"],
    "categorical": {"color": ["red", "green", "blue"]},
}


def _csv(tmp_path: Path, text: str = CSV, name: str = "shop.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_owner_encodes_its_rows_as_the_request_says_and_tells_the_counts(
    tmp_path: Path,
) -> None:
    ds, notes = request_dataset(_csv(tmp_path), REQ)
    assert ds.feature_names == tuple(requirement_features(REQ))
    assert ds.feature_names == ("x", "x__missing", "color=green", "color=blue", "color__missing")
    assert ds.X.tolist() == [
        [1.5, 0, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [3, 0, 0, 0, 0],  # purple: not a level of the request, counted as red
        [4, 0, 0, 0, 1],
        [5, 0, 0, 1, 0],
    ]
    assert ds.y.tolist() == [1, 2, 3, 4, 5]
    assert notes == [
        "column 'x': 1 row with an empty cell, filled in (the model learns from an "
        "indicator column that it was missing)",
        "column 'color': 1 row with an empty cell, filled in (the model learns from an "
        "indicator column that it was missing)",
        "column 'color': 1 row with a level the request does not name, counted as other "
        "(its first level)",
    ]
    assert "purple" not in " ".join(notes)


def test_a_logistic_request_codes_the_named_classes(tmp_path: Path) -> None:
    text = "x,color,y\n1,red,no\n,green,yes\n3,blue,no\n"
    ds, _ = request_dataset(_csv(tmp_path, text), {**REQ, "classes": ["no", "yes"]}, "logistic")
    assert ds.y.tolist() == [0, 1, 0] and ds.classes == ("no", "yes")
    with pytest.raises(DataError, match=r"target 'y' at row 2 is neither"):
        request_dataset(
            _csv(tmp_path, text.replace("yes", "maybe"), "m.csv"),
            {**REQ, "classes": ["no", "yes"]},
            "logistic",
        )


def test_what_the_request_does_not_allow_is_one_line_naming_file_column_and_row(
    tmp_path: Path,
) -> None:
    path = _csv(tmp_path)
    with pytest.raises(DataError) as caught:
        request_dataset(path, {**REQ, "missing": ["color"]})
    assert str(caught.value) == (
        f"{path}: missing value in column 'x' at row 2; the request does not let it be missing"
    )
    with pytest.raises(DataError, match=r"shop.csv: missing value in column 'color' at row 4"):
        request_dataset(path, {**REQ, "missing": ["x"]})
    with pytest.raises(DataError, match=r"shop.csv: non-numeric value in column 'color' at row 1"):
        request_dataset(path, {**REQ, "categorical": {}})
    with pytest.raises(DataError, match=r"too large in column 'x' at row 3"):
        request_dataset(_csv(tmp_path, CSV.replace("\n3,", "\n1e300,"), "big.csv"), REQ)


def test_the_aggregator_offers_a_mixed_table_only_to_a_request_that_allows_it(
    tmp_path: Path,
) -> None:
    owner = {"datasets": [dataset_profile("shop", _csv(tmp_path))]}
    assert matching_dataset(owner, REQ) == "shop"
    assert matching_dataset(owner, {**REQ, "missing": ["color"]}) is None  # x has holes
    assert matching_dataset(owner, {**REQ, "categorical": {}}) is None  # color is text
    assert matching_dataset(owner, {**REQ, "features": ["x"], "categorical": {}}) == "shop"


class _Aggregator:
    """The aggregator's client, as far as the owner's offer loop uses it."""

    def __init__(self, offer: dict[str, Any]) -> None:
        self.offer = offer
        self.posted: list[str] = []

    def get(self, path: str) -> Any:
        assert path == "/offers"
        return [self.offer]

    def post(self, path: str, body: Any = None) -> dict[str, Any]:
        self.posted.append(path)
        return {}

    def close(self) -> None:
        pass


def test_a_node_refuses_a_request_its_file_cannot_serve_and_keeps_running(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _csv(folder)
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
        offer = {
            "request_id": 7,
            "status": "READY",
            "offered_reward_wei": "1",
            "dataset": "shop",
            "spec": {"model": "linear"},
            "requirements": {**REQ, "missing": ["color"]},  # x has an empty cell
        }
        fake = _Aggregator(offer)
        node.client = fake  # type: ignore[assignment]
        node.refresh_offers()  # no exception: the loop goes on
        refused = node.store.get("refused", "7")
        assert refused is not None and "column 'x' at row 2" in refused["reason"]
        assert fake.posted == ["/requests/7/decline"]

        fake.offer = {**offer, "request_id": 8, "requirements": REQ}
        node.refresh_offers()
        assert fake.posted[-1] == "/requests/8/accept"
        assert len(node.request_notes[8]) == 3
    finally:
        node.store.close()
