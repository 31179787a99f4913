"""An owner's page of a request on a mixed table: the columns that may be empty, the
categorical levels, and what reading this owner's file did, in counts only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.owner_api import create_app as owner_app
from deltaml.services.ui import LoginConfig

PASSWORD = "pages"
BASE = "http://127.0.0.1:8702"
CSV = "x,color,y\n1.5,red,1\n,green,2\n3,secret-level,3\n4,blue,4\n"
REQ = {
    "features": ["x", "color"],
    "target": "y",
    "min_rows": 1,
    "owners": 2,
    "missing": ["x"],
    "categorical": {"color": ["red", "green", "blue"]},
}


def _log_in(client: TestClient) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token
    response = client.post("/ui/login", data={"login_token": token.group(1), "password": PASSWORD})
    assert response.status_code == 303, response.text


def _view(rid: int) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "IN_PROGRESS",
        "error": "",
        "buyer": "0x" + "b" * 40,
        "aggregator": "0x" + "a" * 40,
        "chain_request_id": 2,
        "spec": {"model": "linear", "rounds": 2, "eval_every": 1},
        "requirements": REQ,
        "deposit_wei": str(10**18),
        "rounds_done": 0,
        "initial_metric": None,
        "metrics": [],
        "offers": [],
        "result": None,
        "created_at": 0.0,
        "updated_at": 0.0,
    }


def test_the_owner_s_page_says_what_its_file_gave_the_request_in_counts(tmp_path: Path) -> None:
    data = tmp_path / "shop.csv"
    data.write_text(CSV)
    node = OwnerNode(
        OwnerConfig(
            account=Account.create(),
            data=[data],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'owner.sqlite'}",
            work_dir=tmp_path / "node",
        )
    )
    try:
        offer = {
            "request_id": 5,
            "status": "IN_PROGRESS",
            "request_status": "IN_PROGRESS",
            "dataset": "shop",
            "role": "trainer",
            "spec": {"model": "linear"},
            "requirements": REQ,
            "deposit_wei": str(10**18),
            "offered_reward_wei": "1",
        }
        node.offers = [offer]
        node.client.get = lambda path, **_: _view(5)  # type: ignore[method-assign]
        node.dataset_for(5, offer)
        client = TestClient(
            owner_app(node, LoginConfig.from_password(PASSWORD)),
            base_url=BASE,
            follow_redirects=False,
        )
        _log_in(client)
        page = client.get("/ui/requests/5")
        assert page.status_code == 200, page.text
        notes = page.text[page.text.index('data-test="data-notes"') :]
        notes = notes[: notes.index("</ul>")]
        assert "column &#39;x&#39;: 1 row with an empty cell, filled in" in notes
        assert "column &#39;color&#39;: 1 row with a level the request does not name" in notes
        assert "secret-level" not in page.text
        assert "<code>color</code>: red, green, blue" in page.text
    finally:
        node.store.close()
