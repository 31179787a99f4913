"""A logistic model through the services: every model type the buyer's form offers runs.

``deltaml demo --dataset breast_cancer --model logistic``'s machinery: an aggregator,
a buyer and five owner nodes as child processes over real HTTP, the contract on the
session's anvil node, 1024-bit keys and few rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from deltaml.estimator import TrainedModel
from deltaml.learning.data import load_dataset
from deltaml.services.demo import DemoConfig, DemoResult, run_demo

pytestmark = pytest.mark.slow


def test_a_logistic_model_of_breast_cancer_finishes_verified_as_good_as_scikit_learn(
    tmp_path: Path, anvil_url: str
) -> None:
    lines: list[str] = []
    config = DemoConfig(
        work_dir=tmp_path / "demo",
        dataset="breast_cancer",
        model="logistic",
        rounds=5,
        eval_every=5,
        key_bits=1024,
        chain_url=anvil_url,
        timeout=600,
    )
    downloads: dict[str, Any] = {}

    def fetch_models(result: DemoResult) -> None:
        """What the buyer downloads, while its node still runs: JSON and ONNX."""
        token = (config.work_dir / "buyer" / "api-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(
            base_url=result.urls["buyer"], headers=auth, timeout=120, trust_env=False
        ) as c:
            (rid,) = [r["id"] for r in c.get("/status").json()["requests"]]
            downloads["json"] = c.get(f"/requests/{rid}/model").json()
            onnx = c.get(f"/requests/{rid}/model.onnx")
            assert onnx.status_code == 200, onnx.text
            downloads["onnx"] = onnx.content

    result = run_demo(config, say=lines.append, on_result=fetch_models)
    assert result.status == "FINISHED", result.error
    assert set(result.statuses.values()) == {"FINISHED"}
    assert result.verified
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert result.model == "logistic" and result.test_mse is None
    assert result.test_auc is not None and result.sklearn_test_auc is not None
    # Measured: 0.9924 against scikit-learn's 0.9950 (trainers' rows, same test split).
    assert abs(result.test_auc - result.sklearn_test_auc) <= 0.01
    assert any("logistic model of 'target'" in line for line in lines)

    # The model the buyer downloads: the original labels, in scikit-learn and in ONNX.
    model = TrainedModel.from_json(downloads["json"])
    assert model.classes == ("0", "1")  # the owners' CSV files hold 0/1 codes
    ds = load_dataset("breast_cancer")
    X = pd.DataFrame(ds.X, columns=list(ds.feature_names))
    est = model.to_sklearn()
    np.testing.assert_allclose(est.decision_function(X), model.decision_function(X), atol=1e-9)
    assert (est.predict(X) == model.predict(X)).all()
    ort = pytest.importorskip("onnxruntime")
    labels, proba = ort.InferenceSession(downloads["onnx"]).run(None, {"X": ds.X})
    assert (labels == model.predict(X)).all()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-5)
