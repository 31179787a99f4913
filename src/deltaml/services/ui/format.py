"""Numbers as the pages show them: ether amounts, addresses, metrics, improvement, times."""

from __future__ import annotations

import time
from collections.abc import Callable
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
    bare = text.strip()
    if bare[-3:].lower() == "eth":
        bare = bare[:-3].strip()
    try:
        value = Decimal(bare.replace(",", ""))
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
        "status_text": status_word(view.get("status", "UNKNOWN")),
        "error": view.get("error") or "",
        # the exact solve is one step, shown as one round (docs/exactness.md)
        "rounds": 1 if spec.get("solver") == "exact" else int(spec.get("rounds", 0)),
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


# -- states as words ----------------------------------------------------------------------
#: Request and offer statuses (and the pages' own ``NOT_SELECTED``, ``CLOSED``) as words.
STATUS_WORDS = {
    "OPEN": "Looking for owners",
    "IN_PROGRESS": "Training",
    "FINISHED": "Finished",
    "FAILED": "Failed",
    "CANCELLED": "Cancelled",
    "UNKNOWN": "Unknown",
    "WAITING": "Your data does not fit",
    "READY": "Offered to you",
    "INITIATED": "Accepted",
    "DECLINED": "Declined",
    "NOT_SELECTED": "Not selected",
    "CLOSED": "Closed",
}
FINAL = ("FINISHED", "FAILED", "CANCELLED")


def status_word(status: Any) -> str:
    """A status as its reader understands it: ``IN_PROGRESS`` is "Training"."""
    text = str(status or "UNKNOWN")
    return STATUS_WORDS.get(text, text.replace("_", " ").capitalize())


def offer_outcome(offer_status: str, request_status: str | None, role: str | None) -> str:
    """What an offer is once its request has moved on without it.

    The aggregator leaves an offer accepted after the request started (or not
    decided at all) as it was; it is ``NOT_SELECTED`` (accepted, not seated) or
    ``CLOSED`` (never accepted) once the request is no longer looking for owners.
    """
    if role or not request_status or request_status == "OPEN":
        return offer_status
    if offer_status == "INITIATED":
        return "NOT_SELECTED"
    if offer_status in ("READY", "WAITING"):
        return "CLOSED"
    return offer_status


def owner_label(address: str, names: dict[str, str]) -> str:
    """An owner as the pages name it: its node's name and its short address."""
    name = names.get(address)
    return f"{name} ({short_address(address)})" if name else short_address(address)


# -- money ------------------------------------------------------------------------------
def payment_rule() -> str:
    """The settlement rule in one sentence (the numbers of :mod:`deltaml.ledger.payouts`)."""
    from deltaml.ledger.payouts import AGGREGATOR_PERCENT, TRAINERS_PERCENT, VALIDATORS_PERCENT

    return (
        f"Trainers share {TRAINERS_PERCENT} % of the payment scaled by how much the model "
        f"improved (a 40 % lower error pays 40 % of it), split by contribution; validators "
        f"share {VALIDATORS_PERCENT} % equally; the aggregator gets {AGGREGATOR_PERCENT} %; "
        "the rest goes back to the buyer."
    )


