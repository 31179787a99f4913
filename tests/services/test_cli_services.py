"""Each party started by hand with its own command, as on separate machines (no chain here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deltaml.estimator import TrainedModel
from deltaml.learning.data import load_dataset, save_csv, split_owners
from deltaml.services.serve import PASSWORD_ENV, ServiceProcess

pytestmark = pytest.mark.slow

ENV = {PASSWORD_ENV: "a test password"}


def deltaml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "deltaml", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(ENV if env is None else env)},
    )


def test_parties_started_by_hand_train_and_the_buyer_downloads_the_model(tmp_path: Path) -> None:
    data = load_dataset("diabetes")
    shares = split_owners(data, 3, seed=1)
    procs: list[ServiceProcess] = []
    try:
        common = ["--port", "0", "--demo-keys"]
        agg = ServiceProcess(
            "aggregator",
            ["aggregator", "serve", "--dir", str(tmp_path / "agg"), *common],
            env=ENV,
        )
        procs.append(agg)
        buyer_dir = tmp_path / "buyer"
        buyer = ServiceProcess(
            "buyer",
            [
                "buyer",
                "serve",
                "--aggregator",
                agg.url,
                "--dir",
                str(buyer_dir),
                "--allow-test-keys",
                *common,
            ],
            env=ENV,
        )
        procs.append(buyer)
        for i, share in enumerate(shares):
            csv = save_csv(share, tmp_path / f"o{i}" / "data" / "part.csv")
            procs.append(
                ServiceProcess(
                    f"owner {i}",
                    [
                        "owner",
                        "serve",
                        "--data",
                        str(csv.parent),
                        "--aggregator",
                        agg.url,
                        "--dir",
                        str(tmp_path / f"o{i}"),
                        *common,
                    ],
                    env=ENV,
                )
            )
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            "features: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]\n"
            "target: target\nowners: 3\nrounds: 6\nkey_bits: 1024\n"
            "target_improvement: 30\n"  # reached at the first evaluation, round 3
        )
        node = ["--node", buyer.url, "--dir", str(buyer_dir)]
        created = deltaml("buyer", "request", str(spec), *node)
        assert created.returncode == 0, created.stderr
        rid = json.loads(created.stdout)["id"]
        deadline = time.monotonic() + 240
        while True:
            status = json.loads(deltaml("buyer", "status", *node).stdout)
            mine = next(r for r in status["requests"] if r["id"] == rid)
            # The buyer holds the model a moment before the aggregator has finished
            # the request on chain: wait for the end, not for the model.
            if mine["status"] in ("FAILED", "CANCELLED") or (
                mine["status"] == "FINISHED" and mine["model_ready"]
            ):
                break
            assert time.monotonic() < deadline, mine
            time.sleep(1)
        assert mine["status"] == "FINISHED", mine
        out = tmp_path / "model.json"
        got = deltaml("buyer", "model", str(rid), "--out", str(out), *node)
        assert got.returncode == 0, got.stderr
        model = TrainedModel.load(out)
        assert model.rounds == 3, "training goes on past the target improvement"
        mse = float(np.mean((model.predict(data.X) - data.y) ** 2))
        assert mse < 3300  # a fitted model, not the mean predictor (~5930)
        missing = deltaml("buyer", "model", "999", *node)
        assert missing.returncode == 1 and "not one of this buyer's" in missing.stderr
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    no_password = deltaml(
        "aggregator", "serve", "--dir", str(tmp_path / "a"), env={PASSWORD_ENV: ""}
    )
    assert no_password.returncode == 1 and "set DELTAML_PASSWORD" in no_password.stderr
    no_data = deltaml(
        "owner",
        "serve",
        "--data",
        str(tmp_path / "nothing"),
        "--aggregator",
        "http://127.0.0.1:9",
        "--dir",
        str(tmp_path / "o"),
        "--demo-keys",
    )
    assert no_data.returncode == 1 and "does not exist" in no_data.stderr
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("features: [a]\ntarget: y\nowners: 2\ncolour: red\n")
    no_node = deltaml(
        "buyer",
        "request",
        str(bad_spec),
        "--node",
        "http://127.0.0.1:9",
        "--dir",
        str(tmp_path / "b"),
    )
    assert no_node.returncode == 1 and "cannot reach the buyer node" in no_node.stderr
    for result in (no_password, no_data, no_node):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
