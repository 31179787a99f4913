"""Shared pieces of the benchmarks: machine facts, timing summaries, tables, op counting.

The benchmarks are scripts (``python bench/core.py``), so this module is imported
by file location, not as part of the ``deltaml`` package.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from deltaml.crypto import OPERATION_COUNTS
from deltaml.protocol.messages import Message
from deltaml.transport.base import Transport

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _src_modified() -> bool | None:
    """Whether ``src/`` differs from the commit (the numbers then belong to a work tree)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def machine_facts() -> dict[str, object]:
    """What a reader needs to compare our numbers with theirs."""
    import gmpy2

    from deltaml.transport.processes import usable_cores

    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "gmpy2": gmpy2.version(),
        "phe": _version("phe"),
        "numpy": _version("numpy"),
        "scikit-learn": _version("scikit-learn"),
        "deltaml": _version("deltaml"),
        "git_commit": _git_commit(),
        "src_modified": _src_modified(),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine slows every timing."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_line(facts: dict[str, object]) -> str:
    return (
        f"{facts['cpu_model']}, {facts['usable_cores']} cores usable "
        f"({facts['logical_cores']} logical), Python {facts['python']}, "
        f"gmpy2 {facts['gmpy2']}, phe {facts['phe']}"
    )


# --------------------------------------------------------------------------- timings


@dataclass
class Timing:
    """One quantity measured once per run."""

    runs: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.runs.append(float(seconds))

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    def to_json(self) -> dict[str, object]:
        return {
            "median": round(self.median, 6),
            "min": round(self.min, 6),
            "runs": [round(v, 6) for v in self.runs],
        }

    def text(self, digits: int = 2) -> str:
        if len(self.runs) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} (min {self.min:.{digits}f})"


class Timings(dict[str, Timing]):
    """Named timings collected over repeated runs."""

    def add(self, name: str, seconds: float) -> None:
        self.setdefault(name, Timing()).add(seconds)

    def to_json(self) -> dict[str, object]:
        return {name: timing.to_json() for name, timing in self.items()}


# --------------------------------------------------------------------------- tables


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table, columns padded for the terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


@dataclass
class TargetRow:
    """One target of issue 2: what we measured, the goal, and whether we met it."""

    target: str
    measured: str
    goal: str
    passed: bool


def targets_table(rows: Sequence[TargetRow]) -> str:
    return format_table(
        ["target", "measured", "goal", "result"],
        [[t.target, t.measured, t.goal, "pass" if t.passed else "FAIL"] for t in rows],
    )


def fmt_gap(gap: float) -> str:
    """A relative gap in percent; rounding noise of an exact optimum shows as 0."""
    if abs(gap) < 1e-12:
        return "0 %"
    return f"{gap * 100:.4g} %"


# --------------------------------------------------------------------------- op counts


class CountingTransport(Transport):
    """Delegates every request and attributes ciphertext products to the message kind.

    The in-memory transport handles requests one after another in this process, so
    the change of :data:`deltaml.crypto.OPERATION_COUNTS` during one request is the
    work its recipient did to answer it. Work the aggregator does between requests
    (scaling the initial model, mixing validators' vectors) is not attributed here.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.operations_by_kind: dict[str, Counter[str]] = {}
        self.messages_by_kind: Counter[str] = Counter()

    def request(self, party_id: str, message: Message) -> Message:
        before = Counter(OPERATION_COUNTS)
        reply = self.inner.request(party_id, message)
        delta = Counter(OPERATION_COUNTS)
        delta.subtract(before)
        tally = self.operations_by_kind.setdefault(message.kind, Counter())
        tally.update({k: v for k, v in delta.items() if v})
        self.messages_by_kind[message.kind] += 1
        return reply

    def scalar_mul(self, kind: str) -> int:
        return self.operations_by_kind.get(kind, Counter())["scalar_mul"]


def operations_since(before: Counter[str]) -> dict[str, int]:
    """Ciphertext operations counted since the snapshot ``before``."""
    now = Counter(OPERATION_COUNTS)
    now.subtract(before)
    return {k: v for k, v in sorted(now.items()) if v}