def trainer_shares(contributions: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each trainer's share of the trainers' pool (its clamped contribution over the sum)
    and its rank (1: the largest)."""
    clamped = {a: max(0.0, float(c)) for a, c in contributions.items()}
    total = sum(clamped.values())
    order = sorted(clamped, key=lambda a: -clamped[a])
    return {
        a: {
            "share_pct": 100.0 * clamped[a] / total if total else 0.0,
            "rank": order.index(a) + 1,
            "of": len(order),
        }
        for a in clamped
    }


def earned_explanation(view: dict[str, Any], address: str, role: str | None) -> str:
    """How ``address``'s payment for a finished request follows from the rule."""
    from deltaml.ledger.payouts import TRAINERS_PERCENT, VALIDATORS_PERCENT

    result = view.get("result") or {}
    deposit = view.get("deposit_wei")
    payouts = result.get("payouts_wei") or {}
    if address not in payouts or deposit is None:
        return ""
    if role == "validator":
        n = len(result.get("validators") or []) or 1
        return (
            f"{VALIDATORS_PERCENT} % of {eth(deposit)} shared equally by {n} validator"
            f"{'s' if n != 1 else ''}."
        )
    live = progress(view)
    gain = max(0.0, live["improvement_pct"] or 0.0)
    share = trainer_shares(result.get("contributions") or {}).get(address)
    if share is None:
        return ""
    return (
        f"{TRAINERS_PERCENT} % of {eth(deposit)} × {gain:.1f} % improvement = the trainers' "
        f"pool; your share of it is {share['share_pct']:.1f} % (rank {share['rank']} of "
        f"{share['of']} by contribution)."
    )


def escrow_text(status: str, settlement: str) -> str:
    """Where the buyer's payment is, in words: ``settlement`` is ``""`` (unknown),
    ``"awaiting"`` (finished, not approved), ``"settled"`` or ``"refunded"``."""
    if status in ("FAILED", "CANCELLED"):
        if settlement == "refunded":
            return "Refunded to the buyer."
        return "Returned to the buyer: the contract lets it take the deposit back."
    if status == "FINISHED":
        if settlement == "settled":
            return "Paid out: each participant withdraws its share; the rest was refunded."
        return "Held in escrow until the buyer approves the settlement."
    return "Held in escrow by the contract."


def size(n_bytes: int) -> str:
    """A file size as people read it: ``1.3 MB``."""
    if n_bytes < 1000:
        return f"{n_bytes} bytes"
    if n_bytes < 10**6:
        return f"{n_bytes / 1000:.0f} kB"
    return f"{n_bytes / 10**6:.1f} MB"


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def clock(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    return time.strftime("%H:%M:%S", time.gmtime(float(seconds)))


# -- a request's history -----------------------------------------------------------------
def run_duration(events: list[dict[str, Any]]) -> float | None:
    """Seconds from the start of training to its end (or to now, while it runs)."""
    start = next((e["at"] for e in events if e.get("status") == "IN_PROGRESS"), None)
    if start is None:
        return None
    end = next(
        (e["at"] for e in events if e["kind"] == "status" and e.get("status") in FINAL), None
    )
    return (end if end is not None else time.time()) - start


def timeline_rows(
    events: list[dict[str, Any]], view: dict[str, Any], names: dict[str, str]
) -> list[dict[str, Any]]:
    """The request's history as the buyer reads it: (time, what happened, on chain)."""
    rows: list[dict[str, Any]] = []
    seated = [
        f"{owner_label(o['owner'], names)} ({o['role']})"
        for o in view.get("offers", [])
        if o.get("role")
    ]
    for e in events:
        kind, at = e["kind"], e.get("at")
        text, chain = "", ""
        if kind == "created":
            offered = len(view.get("offers", []))
            text = f"Created and offered to {offered} owner{'s' if offered != 1 else ''}"
            chain = f"createRequest: {eth(view.get('deposit_wei'))} escrowed"
        elif kind in ("accepted", "declined"):
            text = f"{owner_label(str(e.get('owner')), names)} {kind}"
        elif kind == "status" and e.get("status") == "IN_PROGRESS":
            text = "Training started" + (": " + ", ".join(seated) if seated else "")
            chain = "start: trainers and validators recorded"
        elif kind == "status" and e.get("status") == "FINISHED":
            text = "Training finished"
            chain = "postMetric and finish: metrics, contributions and evidence hash"
        elif kind == "status":
            status = str(e.get("status"))
            text = status_word(status) + (f": {e['error']}" if e.get("error") else "")
            chain = "abort: the deposit can be taken back" if status == "FAILED" else ""
        elif kind == "initial":
            text = f"Initial model measured: MSE {metric(e.get('metric'))}"
        elif kind == "round":
            text = f"Round {e.get('round')} done"
            if e.get("metric") is not None:
                text += f": MSE {metric(e.get('metric'))}"
        else:
            continue
        rows.append({"at": at, "text": text, "chain": chain})
    settlement = view.get("settlement") or {}
    if settlement.get("approved"):
        refund = settlement.get("refund_wei")
        rows.append(
            {
                "at": None,
                "text": "Settlement approved",
                "chain": "approve" + (f", withdraw: {eth(refund)} refunded" if refund else ""),
            }
        )
    elif settlement.get("reclaimed_wei") is not None:
        rows.append(
            {
                "at": None,
                "text": "Deposit taken back",
                "chain": f"cancel / reclaim: {eth(settlement['reclaimed_wei'])} refunded",
            }
        )
    return rows


def _who(account: Any, known: dict[str, str], names: dict[str, str]) -> str:
    """An account as a sentence names it: a known party, else the owner's label."""
    text = str(account)
    return known.get(text.lower()) or owner_label(text, names)


def _created(args: dict[str, Any]) -> str:
    if "deposit" in args:
        return f"Request created: {eth(args['deposit'])} escrowed"
    return "Request created: the payment is escrowed"


def _started(args: dict[str, Any]) -> str:
    seated = int(args.get("trainerCount", 0)) + int(args.get("validatorCount", 0))
    return f"Training started: {seated} owners seated"


def _settled(args: dict[str, Any]) -> str:
    # The contract settles on everyone's approval (buyer and seated owners), or
    # else after the challenge window or the arbiter's decision.
    by_all = ": approved by the buyer and every seated owner"
    return "Settled" + (by_all if args.get("approvedByAll") else "")


#: What each contract event says, from its arguments (``Approved`` and ``Withdrawn``
#: also name their account: :func:`chain_rows`).
_EVENT_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "RequestCreated": _created,
    "RequestStarted": _started,
    "MetricPosted": lambda args: f"Round {args.get('round')} MSE posted",
    "RequestFinished": lambda _args: "Result, contributions and evidence hash posted",
    "Disputed": lambda _args: "Disputed: the arbiter decides",
    "RequestSettled": _settled,
    "RequestCancelled": lambda _args: "Cancelled: the deposit went back to the buyer",
    "RequestAborted": lambda _args: "Aborted: the buyer can take its deposit back",
    "RequestExpired": lambda _args: "Expired: past its deadline",
}


def _event_text(
    name: str, args: dict[str, Any], known: dict[str, str], names: dict[str, str]
) -> str:
    if name == "Approved":
        account = str(args.get("by"))
        party = known.get(account.lower())
        return "Approved by " + (
            party[:1].lower() + party[1:] if party else owner_label(account, names)
        )
    if name == "Withdrawn":
        return f"{_who(args.get('account'), known, names)} withdrew {eth(args.get('amount'))}"
    text = _EVENT_TEXT.get(name)
    return text(args) if text else name


def chain_rows(
    events: list[Any], names: dict[str, str], parties: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The contract's events about a request (:class:`deltaml.ledger.base.LedgerEvent`),
    as the pages list them: what happened, its block and its transaction.

    ``parties`` names the accounts that are not owners (``{buyer: "The buyer"}``).
    """
    known = {a.lower(): label for a, label in (parties or {}).items() if a}
    return [
        {
            "text": _event_text(e.name, dict(e.args), known, names),
            "block": e.block_number,
            "tx": e.tx_hash,
        }
        for e in events
    ]
