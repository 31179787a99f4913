"""``deltaml aggregator|owner|buyer|chain serve``, ``deltaml buyer request`` and ``deltaml demo``.

Every node keeps its files (keystore, SQLite database, transcripts, API token)
in its ``--dir``; its keys are protected by the password in ``DELTAML_PASSWORD``
(or the file ``DELTAML_PASSWORD_FILE`` names). Defaults and environment variables
come from :mod:`deltaml.settings`, read once when a command starts.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from deltaml import settings
from deltaml.errors import DeltaMLValueError
from deltaml.settings import DEFAULT_HOST, DEFAULT_PORTS, Settings, default_node_dir

log = logging.getLogger(__name__)


def add_commands(sub: Any) -> None:
    agg = sub.add_parser("aggregator", help="the aggregator service (the public endpoint)")
    agg_sub = agg.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = agg_sub.add_parser("serve", help="serve the aggregator's HTTP API (OpenAPI at /docs)")
    _common(a, "aggregator")
    a.add_argument("--chain-url", help="Ethereum JSON-RPC URL (none: run without a contract)")
    a.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL callers use, if not the one it listens on (signatures name it)",
    )
    a.add_argument("--contract", help="address of a deployed Marketplace (default: deploy one)")
    a.add_argument(
        "--party-timeout",
        type=float,
        default=settings.DEFAULT_PARTY_TIMEOUT_S,
        help="seconds a party may take to answer before its request fails "
        f"(default {settings.DEFAULT_PARTY_TIMEOUT_S:g})",
    )

    own = sub.add_parser("owner", help="a data owner's node")
    own_sub = own.add_subparsers(dest="action", metavar="ACTION", required=True)
    o = own_sub.add_parser("serve", help="offer local CSV data and do the encrypted work")
    _common(o, "owner")
    o.add_argument("--data", required=True, nargs="+", type=Path, help="CSV files or folders")
    o.add_argument("--aggregator", required=True, metavar="URL", help="the aggregator's URL")
    o.add_argument("--name", default="data owner", help="the name shown to buyers")
    o.add_argument(
        "--accept",
        choices=["all", "manual"],
        default="all",
        help="accept every matching request (all, the default) or decide in the web UI or API",
    )
    o.add_argument(
        "--withdraw",
        choices=["auto", "manual"],
        default="auto",
        help="withdraw each payment once settled (auto, the default) or by hand in the web UI",
    )
    o.add_argument("--min-reward-wei", type=int, default=0, help="lowest offered reward accepted")
    o.add_argument("--chain-url", help="use this JSON-RPC URL instead of the aggregator's")
    _ca(o)

    buy = sub.add_parser("buyer", help="the model buyer's node")
    buy_sub = buy.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = buy_sub.add_parser("serve", help="hold the keys, pay, decrypt what the protocol allows")
    _common(b, "buyer")
    b.add_argument("--aggregator", required=True, metavar="URL", help="the aggregator's URL")
    b.add_argument("--chain-url", help="use this JSON-RPC URL instead of the aggregator's")
    _ca(b)
    b.add_argument(
        "--allow-test-keys", action="store_true", help="permit Paillier keys under 2048 bits"
    )
    b.add_argument(
        "--approve",
        choices=["auto", "manual"],
        default="auto",
        help="approve the settlement once the evidence verifies (auto, the default) or by "
        "hand in the web UI",
    )
    b.add_argument(
        "--arbiter",
        default="",
        metavar="ADDRESS",
        help="who resolves a dispute, for requests whose spec names no arbiter",
    )
    node_help = (
        "the buyer node's local API, on this machine "
        f"(default: http://{DEFAULT_HOST}:{DEFAULT_PORTS['buyer']}; its token is read from --dir)"
    )
    r = buy_sub.add_parser("request", help="create a training request from a YAML/JSON spec")
    r.add_argument("spec", type=Path, metavar="SPEC", help="the request spec (YAML or JSON)")
    r.add_argument(
        "--node",
        default=f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['buyer']}",
        metavar="URL",
        help=node_help,
    )
    r.add_argument("--dir", type=Path, default=default_node_dir("buyer"), help="node folder")
    _ca(r)

    mo = buy_sub.add_parser("model", help="download a request's trained model (JSON or ONNX)")
    mo.add_argument("request_id", type=int, metavar="REQUEST", help="the request's id on the node")
    mo.add_argument(
        "--out",
        type=Path,
        help="write it here: ONNX for a *.onnx path (needs the onnx extra), the JSON model "
        "file otherwise (default: print the JSON)",
    )
    mo.add_argument(
        "--node",
        default=f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['buyer']}",
        metavar="URL",
        help=node_help,
    )
    mo.add_argument("--dir", type=Path, default=default_node_dir("buyer"), help="node folder")
    _ca(mo)
    st = buy_sub.add_parser("status", help="the buyer's requests, as the node sees them")
    st.add_argument(
        "--node",
        default=f"http://{DEFAULT_HOST}:{DEFAULT_PORTS['buyer']}",
        metavar="URL",
        help=node_help,
    )
    st.add_argument("--dir", type=Path, default=default_node_dir("buyer"), help="node folder")
    _ca(st)

    ch = sub.add_parser("chain", help="an embedded Ethereum node over JSON-RPC")
    ch_sub = ch.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = ch_sub.add_parser("serve", help="serve the embedded EVM on 127.0.0.1")
    c.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    c.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORTS["chain"],
        help=f"port (default {DEFAULT_PORTS['chain']})",
    )
    c.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS: certificate chain")
    c.add_argument("--tls-key", metavar="PEM", help="serve HTTPS: its private key")

    from deltaml.services.demo import add_demo_parser

    add_demo_parser(sub)


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORTS[what], help="port (0: any free port)")
    p.add_argument("--dir", type=Path, default=default_node_dir(what), help="the node's folder")
    p.add_argument(
        "--database-url",
        help="SQLAlchemy URL (default: $DELTAML_DATABASE_URL or the file "
        "$DELTAML_DATABASE_URL_FILE names, else $DATABASE_URL, else an SQLite file in --dir)",
    )
    p.add_argument("--demo-keys", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS: certificate chain")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="serve HTTPS: its private key")


def _ca(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca",
        type=Path,
        metavar="PEM",
        help="CA certificates to trust for https:// URLs (default: the system's store)",
    )


def run_command(args: argparse.Namespace) -> int:
    from deltaml.services.serve import private_files

    # Keys, databases, transcripts and CSVs: 0600 files in 0700 folders.
    private_files()
    ca = getattr(args, "ca", None)
    if ca is not None:
        if not ca.is_file():
            raise DeltaMLValueError(f"--ca {ca}: no such file")
        settings.set_ca_file(ca)  # this process's clients and its children trust it
    env = Settings.from_env()  # a misconfigured variable fails here, in one line
    if args.command == "demo":
        from deltaml.services.demo import run_demo_command

        return run_demo_command(args)
    handler = {
        ("aggregator", "serve"): _aggregator,
        ("owner", "serve"): _owner,
        ("buyer", "serve"): _buyer,
        ("buyer", "request"): _buyer_request,
        ("buyer", "model"): _buyer_model,
        ("buyer", "status"): _buyer_status,
        ("chain", "serve"): _chain,
    }[(args.command, args.action)]
    return handler(args, env)


def _node_basics(args: argparse.Namespace, what: str, env: Settings) -> tuple[Any, str, str]:
    from deltaml.services.serve import load_or_create_account
    from deltaml.services.store import database_url

    password = env.require_password()
    args.dir.mkdir(parents=True, exist_ok=True)
    args.dir.chmod(0o700)
    account = load_or_create_account(args.dir / "account.json", password, fast_kdf=args.demo_keys)
    url = database_url(args.database_url or env.database_url, args.dir / f"{what}.sqlite")
    return account, url, password


def _aggregator(args: argparse.Namespace, env: Settings) -> int:
    from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
    from deltaml.services.serve import serve

    _tls(args)
    account, db_url, _ = _node_basics(args, "aggregator", env)
    ledger = None
    if args.chain_url:
        from deltaml.ledger import Web3Ledger, connect

        chain = connect(args.chain_url)
        saved = args.dir / "contract.json"
        contract = args.contract or (
            json.loads(saved.read_text())["address"] if saved.exists() else None
        )
        if contract:
            ledger = Web3Ledger(chain, contract, account)
        else:
            ledger = Web3Ledger.deploy(chain, account)
            log.info("deployed the Marketplace at %s", ledger.contract_address)
        saved.write_text(json.dumps({"address": ledger.contract_address}))
    service = AggregatorService(
        AggregatorConfig(
            account=account,
            database_url=db_url,
            work_dir=args.dir,
            ledger=ledger,
            party_timeout=args.party_timeout,
            chain_url=args.chain_url or "",
        )
    )
    service.resume()
    service.start_watcher()

    def listening(url: str) -> None:
        # Callers sign for the origin they call: where it listens (also as localhost
        # when that is 127.0.0.1), or the public URL in front of it.
        urls = [args.public_url] if args.public_url else [url]
        if not args.public_url and "://127.0.0.1:" in url:
            urls.append(url.replace("://127.0.0.1:", "://localhost:"))
        service.verifier.set_origins(*urls)

    return serve(
        create_app(service),
        "aggregator",
        args.host,
        args.port,
        service.close,
        tls=_tls(args),
        on_listening=listening,
    )


def _tls(args: argparse.Namespace) -> Any:
    from deltaml.services.serve import TLSFiles

    return TLSFiles.from_args(args.tls_cert, args.tls_key)


def _owner(args: argparse.Namespace, env: Settings) -> int:
    from deltaml.services.owner import OwnerConfig, OwnerNode
    from deltaml.services.owner_api import create_app
    from deltaml.services.serve import serve
    from deltaml.services.ui import LoginConfig

    _tls(args)  # refuse a half-given pair before any work
    account, db_url, password = _node_basics(args, "owner", env)
    node = OwnerNode(
        OwnerConfig(
            account=account,
            data=list(args.data),
            aggregator_url=args.aggregator,
            database_url=db_url,
            work_dir=args.dir,
            name=args.name,
            accept=args.accept,
            min_reward_wei=args.min_reward_wei,
            auto_withdraw=args.withdraw == "auto",
            chain_url=args.chain_url,
        )
    )
    node.start()
    app = create_app(node, LoginConfig.from_password(password))
    return serve(app, "owner", args.host, args.port, node.stop, tls=_tls(args))


def _buyer(args: argparse.Namespace, env: Settings) -> int:
    from deltaml.services.buyer import BuyerConfig, BuyerNode, create_app
    from deltaml.services.serve import serve
    from deltaml.services.ui import LoginConfig

    _tls(args)
    account, db_url, password = _node_basics(args, "buyer", env)
    node = BuyerNode(
        BuyerConfig(
            account=account,
            aggregator_url=args.aggregator,
            database_url=db_url,
            work_dir=args.dir,
            key_password=password,
            allow_test_keys=args.allow_test_keys,
            chain_url=args.chain_url,
            auto_approve=args.approve == "auto",
            arbiter=args.arbiter,
        )
    )
    node.start()
    app = create_app(node, LoginConfig.from_password(password))
    return serve(app, "buyer", args.host, args.port, node.stop, tls=_tls(args))


def _local_call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    """A call to the local buyer node's API, with the token from its folder."""
    import httpx

    from deltaml.services.party import api_token, error_detail
    from deltaml.services.serve import client_tls

    token = api_token(args.dir)
    try:
        response = httpx.request(
            method,
            args.node.rstrip("/") + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=600,
            trust_env=False,
            verify=client_tls(),
            **kwargs,
        )
    except httpx.HTTPError as exc:
        raise DeltaMLValueError(f"cannot reach the buyer node at {args.node}: {exc}") from None
    if response.status_code >= 400:
        raise DeltaMLValueError(error_detail(response))
    return response.json()


