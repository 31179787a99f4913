"""deploy/compose.yaml and make-certs.sh, checked without containers (runs everywhere)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NODES = ["aggregator", "buyer", "owner-1", "owner-2", "owner-3"]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"])


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def test_every_node_has_its_own_volume_and_tls(services: dict[str, Any]) -> None:
    volumes = [next(v for v in services[n]["volumes"] if v.endswith(":/node")) for n in NODES]
    assert len(set(volumes)) == len(NODES)
    for name in NODES:
        command = _command(services[name])
        assert f"--tls-cert=/certs/{name}/cert.pem" in command, name
        assert f"--tls-key=/certs/{name}/key.pem" in command, name
        assert "--host=0.0.0.0" in command, name
        if name != "aggregator":
            assert "--ca=/certs/ca.crt" in command, name
            assert "--aggregator=https://aggregator:8700" in command, name
        # Its own certificate volume only (ca.crt and its own key); the CA's key is in `ca`,
        # which only `setup` mounts.
        mounts = [v.split("#")[0].strip() for v in services[name]["volumes"]]
        assert f"certs-{name}:/certs:ro" in mounts, name
        assert not any(v.startswith(("ca:", "certs:")) for v in mounts), name
        assert [v for v in mounts if v.startswith("certs-")] == [f"certs-{name}:/certs:ro"], name


def test_the_chain_is_reached_over_tls_and_keeps_its_state(services: dict[str, Any]) -> None:
    chain = services["chain"]
    command = _command(chain)
    assert "--tls-cert=/certs/chain/cert.pem" in command
    assert "--tls-key=/certs/chain/key.pem" in command
    assert "--state=/chain/state.json" in command
    assert "chain:/chain" in chain["volumes"]
    assert chain["environment"]["DELTAML_HEALTH_URL"].startswith("https://")
    assert "--chain-url=https://chain:8545" in _command(services["aggregator"])
    assert services["setup"]["environment"]["DELTAML_CHAIN_URL"] == "https://chain:8545"
    # Every node trusts the stack's CA for the chain's certificate.
    for name in NODES:
        assert services[name]["environment"]["DELTAML_CA_FILE"] == "/certs/ca.crt", name


def test_owners_data_read_only_and_passwords_from_files(services: dict[str, Any]) -> None:
    for i in (1, 2, 3):
        assert f"./data/owner-{i}:/data:ro" in [
            v.split("#")[0].strip() for v in services[f"owner-{i}"]["volumes"]
        ]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), (name, key)
            assert "postgresql" not in str(value), (name, key)  # URLs with passwords: secrets
            if key.endswith("_FILE") and key != "DELTAML_CA_FILE":
                # A secret file is one of the service's own secrets, by the name deltaml reads.
                assert value.removeprefix("/run/secrets/") in service["secrets"], (name, key)
    aggregator = services["aggregator"]["environment"]
    assert aggregator["DELTAML_DATABASE_URL_FILE"] == "/run/secrets/aggregator_database_url"
    for name in NODES:
        own = services[name]["environment"]["DELTAML_PASSWORD_FILE"]
        assert own == f"/run/secrets/{name}_password", name
        assert {s for s in services[name]["secrets"] if s.endswith("_password")} == {
            f"{name}_password"
        }, name
    # Nothing but the aggregator may be published beyond 127.0.0.1 (and it only on request).
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:") or name == "aggregator", (name, port)
    assert services["aggregator"]["ports"][0].startswith("${DELTAML_BIND:-127.0.0.1}:")


def test_make_certs_makes_certificates_that_verify(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:  # CI installs it: there this fails, not skips
        if os.environ.get("DELTAML_REQUIRE_CONTAINERS") == "1":
            pytest.fail("needs the openssl command (DELTAML_REQUIRE_CONTAINERS=1)")
        pytest.skip("needs the openssl command")
    script = DEPLOY / "scripts" / "make-certs.sh"
    out = tmp_path / "certs"
    subprocess.run(
        ["sh", str(script), str(tmp_path / "ca"), str(out), "aggregator", "owner-1"],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o077 == 0
    assert (out / "aggregator" / "key.pem").stat().st_mode & 0o077 == 0
    assert not (out / "ca.key").exists()

    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(out / "aggregator" / "cert.pem", out / "aggregator" / "key.pem")
    client = ssl.create_default_context(cafile=str(out / "ca.crt"))

    def handshake(hostname: str) -> None:
        a, b = socket.socketpair()
        with a, b:
            done = threading.Thread(target=_accept, args=(server, a), daemon=True)
            done.start()
            try:
                with client.wrap_socket(b, server_hostname=hostname):
                    pass
            finally:
                done.join(5)

    handshake("aggregator")
    handshake("localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake("owner-1")  # owner-1's name is not on the aggregator's certificate
    # A second run keeps the CA and the certificates it made.
    before = (out / "aggregator" / "cert.pem").read_bytes()
    subprocess.run(
        ["sh", str(script), str(tmp_path / "ca"), str(out), "aggregator"],
        check=True,
        capture_output=True,
    )
    assert (out / "aggregator" / "cert.pem").read_bytes() == before


def _accept(context: ssl.SSLContext, sock: socket.socket) -> None:
    try:
        with context.wrap_socket(sock, server_side=True):
            pass
    except (ssl.SSLError, OSError):
        pass  # the client refused the certificate
