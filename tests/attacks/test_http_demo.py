"""The whole marketplace over HTTPS, and SIGTERM stopping everything the demo started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def children(pid: int) -> set[int]:
    """The direct child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_demo_over_tls_and_sigterm_stops_every_child(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deltaml",
            "demo",
            "--tls",
            "--serve",
            "--owners",
            "2",
            "--rounds",
            "1",
            "--eval-every",
            "1",
            "--key-bits",
            "1024",
            "--dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    started: set[int] = set()
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "serving until Ctrl-C" in line or "stopped now" in line:
                break
        text = "".join(lines)
        assert "status: FINISHED" in text, text[-3000:]
        assert "evidence: verified" in text
        assert "aggregator: https://127.0.0.1:" in text  # every node over HTTPS,
        assert "served over JSON-RPC at https://127.0.0.1:" in text  # the chain's too
        started = children(demo.pid)
        assert len(started) >= 5  # the chain, the aggregator, the buyer, two owners
        demo.send_signal(signal.SIGTERM)
        demo.wait(60)
        deadline = time.monotonic() + 30
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in started if alive(p)]
        assert not left, f"still running after SIGTERM: {left}"
    finally:
        for pid in started | (children(demo.pid) if demo.poll() is None else set()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