def _buyer_request(args: argparse.Namespace, _env: Settings) -> int:
    import yaml

    from deltaml.protocol.json_limits import MAX_JSON_DEPTH
    from deltaml.services.serve import MAX_BODY_BYTES

    try:
        raw = args.spec.read_bytes()
        if len(raw) > MAX_BODY_BYTES:  # the node takes no larger body either
            raise DeltaMLValueError(f"{args.spec} is larger than {MAX_BODY_BYTES} bytes")
        # Flow nesting is bounded before the YAML parser (slow, recursive) sees it; a
        # spec needs one or two brackets, block nesting is bounded by the size.
        if raw.count(b"[") + raw.count(b"{") > 1000:
            raise DeltaMLValueError(f"{args.spec} is not a request spec (too many brackets)")
        doc = yaml.safe_load(raw.decode("utf-8"))
    except OSError as exc:
        raise DeltaMLValueError(f"cannot read {args.spec}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DeltaMLValueError(f"{args.spec} is not UTF-8 text") from None
    except (yaml.YAMLError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise DeltaMLValueError(f"{args.spec} is not valid YAML: {detail}") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise DeltaMLValueError(f"{args.spec}: nested deeper than {MAX_JSON_DEPTH} levels")
    print(json.dumps(_local_call(args, "POST", "/requests", json=doc)))
    return 0


def _depth(value: Any, level: int = 0) -> int:
    """How deeply lists and mappings nest in ``value`` (stops counting past 64)."""
    if level > 64 or not isinstance(value, list | dict):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, level + 1) for v in items), default=level + 1)


def _buyer_model(args: argparse.Namespace, _env: Settings) -> int:
    from deltaml.estimator import TrainedModel

    model = TrainedModel.from_json(_local_call(args, "GET", f"/requests/{args.request_id}/model"))
    if args.out:
        model.save(args.out)
        print(f"model of request {args.request_id} written to {args.out}")
    else:
        print(json.dumps(model.to_json(), indent=2))
    return 0


def _buyer_status(args: argparse.Namespace, _env: Settings) -> int:
    print(json.dumps(_local_call(args, "GET", "/status"), indent=2))
    return 0


def _chain(args: argparse.Namespace, _env: Settings) -> int:
    from deltaml.ledger.node import main

    tls = ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key] if args.tls_cert else []
    if bool(args.tls_cert) != bool(args.tls_key):
        raise DeltaMLValueError("--tls-cert and --tls-key go together")
    return main(["--host", args.host, "--port", str(args.port), *tls])
