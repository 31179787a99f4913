"""Every ``deltaml`` command, subcommand and option says what it is for; user errors
are one line on stderr."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deltaml.cli import EXIT_ERROR, build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action | None]]:
    """Every (sub)command's parser, with the choice action that names it in its parent."""
    yield path, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a for a in action._choices_actions}
            for name, child in action.choices.items():
                for found in _commands(child, (*path, name)):
                    yield found[0], found[1], found[2] or helps.get(name)


def test_every_command_and_option_has_help() -> None:
    missing = []
    commands = list(_commands(build_parser()))
    for path, parser, named_by in commands:
        if path and (named_by is None or not named_by.help):
            missing.append(" ".join(path))
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")
    assert missing == []
    # The walk saw the commands issue 13 asked about, with their --node option.
    names = {" ".join(p) for p, _, _ in commands}
    assert {"buyer request", "buyer model", "buyer status", "demo", "verify"} <= names
    for path, parser, _ in commands:
        if path in {("buyer", "request"), ("buyer", "model"), ("buyer", "status")}:
            node = next(a for a in parser._actions if "--node" in a.option_strings)
            assert "buyer node" in str(node.help)


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "/nonexistent/transcript.jsonl"],
        ["simulate", "--dataset", "/nonexistent.csv", "--no-chain", "--quiet"],
        ["buyer", "request", "/nonexistent.yaml"],
        ["buyer", "status", "--node", "http://127.0.0.1:1"],
    ],
)
def test_a_user_error_is_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_ERROR
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deltaml {argv[0]}: error: "), out.err
    assert "Traceback" not in out.err


def test_python_m_deltaml_cli_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deltaml.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "simulate" in done.stdout and "demo" in done.stdout
