"""Attacks on where a node listens and what it leaves behind (issue 12)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.crypto import generate_keypair
from deltaml.errors import DeltaMLValueError
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth
from deltaml.services.buyer import seal_key
from deltaml.services.serve import ServiceProcess, bind


def aggregator(tmp_path: Path, name: str) -> AggregatorService:
    return AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{tmp_path / f'{name}.sqlite'}",
            work_dir=tmp_path / name,
        )
    )


def test_a_signed_call_cannot_be_replayed_to_another_service(tmp_path: Path) -> None:
    a, b = aggregator(tmp_path, "a"), aggregator(tmp_path, "b")
    owner = Account.create()
    body = b'{"name": "o", "datasets": []}'
    try:
        with (
            TestClient(create_app(a), base_url="http://agg-a.example:8700") as client_a,
            TestClient(create_app(b), base_url="http://agg-b.example:8700") as client_b,
        ):
            sent = client_a.post(
                "/owners",
                content=body,
                headers={"content-type": "application/json"},
                auth=SignedAuth(owner),
            )
            assert sent.status_code == 200
            # The attacker saw the call and replays it, headers and all, to service B.
            copied = {k: v for k, v in sent.request.headers.items() if k.startswith("x-deltaml")}
            replay = client_b.post(
                "/owners",
                content=body,
                headers={"content-type": "application/json", **copied},
            )
            assert replay.status_code == 401, replay.text
    finally:
        a.close()
        b.close()


def test_a_node_does_not_listen_on_the_network_without_tls() -> None:
    with pytest.raises(DeltaMLValueError, match="TLS"):
        bind("0.0.0.0", 0)


def test_the_buyers_sealed_keys_use_scrypt_2_17_or_more() -> None:
    _, private = generate_keypair(512, allow_test_keys=True)
    kdf = seal_key(private, "pw")["kdf"]
    match = re.fullmatch(r"scrypt-n([0-9]+)-r8-p1", kdf)
    assert match is not None and int(match.group(1)) >= 17


def test_a_serving_node_keeps_its_files_to_its_user(tmp_path: Path) -> None:
    folder = tmp_path / "agg"
    old = os.umask(0o022)  # what a shell usually has
    try:
        proc = ServiceProcess(
            "aggregator",
            ["aggregator", "serve", "--port", "0", "--dir", str(folder), "--demo-keys"],
            env={"DELTAML_PASSWORD": "pw"},
        )
    finally:
        os.umask(old)
    try:
        created = [folder, *folder.rglob("*")]
        assert any(p.name.endswith(".sqlite") for p in created)
        for path in created:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    finally:
        proc.stop()
