"""First start of the compose stack (the ``setup`` service, run on every ``up``, as root).

In this order (deploy/compose.yaml):

1. A certificate authority in /ca (its key never leaves that volume, which no service
   mounts) and a certificate for every service. Each service has a volume of its own for
   them, mounted here at /out/NAME: it gets ``ca.crt`` and ``NAME/{cert,key}.pem``, owned
   by that service's user, and nothing of any other service (a container that is broken
   into cannot read another service's TLS key).
2. The faucet of the development chain: a key made here and kept in /ca; its address goes
   to the chain's volume, and the chain (which waits for it) gives it ether at first start.
3. Each node's Ethereum account in its own volume (/nodes/NAME/account.json, under the
   node's password from /run/secrets/NAME_password) — on a development chain only, so
   that it can be funded before the node starts; on a real chain each node makes its own
   account at first start and its operator funds it (deploy/README.md).
4. Once the chain answers (over TLS, checked against the CA): ether for every account
   from the faucet, as signed transactions (the chain signs nothing for anyone).
5. ``ready`` in each node's certificate volume, which the node waits for.

What exists is kept: a second ``up`` makes nothing new and funds only accounts that
ran low.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

APP_UID = 10001  # the image's `deltaml` user
POSTGRES_UID = 999  # deploy/postgres's `postgres` user
CA = Path("/ca")
OUT = Path("/out")
FAUCET_KEY = CA / "faucet.key"
FAUCET_FILE = "faucet-address"  # in the chain's volume


def chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, uid)


def certificates(names: list[str]) -> None:
    """The CA and every certificate in /ca; each service's own copied to its volume."""
    issued = CA / "issued"
    subprocess.run(
        ["sh", "/usr/local/lib/deltaml/make-certs.sh", str(CA), str(issued), *names],
        check=True,
    )
    for name in names:
        volume = OUT / name
        uid = POSTGRES_UID if name == "postgres" else APP_UID
        (volume / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(issued / "ca.crt", volume / "ca.crt")
        for pem in ("cert.pem", "key.pem"):
            shutil.copyfile(issued / name / pem, volume / name / pem)
            (volume / name / pem).chmod(0o600)
        (volume / "ca.crt").chmod(0o644)
        chown_tree(volume, uid)
        volume.chmod(0o755)
        (volume / name).chmod(0o700)


def faucet() -> LocalAccount:
    """The development chain's faucet: its key in /ca, its address for the chain."""
    from eth_account import Account

    if FAUCET_KEY.exists():
        account: LocalAccount = Account.from_key(FAUCET_KEY.read_text().strip())
    else:
        account = Account.create()
        FAUCET_KEY.write_text(account.key.hex() + "\n")
        FAUCET_KEY.chmod(0o600)
    target = OUT / "chain" / FAUCET_FILE
    target.write_text(account.address + "\n")
    target.chmod(0o644)
    return account


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


def fund(chain_url: str, source: LocalAccount, addresses: list[str], amount_wei: int) -> None:
    """Send ``amount_wei`` from the faucet to each address that has less than half of it."""
    from deltaml.ledger import connect

    os.environ["DELTAML_CA_FILE"] = str(CA / "ca.crt")  # the chain's certificate is ours
    deadline = time.monotonic() + 180
    while True:
        try:
            chain = connect(chain_url)
            balances = {a: int(chain.w3.eth.get_balance(a)) for a in addresses}
            break
        except Exception as exc:  # the chain container may still be starting
            if time.monotonic() > deadline:
                sys.exit(f"setup: the chain at {chain_url} does not answer: {exc}")
            time.sleep(1)
    w3 = chain.w3
    poor = [a for a, wei in balances.items() if wei < amount_wei // 2]
    nonce = int(w3.eth.get_transaction_count(source.address, "pending"))
    fees = {"gasPrice": 2 * int(w3.eth.gas_price), "gas": 21_000, "chainId": chain.chain_id}
    hashes = []
    for i, address in enumerate(poor):
        tx = {"to": address, "value": amount_wei, "nonce": nonce + i, **fees}
        signed = source.sign_transaction(tx)
        hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
    for tx_hash in hashes:
        if w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] != 1:
            sys.exit("setup: a funding transaction failed")
    if poor:
        print(f"setup: funded {len(poor)} accounts on the development chain", flush=True)


def main() -> None:
    os.umask(0o077)
    certificates(os.environ.get("DELTAML_CERT_NAMES", "").split())
    source = faucet()
    nodes = os.environ.get("DELTAML_NODES", "").split()
    addresses = accounts(nodes)
    fund_wei = int(os.environ.get("DELTAML_DEV_FUND_WEI", "0"))
    if fund_wei > 0:
        fund(os.environ["DELTAML_CHAIN_URL"], source, addresses, fund_wei)
    for name in nodes:
        ready = OUT / name / "ready"
        ready.write_text("ok\n")
        ready.chmod(0o644)
    print("setup: done", flush=True)


if __name__ == "__main__":
    main()
