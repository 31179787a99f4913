"""The demo's summary: what a finished (or failed) run printed, as plain lines.

:func:`report_lines` takes only a :class:`~deltaml.services.demo.config.DemoResult`
(no process, no client), so any way of running the marketplace — these local
processes, or the compose stack (:mod:`deltaml.services.compose_demo`) — prints
the same summary; ``pages_note`` says where the pages' passwords are.
"""

from __future__ import annotations

import sys
from typing import TextIO

from deltaml.services.demo.config import DemoResult

#: Where the demo's nodes keep their (shared, throw-away) password.
LOCAL_PASSWORD_NOTE = "log in with the password in the demo folder's `password` file"


def _scores(result: DemoResult) -> list[str]:
    """The model's test figures next to the exact optimum of its training objective on
    the same rows; scikit-learn's default fit only where it differs, saying why."""
    r = result
    note = f" ({r.baseline_note})" if r.baseline_note else ""
    if r.test_mse is not None and r.optimum_test_mse is not None:
        lines = [
            f"test MSE {r.test_mse:.2f}  vs the exact optimum {r.optimum_test_mse:.2f} "
            f"({r.test_mse / r.optimum_test_mse:.4f}x)"
        ]
        if r.baseline_note and r.sklearn_test_mse is not None:
            lines.append(f"  scikit-learn's LinearRegression: {r.sklearn_test_mse:.2f}{note}")
        return lines
    if r.test_auc is not None and r.optimum_test_auc is not None:
        lines = [
            f"test AUC {r.test_auc:.4f}  vs the optimum (logistic, our l2) "
            f"{r.optimum_test_auc:.4f}; accuracy {r.test_accuracy:.4f} vs "
            f"{r.optimum_test_accuracy:.4f}"
        ]
        if r.baseline_note and r.sklearn_test_auc is not None:
            lines.append(
                f"  scikit-learn's default: AUC {r.sklearn_test_auc:.4f}, accuracy "
                f"{r.sklearn_test_accuracy:.4f}{note}"
            )
        return lines
    return []


def _money(result: DemoResult) -> list[str]:
    names = {o["address"]: f"{o['name']} ({o['role']})" for o in result.owners}
    lines = ["contributions (Shapley, validation SSE units):"]
    lines += [
        f"  {names.get(address, address)}: {value:.6g}"
        for address, value in result.contributions.items()
    ]
    lines.append("paid on chain (wei):")
    lines += [
        f"  {names.get(address, 'aggregator ' + address)}: {wei}"
        for address, wei in sorted(result.payouts_wei.items(), key=lambda kv: -kv[1])
    ]
    lines.append(f"  refund to the buyer: {result.refund_wei} of {result.deposit_wei}")
    return lines


def report_lines(
    result: DemoResult, serving: bool = False, pages_note: str = LOCAL_PASSWORD_NOTE
) -> list[str]:
    """The summary of a run, line by line."""
    lines = [
        f"\nstatus: {result.status}  (chain: {result.chain})",
        f"time: {result.seconds:.1f} s from request to settlement; start-up "
        f"{result.startup_seconds:.1f} s",
    ]
    scores = _scores(result)
    if not scores:
        return [
            *lines,
            f"no model: {result.error}",
            f"refunded to the buyer: {result.refund_wei} of {result.deposit_wei} wei",
        ]
    lines += [*scores, *_money(result)]
    lines.append(
        f"evidence: {'verified' if result.verified else 'NOT verified'} — {result.transcript}"
    )
    lines.append(f"web pages ({pages_note}):")
    for name, url in result.urls.items():
        extra = f"  (public; API docs at {url}/docs)" if name == "aggregator" else ""
        lines.append(f"  {name}: {url}/ui/{extra}")
    lines.append(
        "serving until Ctrl-C" if serving else "(stopped now; run with --serve to keep them up)"
    )
    return lines


def print_report(
    result: DemoResult,
    serving: bool = False,
    pages_note: str = LOCAL_PASSWORD_NOTE,
    out: TextIO | None = None,
) -> None:
    """Print :func:`report_lines` (to standard output by default)."""
    stream = out if out is not None else sys.stdout
    for line in report_lines(result, serving, pages_note):
        print(line, file=stream)
