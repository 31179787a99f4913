"""A logistic model through the web UIs (issue 13: every model type the buyer's form
offers runs end to end through the services and a browser).

Three owners each add a share of the breast-cancer data set (a 0/1 target) on their
dataset page; the buyer asks for a logistic model on its form; the owners accept on
their pages; the request finishes, verifies and settles; the buyer downloads the model,
which keeps the target's class labels and ranks test rows as well as scikit-learn's
logistic regression trained on the same rows.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from browser_testkit import log_in, reopen
from deltaml.estimator import TrainedModel
from deltaml.learning.data import load_dataset, split_owners, train_test_split

pytestmark = pytest.mark.slow

FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst concavity", "worst area"]


def _csv(x: np.ndarray, y: np.ndarray, names: list[str]) -> bytes:
    out = io.StringIO()
    out.write(",".join([*names, "diagnosis"]) + "\n")
    for row, label in zip(x, y, strict=True):
        out.write(",".join(f"{v:.10g}" for v in row) + f",{int(label)}\n")
    return out.getvalue().encode()


def test_a_logistic_request_through_the_web_uis(
    market: Any, guarded: Any, screenshot: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    data = load_dataset("breast_cancer")
    names = list(data.feature_names)
    train, test = train_test_split(data, 0.2, 0)
    shares = split_owners(train, len(market.owners), seed=0)

    # -- each owner adds its share of a two-class data set on its dataset page
    owners = []
    for url, share in zip(market.owners, shares, strict=True):
        page = guarded()
        log_in(page, url, market.password)
        page.get_by_role("navigation").get_by_role("link", name="Datasets").click()
        page.get_by_label("CSV file", exact=True).set_input_files(
            files=[{"name": "tumours.csv", "mimeType": "text/csv",
                    "buffer": _csv(share.X, share.y, names)}]
        )  # fmt: skip
        page.get_by_role("button", name="Add dataset").click()
        expect(page.locator("main > .flash-ok")).to_contain_text(
            f"Dataset tumours added ({share.n_rows} rows)"
        )
        owners.append(page)

    # -- the buyer asks for a logistic model on its form
    buyer = guarded()
    log_in(buyer, market.buyer, market.password)
    buyer.get_by_role("navigation").get_by_role("link", name="New request").click()
    buyer.get_by_label("Model type").select_option("logistic")
    buyer.get_by_label("Feature columns").fill(", ".join(FEATURES))
    buyer.get_by_label("Target column").fill("diagnosis")
    buyer.get_by_label("Minimum rows per owner").fill("50")
    buyer.get_by_label("Owners needed").fill("3")
    buyer.get_by_label("Training rounds").fill("6")
    buyer.get_by_label("Payment (ETH)").fill("1")
    buyer.get_by_label("Paillier key size (bits)").select_option("1024")
    buyer.get_by_role("button", name="Create request and pay").click()
    expect(buyer).to_have_url(re.compile(r"/ui/requests/(\d+)$"))
    rid = buyer.url.rsplit("/", 1)[1]
    screenshot(buyer, "logistic-01-buyer-request")

    # -- every owner is offered it (its tumours file, not its diabetes one) and accepts
    for page in owners:
        page.get_by_role("navigation").get_by_role("link", name="Requests").click()
        row = page.locator(f'tr[data-request="{rid}"]')
        expect(row.locator(".badge")).to_have_text("Offered to you")
        expect(row).to_contain_text("tumours")
        row.get_by_role("button", name=f"Accept request {rid}").click()
        expect(page.locator("main > .flash-ok")).to_contain_text(f"You accepted request {rid}")

    # -- it finishes, verifies and settles once the buyer approves
    expect(buyer.locator(".stats [data-field=status]")).to_have_text("Finished", timeout=240_000)
    expect(buyer.locator("[data-test=verified]")).to_contain_text(
        "The evidence verifies", timeout=60_000
    )
    buyer.get_by_role("button", name="Approve the settlement").click()
    expect(buyer.locator("main > .flash-ok")).to_contain_text("Settlement approved")
    expect(buyer.locator("[data-test=challenge]")).to_contain_text("Settled on the contract")
    screenshot(buyer, "logistic-02-buyer-settled")

    # -- the model: the target's labels, and test AUC next to scikit-learn's
    reopen(buyer)
    with buyer.expect_download() as download:
        buyer.get_by_role("link", name="Download the model (JSON)").click()
    path = tmp_path / "model.json"
    download.value.save_as(path)
    model = TrainedModel.load(path)
    assert model.model == "logistic" and list(model.features) == FEATURES
    assert list(model.classes_) == [0, 1]
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = [names.index(f) for f in FEATURES]
    x_test = test.X[:, cols]
    ours = roc_auc_score(test.y, model.decision_function(x_test))
    sk = make_pipeline(StandardScaler(), LogisticRegression()).fit(train.X[:, cols], train.y)
    theirs = roc_auc_score(test.y, sk.decision_function(x_test))
    print(f"logistic through the web UIs: test AUC {ours:.4f} against scikit-learn's {theirs:.4f}")
    assert ours >= theirs - 0.01, (ours, theirs)
    assert set(np.unique(model.predict(x_test))) <= {0, 1}
