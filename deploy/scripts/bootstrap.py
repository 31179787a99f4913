"""First start of the compose stack (the ``setup`` service, run once, as root).

1. A certificate authority in /ca (its key never leaves that volume) and a certificate
   for every service in /certs/NAME/, each readable by that service's user only.
2. Each node's Ethereum account in its own volume (/nodes/NAME/account.json, under the
   node's password from /run/secrets/NAME_password) — on a development chain only, so
   that it can be funded before the node starts; on a real chain each node makes its own
   account at first start and its operator funds it (deploy/README.md).
3. Ether for every account from the development chain's prefunded account.
4. /certs/ready, which the services wait for.

Run again on every ``up``: what exists is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

APP_UID = 10001  # the image's `deltaml` user
POSTGRES_UID = 999  # deploy/postgres's `postgres` user


def chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, uid)


def certificates(names: list[str]) -> None:
    certs = Path("/certs")
    subprocess.run(["sh", "/usr/local/lib/deltaml/make-certs.sh", "/ca", str(certs), *names],
                   check=True)
    certs.chmod(0o755)
    for name in names:
        folder = certs / name
        chown_tree(folder, POSTGRES_UID if name == "postgres" else APP_UID)
        folder.chmod(0o700)


def accounts(nodes: list[str]) -> list[str]:
    from deltaml.ledger.accounts import generate_account, load_keystore, save_keystore

    addresses = []
    for name in nodes:
        folder = Path("/nodes") / name
        password = Path(f"/run/secrets/{name}_password").read_text().strip()
        keystore = folder / "account.json"
        if keystore.exists():
            account = load_keystore(keystore, password)
        else:
            account = generate_account()
            save_keystore(account, keystore, password)
            print(f"setup: an account for {name}: {account.address}", flush=True)
        addresses.append(str(account.address))
        chown_tree(folder, APP_UID)
        folder.chmod(0o700)
    return addresses


def fund(chain_url: str, addresses: list[str], amount_wei: int) -> None:
    from deltaml.ledger import connect, fund_from_dev_account

    deadline = time.monotonic() + 120
    while True:
        try:
            chain = connect(chain_url)
            balances = {a: int(chain.w3.eth.get_balance(a)) for a in addresses}
            break
        except Exception as exc:  # the chain container may still be starting
            if time.monotonic() > deadline:
                sys.exit(f"setup: the chain at {chain_url} does not answer: {exc}")
            time.sleep(1)
    poor = [a for a, wei in balances.items() if wei < amount_wei // 2]
    if poor:
        fund_from_dev_account(chain, poor, amount_wei, demo=True)
        print(f"setup: funded {len(poor)} accounts on the development chain", flush=True)


def main() -> None:
    os.umask(0o077)
    certificates(os.environ.get("DELTAML_CERT_NAMES", "").split())
    nodes = os.environ.get("DELTAML_NODES", "").split()
    addresses = accounts(nodes)
    fund_wei = int(os.environ.get("DELTAML_DEV_FUND_WEI", "0"))
    if fund_wei > 0:
        fund(os.environ["DELTAML_CHAIN_URL"], addresses, fund_wei)
    ready = Path("/certs/ready")
    ready.write_text("ok\n")
    ready.chmod(0o644)
    print("setup: done", flush=True)


if __name__ == "__main__":
    main()
