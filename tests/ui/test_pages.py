"""The pages without a browser: the request form's checks, dataset upload, the buyer's
pages, the aggregator's public status page, and the numbers as the pages show them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.serialization import pack_vectors
from deltaml.services.aggregator import AggregatorConfig, AggregatorService
from deltaml.services.aggregator import create_app as aggregator_app
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import BuyerConfig, BuyerNode, parse_request_spec
from deltaml.services.buyer import create_app as buyer_app
from deltaml.services.owner import OwnerConfig, OwnerNode
from deltaml.services.owner_api import create_app as owner_app
from deltaml.services.ui import LoginConfig
from deltaml.services.ui import format as fmt
from deltaml.services.ui.forms import DEFAULTS, validate_request_form

PASSWORD = "pages"
BASE = "http://127.0.0.1:8702"


def log_in(client: TestClient) -> str:
    """Log ``client`` in; the CSRF token of its session."""
    page = client.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token
    response = client.post("/ui/login", data={"login_token": token.group(1), "password": PASSWORD})
    assert response.status_code == 303, response.text
    home = client.get("/ui/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert csrf
    return csrf.group(1)


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', html))


# -- the request form ---------------------------------------------------------------------
def form(**changes: str) -> dict[str, str]:
    return {**DEFAULTS, "features": "age, bmi", "target": "y", **changes}


def test_a_good_form_is_the_spec_the_cli_would_send() -> None:
    spec, errors = validate_request_form(
        form(
            payment_eth="0.25",
            deadline_hours="1.5",
            owners="4",
            contributions="",
            target_improvement="40 %",
        )
    )
    assert errors == {}
    assert spec == parse_request_spec(
        {
            "model": "linear",
            "features": ["age", "bmi"],
            "target": "y",
            "min_rows": 1,
            "owners": 4,
            "rounds": 12,
            "eval_every": 3,
            "deposit_wei": 25 * 10**16,
            "deadline_hours": 1.5,
            "key_bits": 2048,
            "contributions": False,
            "target_improvement": 40.0,
        }
    )


def test_the_form_chooses_the_metric_protocol_and_names_a_refused_combination() -> None:
    spec, errors = validate_request_form(form(metric_protocol="gram"))
    assert errors == {} and spec["metric_protocol"] == "gram"
    assert validate_request_form(form())[0]["metric_protocol"] == "rotation"
    _, errors = validate_request_form(form(metric_protocol="gram", solver="exact"))
    assert "not offered with solver exact" in errors["metric_protocol"]
    _, errors = validate_request_form(form(metric_protocol="mixed"))
    assert errors["metric_protocol"] == "Choose rotation or gram."


def test_the_form_names_columns_that_may_be_empty_and_categorical_levels() -> None:
    spec, errors = validate_request_form(
        form(
            features="age, bmi, smoker",
            missing="bmi, smoker",
            categorical="smoker: no, yes\n\n",
        )
    )
    assert errors == {}
    assert spec is not None
    assert spec["missing"] == ["bmi", "smoker"]
    assert spec["categorical"] == {"smoker": ["no", "yes"]}
    # Left empty (the defaults): no column may be empty, none is categorical.
    assert DEFAULTS["missing"] == DEFAULTS["categorical"] == ""
    plain, _ = validate_request_form(form())
    assert plain is not None and plain["missing"] == [] and plain["categorical"] == {}
    _, errors = validate_request_form(form(categorical="smoker no yes"))
    assert errors == {
        "categorical": 'Line 1: write a column, a colon and its levels, such as "color: red, '
        'green, blue".'
    }
    _, errors = validate_request_form(form(categorical="bmi: only"))
    assert errors == {
        "categorical": "Give each column 2 to 100 distinct levels of at most 200 characters."
    }
    # A column that is not a feature: the spec's own error, at the field it names.
    _, errors = validate_request_form(form(missing="height"))
    assert set(errors) == {"missing"}, errors


def test_every_wrong_field_gets_its_own_message() -> None:
    spec, errors = validate_request_form(
        form(
            model="forest",
            features="age, age",
            target="",
            min_rows="0",
            owners="1",
            rounds="ten",
            eval_every="-1",
            target_improvement="100",
            payment_eth="0",
            deadline_hours="nan",
            key_bits="1024",
        )
    )
    assert spec is None
    assert errors == {
        "model": "Choose linear or logistic.",
        "features": "A column is named twice.",
        "target": "Required: name the target column.",
        "min_rows": "Enter a whole number of at least 1.",
        "owners": "Enter a number from 2 to 1000.",
        "rounds": "Enter a whole number.",
        "eval_every": "Enter a number from 1 to 10000.",
        "target_improvement": "Enter at least 0 and less than 100, or leave it empty.",
        "payment_eth": "The payment must be more than 0 and less than 2**128 wei.",
        "deadline_hours": "Enter more than 0 and at most 8760 hours.",
        "key_bits": "Choose one of 2048, 3072 bits.",
    }
    assert validate_request_form(form(key_bits="1024"), allow_test_keys=True)[1] == {}
    _, errors = validate_request_form(form(target="bmi"))
    assert errors == {"target": "The target cannot also be a feature."}
    _, errors = validate_request_form(form(payment_eth="0.0000000000000000001"))
    assert errors == {
        "payment_eth": "Use at most 18 decimals: the smallest amount is "
        "0.000000000000000001 ETH (1 wei)."
    }
    _, errors = validate_request_form(form(payment_eth="a lot"))
    assert errors == {"payment_eth": "Enter a number of ether, such as 0.5."}
    assert validate_request_form(form(payment_eth="0.5 ETH"))[1] == {}
    _, errors = validate_request_form(form(payment_eth="", rounds="", owners=" "))
    assert errors == {
        "payment_eth": "Required: enter the payment in ether, such as 0.5.",
        "rounds": "Required: enter a whole number from 1 to 10000.",
        "owners": "Required: enter a whole number from 2 to 1000.",
    }
    _, errors = validate_request_form(form(target_improvement="half"))
    assert errors == {"target_improvement": "Enter a percentage, such as 40, or leave it empty."}


def test_amounts_and_metrics_read_well() -> None:
    assert fmt.eth(10**18) == "1 ETH"
    assert fmt.eth("185509000000000000") == "0.185509 ETH"
    assert fmt.eth(1) == "< 0.000001 ETH"
    assert fmt.eth(0) == "0 ETH" and fmt.eth(None) == "—"
    assert fmt.eth(12_345 * 10**18) == "12,345 ETH"
    assert fmt.parse_eth("0.5") == 5 * 10**17
    with pytest.raises(ValueError):
        fmt.parse_eth("1e-19")
    assert fmt.metric(2834.7012) == "2,834.7" and fmt.metric(None) == "—"
    assert fmt.improvement_percent(100.0, 40.0) == 60.0
    live = fmt.progress(
        {
            "id": 1,
            "status": "IN_PROGRESS",
            "spec": {"rounds": 3},
            "rounds_done": 2,
            "initial_metric": 10.0,
            "metrics": [{"round": 1, "mse": 6.0}, {"round": 2, "mse": 5.0}],
        }
    )
    assert [p["round"] for p in live["points"]] == [0, 1, 2]
    assert live["improvement_text"] == "50.0 %" and live["latest_text"] == "5"


# -- the owner's datasets -----------------------------------------------------------------
@pytest.fixture
def owner(tmp_path: Path) -> Iterator[tuple[OwnerNode, TestClient, list[Any]]]:
    data = tmp_path / "shop.csv"
    rng = np.random.default_rng(1)
    np.savetxt(data, rng.normal(size=(20, 3)), delimiter=",", header="a,b,y", comments="")
    node = OwnerNode(
        OwnerConfig(
            account=Account.create(),
            data=[data],
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'owner.sqlite'}",
            work_dir=tmp_path / "node",
        )
    )
    posted: list[Any] = []
    node.client.post = lambda path, json=None: posted.append((path, json))  # type: ignore[method-assign]
    client = TestClient(
        owner_app(node, LoginConfig.from_password(PASSWORD)), base_url=BASE, follow_redirects=False
    )
    yield node, client, posted
    node.store.close()


def test_a_csv_is_checked_kept_and_offered_to_the_aggregator(owner: Any) -> None:
    node, client, posted = owner
    csrf = log_in(client)
    # Values no profile could hold by chance (counts, lengths): 6 decimals, all distinct.
    values = [[1000.123457 + 7.000011 * i, 2.718282 * (i + 3), 31.415927 + i] for i in range(12)]
    good = "x1,x2,label\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in values)
    response = client.post(
        "/ui/datasets",
        data={"csrf_token": csrf, "name": ""},
        files={"file": ("My Data (v2).csv", good.encode())},
    )
    assert response.status_code == 303, response.text
    assert "My_Data__v2_" in node.datasets
    assert (node.uploads_dir / "My_Data__v2_.csv").read_text() == good
    assert posted[-1][0] == "/owners"
    offered = {d["name"]: d for d in posted[-1][1]["datasets"]}
    assert offered["My_Data__v2_"]["rows"] == 12
    # A profile, never a value: no value of the file is in what the aggregator got,
    # written out or as a number.
    sent = json.dumps(posted[-1][1])
    cells = [f"{v:.6f}" for row in values for v in row]
    assert not [c for c in cells if c in sent or c.rstrip("0") in sent]
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", sent)]
    assert not [n for n in numbers for row in values for v in row if abs(n - v) < 5e-7]
    page = client.get("/ui/datasets")
    assert "Dataset My_Data__v2_ added (12 rows)" in page.text
    assert "<code>label</code>" in page.text
    # A node started again offers it again.
    again = OwnerNode(node.config)
    assert "My_Data__v2_" in again.datasets
    again.store.close()


@pytest.mark.parametrize(
    ("name", "content", "field", "message"),
    [
        ("", b"a,b,y\n1,2,3\n4,,6\n", "file", "bad.csv: missing value"),
        ("", b"a,b,y\n1,2,3\n4,x,6\n", "file", "bad.csv: non-numeric value in column"),
        ("", b"", "file", "bad.csv: the file is empty"),
        ("", b"\xff\xfe\x00", "file", "bad.csv:"),
        ("shop", b"a,y\n1,2\n2,3\n3,5\n", "name", "dataset name &#39;shop&#39; is taken"),
        ("../up", b"a,y\n1,2\n2,3\n3,5\n", "name", "dataset name: use at most 100 letters"),
    ],
)
def test_a_bad_csv_is_refused_in_plain_words(
    owner: Any, name: str, content: bytes, field: str, message: str
) -> None:
    node, client, posted = owner
    csrf = log_in(client)
    files_before = sorted(p for p in node.config.work_dir.rglob("*") if p.is_file())
    response = client.post(
        "/ui/datasets",
        data={"csrf_token": csrf, "name": name},
        files={"file": ("bad.csv", content)},
    )
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert list(errors) == [field] and errors[field].startswith(message), errors
    assert str(node.uploads_dir) not in response.text and "Traceback" not in response.text
    assert set(node.datasets) == {"shop"} and posted == []
    # Nothing of the refused file was kept: the node's folder holds the same files.
    assert sorted(p for p in node.config.work_dir.rglob("*") if p.is_file()) == files_before


def test_no_file_chosen_says_so(owner: Any) -> None:
    _, client, _ = owner
    csrf = log_in(client)
    response = client.post("/ui/datasets", data={"csrf_token": csrf, "name": ""})
    assert field_errors(response.text) == {"file": "Choose a CSV file to add."}


# -- the buyer's pages --------------------------------------------------------------------
@pytest.fixture
def buyer(tmp_path: Path) -> Iterator[tuple[BuyerNode, TestClient]]:
    node = BuyerNode(
        BuyerConfig(
            account=Account.create(),
            aggregator_url="http://127.0.0.1:9",
            database_url=f"sqlite:///{tmp_path / 'buyer.sqlite'}",
            work_dir=tmp_path,
            key_password=PASSWORD,
            allow_test_keys=True,
        )
    )
    client = TestClient(
        buyer_app(node, LoginConfig.from_password(PASSWORD)), base_url=BASE, follow_redirects=False
    )
    yield node, client
    node.store.close()


def test_the_request_form_shows_every_mistake_and_keeps_what_was_typed(buyer: Any) -> None:
    _, client = buyer
    csrf = log_in(client)
    page = client.get("/ui/requests/new")
    for name in ("model", "features", "target", "owners", "rounds", "payment_eth", "key_bits"):
        assert f'<label for="{name}">' in page.text and f'id="{name}"' in page.text
    posted = client.post(
        "/ui/requests",
        data={**DEFAULTS, "csrf_token": csrf, "features": "age", "owners": "1", "rounds": "x"},
    )
    # Post/redirect/get: the form comes back by a redirect, so a reload does not post again.
    assert posted.status_code == 303 and posted.headers["location"].endswith("/ui/requests/new")
    response = client.get(posted.headers["location"])
    assert field_errors(response.text) == {
        "target": "Required: name the target column.",
        "owners": "Enter a number from 2 to 1000.",
        "rounds": "Enter a whole number.",
    }
    assert "Please correct 3 fields" in response.text
    assert 'value="age"' in response.text and 'aria-invalid="true"' in response.text
    assert "placeholder" not in response.text  # nothing that looks like a filled-in value
    assert "Please correct" not in client.get("/ui/requests/new").text  # shown once


def test_a_request_no_owner_can_serve_is_refused_before_escrow(buyer: Any) -> None:
    node, client = buyer
    csrf = log_in(client)
    asked: list[Any] = []

    def get(path: str, **kwargs: Any) -> Any:
        asked.append((path, kwargs.get("params")))
        matching = 0 if (kwargs.get("params") or {}).get("target") == "zzz" else None
        return {"columns": ["age", "bmi", "y"], "owners": 5, "matching": matching}

    def create_request(doc: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("escrowed a request nobody can serve")

    node.client.get = get
    node.create_request = create_request
    page = client.get("/ui/requests/new").text
    assert '<option value="bmi">' in page and "5 data owners registered" in page
    posted = client.post(
        "/ui/requests",
        data={**DEFAULTS, "csrf_token": csrf, "features": "foo, bar", "target": "zzz"},
    )
    assert posted.status_code == 303
    page = client.get(posted.headers["location"]).text
    assert "No data owner has the columns foo, bar, zzz and at least 1 rows" in page
    assert "Nothing was escrowed." in page and 'value="foo, bar"' in page
    assert ("/market", {"features": "foo,bar", "target": "zzz", "min_rows": 1}) in asked
    live = client.get("/ui/api/market", params={"features": "foo", "target": "zzz"}).json()
    assert live == {"text": "0 owners have these columns and at least 1 row.", "matching": 0}


def test_a_good_request_is_created_and_its_page_shows_it(buyer: Any) -> None:
    node, client = buyer
    csrf = log_in(client)
    created: list[dict[str, Any]] = []

    def create_request(doc: dict[str, Any]) -> dict[str, Any]:
        created.append(doc)
        node.store.put("requests", "7", {"chain_request_id": 3, "spec": {}, "requirements": {}})
        return {"id": 7, "chain_request_id": 3, "status": "OPEN"}

    view = {
        "id": 7,
        "status": "FINISHED",
        "error": "",
        "buyer": node.address,
        "aggregator": "0x" + "a" * 40,
        "chain_request_id": 3,
        "spec": {"model": "linear", "rounds": 2, "eval_every": 1},
        "requirements": {"features": ["age"], "target": "y", "min_rows": 1, "owners": 2},
        "deposit_wei": str(10**18),
        "rounds_done": 2,
        "initial_metric": 9.0,
        "metrics": [{"round": 1, "mse": 5.0}, {"round": 2, "mse": 3.0}],
        "offers": [
            {"owner": "0x" + "1" * 40, "status": "FINISHED", "role": "trainer"},
            {"owner": "0x" + "2" * 40, "status": "FINISHED", "role": "validator"},
            {"owner": "0x" + "3" * 40, "status": "DECLINED", "role": ""},
        ],
        "result": {
            "contributions": {"0x" + "1" * 40: 1.5},
            "payouts_wei": {
                "0x" + "1" * 40: str(7 * 10**17),
                "0x" + "2" * 40: str(2 * 10**17),
                "0x" + "a" * 40: str(10**17),
            },
            "refund_wei": "0",
            "initial_metric": 9.0,
            "transcript_head": "00",
        },
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    node.create_request = create_request
    node.client.get = lambda path, **_: dict(view)
    response = client.post(
        "/ui/requests",
        data={**DEFAULTS, "csrf_token": csrf, "features": "age", "target": "y", "key_bits": "1024"},
    )
    assert response.status_code == 303 and response.headers["location"].endswith("/ui/requests/7")
    assert created[0]["features"] == ["age"] and created[0]["deposit_wei"] == 10**18
    node.store.put("settlement", "7", {"verified": True, "failures": [], "approved": False})
    node.store.put("models", "7", {"format": "deltaml-model/1"})
    page = client.get("/ui/requests/7")
    assert page.status_code == 200
    assert "Request 7 created and 1 ETH escrowed" in page.text
    assert "The evidence verifies" in page.text and "Approve the settlement" in page.text
    assert "0.7 ETH" in page.text and "1.5" in page.text and "fixed share" in page.text
    assert "0x3333" not in page.text  # it declined: not a participant
    live = client.get("/ui/api/requests/7").json()
    assert live["improvement_text"] == "66.7 %" and len(live["points"]) == 3
    assert live["version"] == "FINISHED|True|True|False|"
    model = client.get("/ui/requests/7/model.json")
    assert model.headers["content-disposition"] == 'attachment; filename="deltaml-model-7.json"'
    assert model.json() == {"format": "deltaml-model/1"}
    assert client.get("/ui/requests/8").status_code == 404
    assert "is not one of this buyer" in client.get("/ui/requests/8").text


# -- the aggregator's status pages ----------------------------------------------------------
def test_the_aggregator_status_pages_are_public_and_read_only(tmp_path: Path) -> None:
    service = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{tmp_path / 'agg.sqlite'}",
            work_dir=tmp_path,
        )
    )
    with TestClient(aggregator_app(service), follow_redirects=False) as client:
        assert client.get("/").headers["location"] == "/ui/"
        assert "No request yet" in client.get("/ui/").text
        public, _ = generate_keypair(512, allow_test_keys=True)
        initial = EncryptedVector.encrypt(public, np.zeros(3), 40)
        body = {
            "chain_request_id": 0,
            "spec": {"model": "linear", "rounds": 2},
            "requirements": {"features": ["a", "b"], "target": "y", "min_rows": 1, "owners": 2},
            "public_key": public.to_dict(),
            "initial_model": pack_vectors([initial]),
        }
        buyer = Account.create()
        created = client.post("/requests", json=body, auth=SignedAuth(buyer))
        assert created.status_code == 200, created.text
        page = client.get("/ui/")
        assert "Request 1" in page.text and "Looking for owners" in page.text
        columns = [{"name": n, "nulls": 0} for n in ("a", "b", "y")]
        for i in range(2):
            who = Account.create()
            profile = {"name": "d", "rows": 50 * (i + 1), "columns": columns}
            done = client.post(
                "/owners",
                json={"name": f"clinic {i}", "datasets": [profile]},
                auth=SignedAuth(who),
            )
            assert done.status_code == 200, done.text
            if i == 0:
                accepted = client.post("/requests/1/accept", auth=SignedAuth(who))
                assert accepted.status_code == 200, accepted.text
        counts = re.findall(r'data-test="owners"[^>]*>([^<]*)<', client.get("/ui/").text)
        assert counts == ["1 / 2"]  # one accepted; the other was only offered it
        market = client.get(
            "/market",
            params={"features": "a,b", "target": "y", "min_rows": 60},
            auth=SignedAuth(buyer),
        ).json()
        assert market == {"columns": ["a", "b", "y"], "owners": 2, "matching": 1}
        detail_page = client.get("/ui/requests/1").text
        assert re.search(r"clinic 0 \(0x[0-9a-fA-F]{4}…[0-9a-fA-F]{4}\) accepted", detail_page)
        timeline = client.get("/requests/1/timeline").json()
        assert [e["kind"] for e in timeline["events"]] == ["created", "accepted"]
        detail = client.get("/ui/requests/1")
        assert detail.status_code == 200
        assert client.get("/ui/api/requests/1").json()["status"] == "OPEN"
        assert client.get("/ui/requests/2").status_code == 404
        lost = client.get("/ui/no/such/page")  # Starlette's own 404: a page too, not JSON
        assert lost.status_code == 404 and '<h1 id="error-title">Not found</h1>' in lost.text
        assert client.post("/ui/requests/1").status_code == 405
        assert "script-src 'self'" in page.headers["content-security-policy"]
        static = client.get("/ui/static/app.js")
        assert static.status_code == 200 and "drawChart" in static.text
    service.close()


def test_the_buyer_pages_say_so_when_the_aggregator_is_unreachable(buyer: Any) -> None:
    node, client = buyer
    csrf = log_in(client)
    node.store.put("requests", "4", {"chain_request_id": 1, "spec": {}, "requirements": {}})
    home = client.get("/ui/")
    assert home.status_code == 200 and "UNKNOWN" in home.text
    page = client.get("/ui/requests/4")
    assert page.status_code == 200
    assert "cannot reach the aggregator at http://127.0.0.1:9" in page.text
    cancelled = client.post("/ui/requests/4/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303
    assert "Not cancelled: cannot reach the aggregator" in client.get("/ui/requests/4").text


# -- truthful states --------------------------------------------------------------------
def _finished_view(me: str, other: str, third: str) -> dict[str, Any]:
    return {
        "id": 5,
        "status": "FINISHED",
        "error": "",
        "buyer": "0x" + "b" * 40,
        "aggregator": "0x" + "a" * 40,
        "chain_request_id": 2,
        "spec": {"model": "linear", "rounds": 2, "eval_every": 1},
        "requirements": {"features": ["a", "b"], "target": "y", "min_rows": 1, "owners": 2},
        "deposit_wei": str(10**18),
        "rounds_done": 2,
        "initial_metric": 10.0,
        "metrics": [{"round": 1, "mse": 6.0}, {"round": 2, "mse": 5.0}],
        "offers": [
            {"owner": other, "status": "FINISHED", "role": "trainer"},
            {"owner": third, "status": "FINISHED", "role": "validator"},
            {"owner": me, "status": "INITIATED", "role": None},
        ],
        "result": {
            "contributions": {other: 2.0},
            "payouts_wei": {other: str(35 * 10**16), third: str(2 * 10**17)},
            "validators": [third],
            "refund_wei": "0",
            "transcript_head": "00",
        },
        "created_at": 0.0,
        "updated_at": 0.0,
    }


def test_an_owner_accepted_but_not_seated_reads_not_selected(owner: Any) -> None:
    node, client, _ = owner
    csrf = log_in(client)
    other, third = "0x" + "1" * 40, "0x" + "3" * 40
    view = _finished_view(node.address, other, third)
    offer = {
        "request_id": 5,
        "status": "INITIATED",
        "request_status": "FINISHED",
        "dataset": "shop",
        "role": None,
        "spec": view["spec"],
        "requirements": view["requirements"],
        "deposit_wei": view["deposit_wei"],
        "offered_reward_wei": str(35 * 10**16),
    }
    node.offers = [offer]
    node.client.get = lambda path, **_: dict(view)  # type: ignore[method-assign]
    home = client.get("/ui/")
    row = home.text[home.text.index('data-request="5"') :]
    row = row[: row.index("</tr>")]
    assert "Not selected" in row and "Decline" not in row and "Accept<" not in row
    assert "up to 0.7 ETH" in row
    page = client.get("/ui/requests/5")
    assert page.status_code == 200
    assert '<p class="big" data-test="role">not selected</p>' in page.text
    assert "not measured yet" not in page.text
    assert "Nothing to withdraw: you accepted, but the training started" in page.text
    # While the request still looks for owners, the same offer is "Accepted" with a Decline.
    node.offers = [{**offer, "request_status": "OPEN"}]
    row = client.get("/ui/").text
    assert ">Accepted<" in row and "Decline<span" in row
    assert csrf


def test_the_buyer_sees_shares_ranks_and_the_rule(buyer: Any) -> None:
    node, client = buyer
    log_in(client)
    trainer, validator, late = "0x" + "1" * 40, "0x" + "3" * 40, "0x" + "4" * 40
    view = _finished_view(late, trainer, validator)
    node.store.put("requests", "5", {"chain_request_id": 2, "spec": {}, "requirements": {}})
    node.client.get = lambda path, **_: (  # type: ignore[method-assign]
        {"events": [], "names": {trainer: "clinic"}} if path.endswith("/timeline") else dict(view)
    )
    page = client.get("/ui/requests/5").text
    assert "clinic (0x1111…1111)" in page
    assert "100.0 % of the trainers" in page and "pool · rank 1 of 1" in page
    assert 'data-status="NOT_SELECTED"' in page
    assert "Trainers share 70 % of the payment" in page
    assert "Held in escrow until the buyer approves" in page


def test_a_cancelled_request_is_worded_for_its_end(buyer: Any) -> None:
    node, client = buyer
    log_in(client)
    offered = [{"owner": "0x" + str(i) * 40, "status": "CANCELLED", "role": None} for i in range(5)]
    view = {
        **_finished_view("0x" + "4" * 40, "0x" + "1" * 40, "0x" + "3" * 40),
        "status": "CANCELLED",
        "rounds_done": 0,
        "initial_metric": None,
        "metrics": [],
        "offers": offered,
        "result": None,
    }
    node.store.put("requests", "5", {"chain_request_id": 2, "spec": {}, "requirements": {}})
    node.store.put("settlement", "5", {"status": "CANCELLED", "reclaimed_wei": str(10**18)})
    node.client.get = lambda path, **_: (  # type: ignore[method-assign]
        {"events": [], "names": {}} if path.endswith("/timeline") else dict(view)
    )
    page = client.get("/ui/requests/5").text
    assert "No metric: the request was cancelled before any evaluation." in page
    assert "None: the request was cancelled before training." in page
    assert "Nobody took part: the request was cancelled before training." in page
    assert "The request was cancelled; 1 ETH was refunded to you." in page
    assert "Refunded to the buyer." in page
    for stale in (
        "Not yet",
        "No metric yet",
        "Held in escrow",
        'data-status="CANCELLED">Cancelled</span></td>',
    ):
        assert stale not in page, stale
    assert 'data-status="CANCELLED">Cancelled</span>' in page  # the request's own status


def test_the_contracts_record_reads_as_sentences() -> None:
    from deltaml.ledger.base import LedgerEvent

    buyer, owner = "0x" + "b" * 40, "0x" + "1" * 40
    events = [
        LedgerEvent("RequestCreated", {"deposit": 10**18}, 3, "0x" + "ab" * 32),
        LedgerEvent("RequestStarted", {"trainerCount": 1, "validatorCount": 1}, 4, "0x01"),
        LedgerEvent("MetricPosted", {"round": 2}, 5, "0x02"),
        LedgerEvent("Approved", {"by": owner}, 6, "0x06"),
        LedgerEvent("Approved", {"by": buyer}, 6, "0x03"),
        LedgerEvent("RequestSettled", {"approvedByAll": True}, 6, "0x03"),
        LedgerEvent("Withdrawn", {"account": owner, "amount": 5 * 10**17}, 7, "0x04"),
        LedgerEvent("Withdrawn", {"account": buyer.upper(), "amount": 10**17}, 8, "0x05"),
    ]
    rows = fmt.chain_rows(events, {owner: "clinic"}, {buyer: "You (the buyer)"})
    assert [r["text"] for r in rows] == [
        "Request created: 1 ETH escrowed",
        "Training started: 2 owners seated",
        "Round 2 MSE posted",
        "Approved by clinic (0x1111…1111)",
        "Approved by you (the buyer)",
        "Settled: approved by the buyer and every seated owner",
        "clinic (0x1111…1111) withdrew 0.5 ETH",
        "You (the buyer) withdrew 0.1 ETH",
    ]
    assert rows[0]["block"] == 3 and rows[0]["tx"] == "0x" + "ab" * 32


def test_an_exact_solve_shows_as_one_round_not_the_specs_rounds() -> None:
    """``solver: exact`` trains in one step: its progress reads 1 of 1, not 1 of 12."""
    from deltaml.services.ui.format import progress

    view = {"id": 1, "status": "FINISHED", "rounds_done": 1,
            "spec": {"rounds": 12, "solver": "exact"},
            "metrics": [{"round": 1, "mse": 2.0}], "initial_metric": 4.0}  # fmt: skip
    live = progress(view)
    assert (live["rounds_done"], live["rounds"]) == (1, 1)
    assert live["improvement_text"] and [p["round"] for p in live["points"]] == [0, 1]
    assert progress({**view, "spec": {"rounds": 12}})["rounds"] == 12
