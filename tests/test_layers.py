"""Dependencies point downward: no module imports from a layer above its own.

The layers are those of docs/architecture.md. Imports under ``if TYPE_CHECKING:``
are annotations only and do not count; function-local imports do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deltaml

LAYERS = {
    "errors": 0,
    "settings": 0,
    "crypto": 1,
    "protocol": 2,
    "learning": 3,
    "ledger": 3,
    "estimator": 3,
    "transport": 3,
    "evidence": 4,
    "roles": 5,
    "marketplace": 6,
    "simulation": 6,
    "services": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
}
ROOT = Path(deltaml.__file__).parent


def _top(name: str) -> str:
    """The layer key of a top-level module or package (``simulation_exact`` → ``simulation``)."""
    name = name.removesuffix(".py")
    return name if name in LAYERS else name.split("_")[0]


def _upward_imports(text: str, relative: str) -> list[str]:
    """``relative``'s imports of modules in a higher layer (``relative`` as in ROOT)."""
    tree = ast.parse(text)
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    own = LAYERS[_top(relative.split("/")[0])]
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "deltaml" and len(parts) > 1 and LAYERS[_top(parts[1])] > own:
                found.append(f"{relative}:{node.lineno} imports {name}")
    return found


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_top_level_module_has_a_layer() -> None:
    tops = {_top(p.relative_to(ROOT).parts[0]) for p in MODULES}
    assert tops <= set(LAYERS), tops - set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_layer_above(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert _upward_imports(text, path.relative_to(ROOT).as_posix()) == []


def test_the_check_sees_an_upward_import() -> None:
    text = "from typing import TYPE_CHECKING\n"
    text += "if TYPE_CHECKING:\n    from deltaml.roles import DataOwner\n"
    text += "def f():\n    from deltaml.services import wire\n"
    assert _upward_imports(text, "crypto/vector.py") == [
        "crypto/vector.py:5 imports deltaml.services"
    ]


#: The most lines a module of the package may have (issue 11: a newcomer reads each).
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"
