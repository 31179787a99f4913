"""The compose stack for real: image built, containers started, one request over TLS.

Builds the image from the Containerfile (on a base image made with debootstrap when no
registry is reachable: deploy/scripts/prepare.sh), starts deploy/compose.yaml under a
project of its own, asks the buyer node for a model, kills the aggregator's container
(SIGKILL) mid-training and starts it again, and checks that the request finishes from
the aggregator's checkpoint, the evidence verifies, every payee withdrew and the
payouts plus the refund are the deposit. Also: every container's health check passes,
the services run as a non-root user, the owners' data is read-only, and the services
speak TLS only, with certificates from the stack's own CA.

Skipped without podman and podman-compose; required (fails instead) when
DELTAML_REQUIRE_CONTAINERS=1, as in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deltaml.services.compose_demo import (
    ComposeDemoConfig,
    Stack,
    run_compose_demo,
    write_data,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REQUIRED = os.environ.get("DELTAML_REQUIRE_CONTAINERS") == "1"
SERVICES = ["chain", "postgres", "aggregator", "buyer", "owner-1", "owner-2", "owner-3"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _missing() -> list[str]:
    tools = ["podman", "podman-compose", "openssl"]
    missing = [t for t in tools if shutil.which(t) is None]
    if shutil.which("podman") and not _base_image_exists() and not shutil.which("debootstrap"):
        missing.append("debootstrap (no base image and no registry)")
    return missing


def _base_image_exists() -> bool:
    done = subprocess.run(
        ["podman", "image", "exists", "docker.io/library/debian:bookworm-slim"],
        env=_env(),
        capture_output=True,
    )
    return done.returncode == 0


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(DEPLOY / "containers.conf"))
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    args: list[str], env: dict[str, str], timeout: float = 900, cwd: Path | None = None
) -> str:
    done = subprocess.run(
        args,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    missing = _missing()
    if missing:
        message = "containers need: " + ", ".join(missing)
        if REQUIRED:
            pytest.fail(message + " (DELTAML_REQUIRE_CONTAINERS=1)")
        pytest.skip(message)
    env = _env()
    t0 = time.monotonic()
    _run(["sh", str(DEPLOY / "scripts" / "prepare.sh")], env, timeout=1500)
    print(f"prepare.sh: {time.monotonic() - t0:.0f} s")

    # The compose file, its secrets and the owners' data in a folder of the test's own.
    work = tmp_path_factory.mktemp("compose")
    shutil.copy(DEPLOY / "compose.yaml", work / "compose.yaml")
    _run(["sh", str(DEPLOY / "scripts" / "init-secrets.sh"), str(work / "secrets")], env)
    write_data(work / "data")
    work.chmod(0o755)
    ports = {name: _free_port() for name in ["aggregator", "buyer", "chain", *SERVICES[4:]]}
    project = f"deltaml-test-{os.getpid()}"
    env = _env(
        DELTAML_AGGREGATOR_PORT=str(ports["aggregator"]),
        DELTAML_BUYER_PORT=str(ports["buyer"]),
        DELTAML_CHAIN_PORT=str(ports["chain"]),
        DELTAML_OWNER1_PORT=str(ports["owner-1"]),
        DELTAML_OWNER2_PORT=str(ports["owner-2"]),
        DELTAML_OWNER3_PORT=str(ports["owner-3"]),
        DELTAML_BUYER_FLAG="--allow-test-keys",
    )
    compose = ["podman-compose", "-p", project, "-f", str(work / "compose.yaml")]
    t0 = time.monotonic()
    try:
        # From the compose file's folder: podman-compose 1.0.3 resolves secrets' paths from there.
        _run([*compose, "up", "-d"], env, timeout=600, cwd=work)
        print(f"compose up -d: {time.monotonic() - t0:.0f} s")
        yield Stack(project, "podman", ports), env
    finally:
        for service in SERVICES:
            logs = subprocess.run(
                ["podman", "logs", "--tail", "15", f"{project}_{service}_1"],
                env=env,
                capture_output=True,
                text=True,
            )
            print(f"--- {service}\n{logs.stdout}{logs.stderr}")
        subprocess.run(
            [*compose, "down", "-v"], env=env, cwd=work, capture_output=True, timeout=300
        )
        # podman-compose 1.0.3 leaves the project's network behind.
        subprocess.run(
            ["podman", "network", "rm", f"{project}_default"], env=env, capture_output=True
        )


def test_one_request_over_tls_survives_an_aggregator_restart(
    stack: tuple[Stack, dict[str, str]],
) -> None:
    s, env = stack
    t0 = time.monotonic()
    result = run_compose_demo(
        ComposeDemoConfig(
            project=s.project,
            rounds=10,
            eval_every=5,
            key_bits=2048,  # the stack refuses test keys, as any deployment does
            deposit_wei=10**18,
            crash_after_round=2,
            timeout=900,
            ports=s.ports,
        ),
        say=print,
    )
    print(f"start-up {result.startup_seconds:.1f} s; request to withdrawals {result.seconds:.1f} s")
    assert result.status == "FINISHED", result.error
    assert result.restarts == 1
    assert result.verified
    assert result.test_mse is not None and result.sklearn_test_mse is not None
    assert result.test_mse <= 1.05 * result.sklearn_test_mse
    paid = sum(result.payouts_wei.values())
    assert paid > 0 and result.refund_wei >= 0
    assert paid + result.refund_wei == result.deposit_wei
    assert time.monotonic() - t0 < 900

    # Every container's own health check passes (podman runs them here on request).
    for service in SERVICES:
        done = subprocess.run(
            ["podman", "healthcheck", "run", s.container(service)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"


def test_services_run_unprivileged_with_read_only_data(stack: tuple[Stack, dict[str, str]]) -> None:
    s, env = stack
    for service in ["aggregator", "buyer", "owner-1"]:
        assert _run(["podman", "exec", s.container(service), "id", "-u"], env).strip() == "10001"
    # The owners' data is mounted read-only: even root in the container cannot write it.
    owner = s.container("owner-2")
    mounts = _run(
        [
            "podman",
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}",
            owner,
        ],
        env,
    ).split()
    assert "/data=false" in mounts
    denied = subprocess.run(
        ["podman", "exec", "--user", "0", owner, "sh", "-c", "echo x >> /data/diabetes.csv"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    # The CA's key stays in the setup's volume: no service can read it.
    assert "ca.key" not in _run(["podman", "exec", s.container("aggregator"), "ls", "/certs"], env)


def test_tls_only_and_only_with_the_stacks_ca(stack: tuple[Stack, dict[str, str]]) -> None:
    s = stack[0]
    aggregator = f"127.0.0.1:{s.ports['aggregator']}"
    # Plain HTTP to a TLS port gets no answer from the API.
    with contextlib.suppress(httpx.HTTPError):
        response = httpx.get(f"http://{aggregator}/health", timeout=10, trust_env=False)
        assert response.status_code >= 400
    # The system's CAs do not vouch for the stack's certificates ...
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{aggregator}/health", timeout=10, trust_env=False)
    # ... the stack's CA does.
    ca = s.read("buyer", "/certs/ca.crt")
    context = ssl.create_default_context(cadata=ca)
    response = httpx.get(
        f"https://{aggregator}/health", verify=context, timeout=10, trust_env=False
    )
    assert response.status_code == 200


def test_image_holds_no_wheelhouse_secrets_or_host_ca(stack: tuple[Stack, dict[str, str]]) -> None:
    env = stack[1]
    image = "localhost/deltaml:dev"
    shell = ["podman", "run", "--rm", "--entrypoint", "sh", image, "-c"]
    assert "wheelhouse" not in _run([*shell, "ls -A /"], env)
    assert _run([*shell, "ls -A /node"], env).strip() == ""  # no keys, no database, no token
    assert _run([*shell, "id -un"], env).strip() == "deltaml"
    bundle = _run(
        [
            "podman",
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            image,
            "/etc/ssl/certs/ca-certificates.crt",
        ],
        env,
    )
    assert bundle.count("BEGIN CERTIFICATE") > 50  # Debian's public CAs ...
    # ... and none this machine added for itself (e.g. an egress proxy's CA).
    local = Path("/usr/local/share/ca-certificates")
    for pem in local.glob("*.crt") if local.is_dir() else []:
        body = "".join(
            line for line in pem.read_text().splitlines() if line and not line.startswith("-----")
        )
        assert body[64:192] not in bundle.replace("\n", ""), pem.name
