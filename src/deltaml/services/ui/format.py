"""Numbers as the pages show them: ether amounts, addresses, metrics, improvement, times."""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from deltaml.evidence.published import improvement_percent

WEI_PER_ETH = 10**18


def eth(wei: Any, digits: int = 6) -> str:
    """``wei`` as ether with at most ``digits`` decimals, trailing zeros dropped: ``0.25 ETH``."""
    if not isinstance(wei, int | str):  # None, or a value the page does not have
        return "—"
    try:
        amount = int(wei)
    except (TypeError, ValueError):
        return "—"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), WEI_PER_ETH)
    scaled = round(frac * 10**digits / WEI_PER_ETH)
    if scaled == 10**digits:
        whole, scaled = whole + 1, 0
    text = f"{whole:,}" + (f".{scaled:0{digits}d}".rstrip("0") if scaled else "")
    if amount and text == "0":
        return f"{sign}< 0.{'0' * (digits - 1)}1 ETH"
    return f"{sign}{text} ETH"


def parse_eth(text: str) -> int:
    """A decimal amount of ether (``"0.5"``) as wei; ValueError if it is not one."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a number")
    wei = value * WEI_PER_ETH
    if wei != wei.to_integral_value():
        raise ValueError("an amount of ether has at most 18 decimals")
    return int(wei)


def short_address(address: Any) -> str:
    text = str(address or "")
    return f"{text[:6]}…{text[-4:]}" if len(text) > 12 else text


def metric(value: Any) -> str:
    if not isinstance(value, int | float | str):
        return "—"
    try:
        return f"{float(value):,.6g}" if abs(float(value)) < 1e6 else f"{float(value):.4g}"
    except (TypeError, ValueError):
        return "—"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def when(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return "—"


def metric_points(view: dict[str, Any]) -> list[dict[str, float]]:
    """The MSE curve of a public request view, round 0 (the initial model) first when known."""
    points = [{"round": int(p["round"]), "mse": float(p["mse"])} for p in view.get("metrics", [])]
    initial = view.get("initial_metric")
    if initial is None and view.get("result"):
        initial = view["result"].get("initial_metric")
    if initial is not None and not any(p["round"] == 0 for p in points):
        points.insert(0, {"round": 0, "mse": float(initial)})
    return sorted(points, key=lambda p: p["round"])


def progress(view: dict[str, Any]) -> dict[str, Any]:
    """The live part of a request view, as the pages' script reads it."""
    points = metric_points(view)
    initial = points[0]["mse"] if points and points[0]["round"] == 0 else None
    latest = points[-1]["mse"] if points else None
    gain = improvement_percent(initial, latest) if len(points) > 1 else None
    spec = view.get("spec") or {}
    target = float(spec.get("target_improvement") or 0) or None
    return {
        "id": view.get("id"),
        "status": view.get("status", "UNKNOWN"),
        "error": view.get("error") or "",
        "rounds": int(spec.get("rounds", 0)),
        "rounds_done": int(view.get("rounds_done", 0)),
        "points": points,
        "initial_mse": initial,
        "latest_mse": latest,
        "improvement_pct": gain,
        "initial_text": metric(initial),
        "latest_text": metric(latest),
        "improvement_text": pct(gain),
        "target_text": None if target is None else pct(target),
    }


def message(exc: BaseException) -> str:
    """An error as the pages show it: its one-line text (never a traceback)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__
