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
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deltaml.ledger import Web3Ledger, connect
from deltaml.ledger.accounts import generate_account
from deltaml.services.compose_demo import (
    ComposeDemoConfig,
    Stack,
    run_compose_demo,
    trusting,
    write_data,
)
from deltaml.services.demo import DemoResult

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


@dataclass
class Deployed:
    stack: Stack
    env: dict[str, str]
    work: Path  # the compose file's folder: secrets/, data/

    def secrets(self) -> dict[str, str]:
        """Every secret of the stack: file name → value."""
        return {f.name: f.read_text().strip() for f in (self.work / "secrets").iterdir()}

    def podman(self, *args: str) -> str:
        return _run(["podman", *args], self.env)


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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
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
        yield Deployed(Stack(project, "podman", ports), env, work)
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


@pytest.fixture(scope="module")
def settled(stack: Deployed) -> DemoResult:
    """One request from escrow to every withdrawal, the aggregator killed after round 2."""
    s = stack.stack
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
    assert time.monotonic() - t0 < 900
    return result


def test_one_request_over_tls_survives_an_aggregator_restart(
    stack: Deployed, settled: DemoResult
) -> None:
    result = settled
    assert result.status == "FINISHED", result.error
    assert result.restarts == 1
    assert result.verified
    assert result.test_mse is not None and result.sklearn_test_mse is not None
    assert result.test_mse <= 1.05 * result.sklearn_test_mse
    paid = sum(result.payouts_wei.values())
    assert paid > 0 and result.refund_wei >= 0
    assert paid + result.refund_wei == result.deposit_wei

    # Every container's own health check passes (podman runs them here on request).
    for service in SERVICES:
        done = subprocess.run(
            ["podman", "healthcheck", "run", stack.stack.container(service)],
            env=stack.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"


def _chain_view(stack: Deployed, result: DemoResult, ca_file: Path) -> dict[str, Any]:
    """The request as the chain has it: its state, its events, the payees' balances."""
    s = stack.stack
    context = ssl.create_default_context(cafile=str(ca_file))
    rid = int(result.transcript.rstrip("/").split("/")[-2])
    with httpx.Client(base_url=s.url("aggregator"), verify=context, trust_env=False) as agg:
        contract = agg.get("/info").json()["contract"]
        cid = int(agg.get(f"/requests/{rid}").json()["chain_request_id"])
    with trusting(ca_file):
        chain = connect(s.url("chain"))
    try:
        ledger = Web3Ledger(chain, contract, generate_account())
        return {
            "block": int(chain.w3.eth.block_number),
            "request": repr(ledger.request(cid)),
            "events": [(e.name, sorted(map(str, e.args.items()))) for e in ledger.history(cid)],
            "balances": {a: int(chain.w3.eth.get_balance(a)) for a in result.payouts_wei},
        }
    finally:
        chain.close()


def test_the_chain_keeps_the_request_and_balances_across_a_restart(
    stack: Deployed, settled: DemoResult, tmp_path: Path
) -> None:
    s = stack.stack
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(s.read("buyer", "/certs/ca.crt"))
    before = _chain_view(stack, settled, ca_file)
    assert any(name == "Withdrawn" for name, _ in before["events"])
    # SIGKILL, as a crash: the last snapshot (taken within 2 s of the last block) is whole.
    t0 = time.monotonic()
    stack.podman("kill", "--signal", "KILL", s.container("chain"))
    stack.podman("start", s.container("chain"))
    deadline = t0 + 120
    while True:
        done = subprocess.run(
            ["podman", "healthcheck", "run", s.container("chain")],
            env=stack.env,
            capture_output=True,
        )
        if done.returncode == 0:
            break
        assert time.monotonic() < deadline, "the chain did not come back"
        time.sleep(0.5)
    print(f"chain killed, started and answering again in {time.monotonic() - t0:.1f} s")
    assert _chain_view(stack, settled, ca_file) == before
    assert "state restored" in stack.podman("logs", s.container("chain"))


def test_services_run_unprivileged_with_read_only_data(stack: Deployed) -> None:
    s, env = stack.stack, stack.env
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


def test_tls_only_and_only_with_the_stacks_ca(stack: Deployed) -> None:
    s = stack.stack
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


def test_image_holds_no_wheelhouse_secrets_or_host_ca(stack: Deployed) -> None:
    env = stack.env
    image = "localhost/deltaml:dev"
    shell = ["podman", "run", "--rm", "--entrypoint", "sh", image, "-c"]
    assert "wheelhouse" not in _run([*shell, "ls -A /"], env)
    assert _run([*shell, "ls -A /node"], env).strip() == ""  # no keys, no database, no token
    assert _run([*shell, "id -un"], env).strip() == "deltaml"
    # The chain's image: anvil and its front, no state, no faucet key, no certificate.
    chain = ["podman", "run", "--rm", "--entrypoint", "sh", "localhost/deltaml-chain:dev", "-c"]
    assert _run([*chain, "ls -A /chain; ls /usr/local/bin"], env).split() == [
        "anvil",
        "chain-node",
        "deltaml-entry",
        "deltaml-health",
    ]
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


def test_the_nodes_schemas_are_at_the_newest_migration(stack: Deployed) -> None:
    """`deltaml db upgrade` in a running node (deploy/README.md, upgrading a node) finds
    nothing to do: the node applied the migrations when it opened its store. The
    aggregator's database URL comes from its secret file, never from the command line."""
    s = stack.stack
    for service, args in [
        ("aggregator", []),
        ("buyer", ["--database", "sqlite:////node/buyer.sqlite"]),
    ]:
        done = subprocess.run(
            ["podman", "exec", s.container(service), "deltaml", "db", "upgrade", *args],
            env=stack.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr


# ---- what a container that is broken into reaches (attack thinking, issue 16) ----------

#: Run inside a container: what each (host, port) answers to plain-text HTTP, and whether
#: PostgreSQL takes a session without TLS (its answer to a startup message: R = go on).
PROBE = r"""
import json, socket, struct, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    if port == "5432":
        body = b"user\0deltaml\0database\0deltaml\0\0"
        message = struct.pack("!ii", len(body) + 8, 196608) + body
    else:
        message = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    data = b""
    try:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(message)
            s.settimeout(5)
            while len(data) < 200:
                chunk = s.recv(200)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        data = data or ("(%s)" % type(exc).__name__).encode()
    out[target] = data[:200].decode("latin-1")
print(json.dumps(out))
"""

#: What may listen beyond a container's loopback: its service's TLS port, nothing else.
PUBLIC_PORTS = {
    "chain": {8545},
    "postgres": {5432},
    "aggregator": {8700},
    "buyer": {8702},
    "owner-1": {8701},
    "owner-2": {8701},
    "owner-3": {8701},
}


def _listening(stack: Deployed, service: str) -> dict[str, set[int]]:
    """Ports listening in a container's network namespace: on loopback, and elsewhere."""
    table = stack.podman(
        "exec", stack.stack.container(service), "cat", "/proc/net/tcp", "/proc/net/tcp6"
    )
    found: dict[str, set[int]] = {"loopback": set(), "other": set()}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
            continue
        address, port = fields[1].split(":")
        loopback = address in ("0100007F", "00000000000000000000000001000000")
        found["loopback" if loopback else "other"].add(int(port, 16))
    return found


def test_every_port_on_the_compose_network_speaks_tls_only(stack: Deployed) -> None:
    targets = ["chain:8545", "aggregator:8700", "buyer:8702", "owner-2:8701", "postgres:5432"]
    probe = stack.podman("exec", stack.stack.container("owner-1"), "python", "-c", PROBE, *targets)
    answers = json.loads(probe.strip().splitlines()[-1])
    for target, answer in answers.items():
        if target.endswith(":5432"):
            # PostgreSQL refuses a session without encryption before any password.
            assert answer.startswith("E") and "no encryption" in answer, (target, answer)
        else:
            assert not answer.startswith("HTTP/"), (target, answer)
    # anvil itself, which has no TLS and every development power, listens on the chain
    # container's loopback only; every service offers its TLS port and nothing else.
    for service, allowed in PUBLIC_PORTS.items():
        assert _listening(stack, service)["other"] == allowed, service
    assert _listening(stack, "chain")["loopback"], "anvil should listen on the loopback"


def test_the_chain_port_on_the_host_is_a_public_node_only(stack: Deployed, tmp_path: Path) -> None:
    s = stack.stack
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(s.read("buyer", "/certs/ca.crt"))
    context = ssl.create_default_context(cafile=str(ca_file))

    def call(method: str, params: list[Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        response = httpx.post(s.url("chain"), json=body, verify=context, trust_env=False)
        return dict(response.json())

    assert "result" in call("eth_blockNumber", [])
    for method, params in [
        ("evm_increaseTime", [86_400 * 30]),
        ("anvil_setBalance", ["0x" + "11" * 20, "0x1"]),
        ("anvil_impersonateAccount", ["0x" + "11" * 20]),
        ("eth_sendTransaction", [{"from": "0x" + "11" * 20, "to": "0x" + "22" * 20}]),
        ("eth_sendUnsignedTransaction", [{"from": "0x" + "11" * 20, "to": "0x" + "22" * 20}]),
    ]:
        assert call(method, params).get("error", {}).get("code") == -32601, method


#: The secrets each container may hold, and its own TLS key (nothing of another's).
OWN_SECRETS = {
    "chain": set(),
    "postgres": {"postgres_password"},
    "aggregator": {"aggregator_password", "aggregator_database_url"},
    "buyer": {"buyer_password"},
    "owner-1": {"owner-1_password"},
    "owner-2": {"owner-2_password"},
    "owner-3": {"owner-3_password"},
}


def test_each_container_holds_only_its_own_secrets_and_key(stack: Deployed) -> None:
    s = stack.stack
    for service, own in OWN_SECRETS.items():
        container = s.container(service)
        listed = subprocess.run(
            ["podman", "exec", "--user", "0", container, "ls", "-A", "/run/secrets"],
            env=stack.env,
            capture_output=True,
            text=True,
        )
        assert set(listed.stdout.split()) == own, service
        # Its own certificate volume: the CA's certificate and its own key, no other's.
        certs = set(stack.podman("exec", "--user", "0", container, "ls", "-A", "/certs").split())
        extra = {"chain": {"faucet-address"}, "postgres": set()}.get(service, {"ready"})
        assert certs == {"ca.crt", service, *extra}, service


def test_no_secret_in_configuration_environment_or_logs(stack: Deployed) -> None:
    s = stack.stack
    secrets = stack.secrets()
    assert len(secrets) == 7 and all(len(v) >= 32 for v in secrets.values())
    for service in ["setup", *SERVICES]:
        container = s.container(service)
        seen = {
            "podman inspect": stack.podman("inspect", container),
            "logs": subprocess.run(
                ["podman", "logs", container],
                env=stack.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ).stdout,
        }
        if service != "setup":  # running: its main process's environment (read as its user)
            user = "postgres" if service == "postgres" else "deltaml"
            seen["environment of pid 1"] = stack.podman(
                "exec", "--user", user, container, "cat", "/proc/1/environ"
            )
        for where, text in seen.items():
            for name, value in secrets.items():
                # (the database URL is checked by its password, which it contains)
                secret = (
                    value if name != "aggregator_database_url" else secrets["postgres_password"]
                )
                leaked = secret in text  # (a bool: a failure must not print the secret)
                assert not leaked, f"{name} in {service}'s {where}"
