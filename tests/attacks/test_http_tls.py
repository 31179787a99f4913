"""Nodes over TLS, with certificates made in the test: checked by clients, never skipped."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import trustme

from deltaml.services.serve import ServiceProcess, client_tls


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    paths = {k: tmp_path / f"{k}.pem" for k in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    paths["cert"].write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    return paths


def test_nodes_talk_over_tls_and_check_certificates(
    tmp_path: Path, certificates: dict[str, Path]
) -> None:
    tls = ["--tls-cert", str(certificates["cert"]), "--tls-key", str(certificates["key"])]
    env = {"DELTAML_PASSWORD": "pw"}
    csv = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.4f}" for v in rng.normal(size=3)) for _ in range(40))
    csv.write_text("age,bmi,y\n" + rows + "\n")
    aggregator = ServiceProcess(
        "aggregator",
        ["aggregator", "serve", "--port", "0", "--dir", str(tmp_path / "agg"), "--demo-keys", *tls],
        env=env,
    )
    owner = None
    try:
        assert aggregator.url.startswith("https://127.0.0.1:")
        trusted = httpx.Client(base_url=aggregator.url, verify=client_tls(certificates["ca"]))
        assert trusted.get("/health").json()["ok"] is True
        # The system's store does not know the test's CA: the certificate is checked.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(aggregator.url + "/health", verify=client_tls())
        # An owner node that trusts the CA (--ca) registers over HTTPS.
        owner = ServiceProcess(
            "owner",
            [
                "owner",
                "serve",
                "--data",
                str(csv),
                "--aggregator",
                aggregator.url,
                "--ca",
                str(certificates["ca"]),
                "--port",
                "0",
                "--dir",
                str(tmp_path / "owner"),
                "--demo-keys",
                *tls,
            ],
            env=env,
        )
        assert owner.url.startswith("https://")
        deadline = time.monotonic() + 60
        while trusted.get("/health").json()["owners"] < 1:
            assert time.monotonic() < deadline, "the owner did not register over TLS"
            time.sleep(0.2)
        trusted.close()
    finally:
        if owner is not None:
            owner.stop()
        aggregator.stop()


def test_the_chain_node_serves_https_and_clients_check_its_certificate(
    certificates: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deltaml chain serve --tls-cert/--tls-key`: JSON-RPC over HTTPS, trusted only
    through the CA the services are given (DELTAML_CA_FILE), refused otherwise."""
    import threading

    from deltaml.errors import LedgerError
    from deltaml.ledger.chain import RpcChain
    from deltaml.ledger.node import make_server, server_tls

    server = make_server(
        "127.0.0.1", 0, tls=server_tls(str(certificates["cert"]), str(certificates["key"]))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert server.url.startswith("https://")
        monkeypatch.delenv("DELTAML_CA_FILE", raising=False)
        with pytest.raises(LedgerError, match="no Ethereum JSON-RPC node"):
            RpcChain(server.url, timeout_s=5)  # the system store does not know this CA
        monkeypatch.setenv("DELTAML_CA_FILE", str(certificates["ca"]))
        chain = RpcChain(server.url, timeout_s=5)
        assert chain.chain_id > 0
        plain = server.url.replace("https://", "http://")
        with pytest.raises(LedgerError):
            RpcChain(plain, timeout_s=5)  # no plain HTTP beside it
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
