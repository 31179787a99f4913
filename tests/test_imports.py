"""Every module of the package imports on its own, first, in a fresh interpreter.

An import cycle only shows when the cycle is entered from the right module, so each
module is imported first in its own process (a fork of one interpreter that has
imported the third-party libraries but nothing of ``deltaml``), in a random order
printed on failure.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import deltaml

PACKAGE = Path(deltaml.__file__).parent

CHILD = textwrap.dedent(
    """
    import importlib, os, sys, traceback
    import numpy, scipy, sklearn, phe, gmpy2, web3, eth_account, fastapi, sqlalchemy, httpx
    assert not any(name.split(".")[0] == "deltaml" for name in sys.modules)
    failed = []
    for name in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            failed.append(name)
    print("FAILED:", " ".join(failed))
    sys.exit(1 if failed else 0)
    """
)


#: Alembic's scripts: run by Alembic inside a migration context, not imported.
MIGRATION_SCRIPTS = PACKAGE / "services" / "migrations"


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent != MIGRATION_SCRIPTS and MIGRATION_SCRIPTS in path.parents:
            continue  # versions/*.py
        if path == MIGRATION_SCRIPTS / "env.py":
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert "deltaml.transport" in modules and "deltaml.evidence.verify" in modules
    seed = random.randrange(2**32)
    random.Random(seed).shuffle(modules)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *modules], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"order seed {seed}:\n{done.stdout}\n{done.stderr[-4000:]}"
