"""The buyer's request form: every field checked on the server, one message per field.

The form's fields are turned into a request spec and then checked by
:func:`deltaml.protocol.spec.parse_request_spec` — the same check as ``deltaml
buyer request SPEC.yaml`` and the aggregator's — so the page can never accept what
the CLI refuses; what the form checks before that (with the spec's ranges) only
lets it name every wrong field at once, in words for a person. An error of the
spec check is shown at the form field its ``field`` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deltaml.protocol.spec import (
    MAX_DEADLINE_HOURS,
    MAX_PARTICIPANTS,
    MAX_ROUNDS,
    REQUEST_DEFAULTS,
    SpecError,
    parse_request_spec,
)
from deltaml.services.ui.format import WEI_PER_ETH, parse_eth

#: The form offers at most this many rows per owner (the spec allows up to 2**63 - 1).
MAX_FORM_ROWS = 10**9


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    help: str = ""


FIELDS = [
    Field("model", "Model type", "Linear regression, or logistic regression for a 0/1 target."),
    Field(
        "features",
        "Feature columns",
        "Column names, separated by commas (for example: age, bmi). Names the owners "
        "have registered are offered as you type.",
    ),
    Field("target", "Target column", "The one column the model predicts."),
    Field("min_rows", "Minimum rows per owner", "Owners with fewer rows are not offered it."),
    Field("owners", "Owners needed", "Training starts when this many have accepted (≥ 2)."),
    Field(
        "rounds",
        "Training rounds",
        f"How many rounds to train, 1 to {MAX_ROUNDS}. With a target improvement, training "
        "stops sooner once the target is reached.",
    ),
    Field(
        "target_improvement",
        "Target improvement (%)",
        "Stop at the first evaluation this much better than the initial model. Empty: none.",
    ),
    Field("eval_every", "Evaluate every … rounds", "The validation MSE is measured then."),
    Field("payment_eth", "Payment (ETH)", "Held in escrow by the contract until you approve."),
    Field("deadline_hours", "Deadline (hours)", "After it the request fails and you are refunded."),
    Field("key_bits", "Paillier key size (bits)", "Larger is safer and slower."),
    Field("contributions", "Measure each trainer's contribution", "Pays trainers by merit."),
]

#: What the empty form shows: the request spec's defaults, as text.
DEFAULTS: dict[str, str] = {
    "model": REQUEST_DEFAULTS["model"],
    "features": "",
    "target": "",
    "min_rows": str(REQUEST_DEFAULTS["min_rows"]),
    "owners": "2",
    "rounds": str(REQUEST_DEFAULTS["rounds"]),
    "target_improvement": "",
    "eval_every": str(REQUEST_DEFAULTS["eval_every"]),
    "payment_eth": str(REQUEST_DEFAULTS["deposit_wei"] // WEI_PER_ETH),
    "deadline_hours": str(REQUEST_DEFAULTS["deadline_hours"]),
    "key_bits": str(REQUEST_DEFAULTS["key_bits"]),
    "contributions": "on" if REQUEST_DEFAULTS["contributions"] else "",
}

#: The form field of a request spec field, where their names differ.
_FORM_FIELD = {"deposit_wei": "payment_eth"}


def key_sizes(allow_test_keys: bool) -> list[int]:
    return [1024, 2048, 3072] if allow_test_keys else [2048, 3072]


def _whole(text: str, low: int, high: int) -> int:
    if not text.strip():
        raise ValueError(f"Required: enter a whole number from {low} to {high}.")
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("Enter a whole number.") from None
    if not low <= value <= high:
        raise ValueError(f"Enter a number from {low} to {high}.")
    return value


def validate_request_form(
    form: Mapping[str, Any], allow_test_keys: bool = False
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The request spec of a posted form, or None and a message per wrong field."""
    values = {name: str(form.get(name) or "").strip() for name in DEFAULTS}
    errors: dict[str, str] = {}
    doc: dict[str, Any] = {}

    def check(name: str, parse: Any) -> None:
        try:
            doc_value = parse(values[name])
        except ValueError as exc:
            errors[name] = str(exc)
        else:
            if doc_value is not None:
                doc[name] = doc_value

    def model(text: str) -> str:
        if text not in ("linear", "logistic"):
            raise ValueError("Choose linear or logistic.")
        return text

    def features(text: str) -> list[str]:
        names = [f.strip() for f in text.split(",") if f.strip()]
        if not names:
            raise ValueError("Required: name at least one feature column.")
        if len(set(names)) != len(names):
            raise ValueError("A column is named twice.")
        return names

    def target(text: str) -> str:
        if not text:
            raise ValueError("Required: name the target column.")
        if "," in text:
            raise ValueError("Name one column only.")
        return text

    def payment(text: str) -> None:
        if not text:
            raise ValueError("Required: enter the payment in ether, such as 0.5.")
        try:
            wei = parse_eth(text)
        except ValueError as exc:
            if "18 decimals" in str(exc):
                raise ValueError(
                    "Use at most 18 decimals: the smallest amount is 0.000000000000000001 "
                    "ETH (1 wei)."
                ) from None
            raise ValueError("Enter a number of ether, such as 0.5.") from None
        if wei <= 0:
            raise ValueError("The payment must be more than 0.")
        if wei > 10**9 * WEI_PER_ETH:
            raise ValueError("That is more ether than exists.")
        doc["deposit_wei"] = wei

    def deadline(text: str) -> float:
        if not text:
            raise ValueError("Required: enter a number of hours, such as 24.")
        try:
            hours = float(text)
        except ValueError:
            raise ValueError("Enter a number of hours.") from None
        if not math.isfinite(hours) or not 0 < hours <= MAX_DEADLINE_HOURS:
            raise ValueError(f"Enter more than 0 and at most {MAX_DEADLINE_HOURS} hours.")
        return hours

    def target_improvement(text: str) -> float | None:
        if not text:
            return None
        try:
            value = float(text.rstrip(" %"))
        except ValueError:
            raise ValueError("Enter a percentage, such as 40, or leave it empty.") from None
        if not math.isfinite(value) or not 0 <= value < 100:
            raise ValueError("Enter at least 0 and less than 100, or leave it empty.")
        return value

    def key_bits(text: str) -> int:
        sizes = key_sizes(allow_test_keys)
        try:
            bits = int(text)
        except ValueError:
            bits = 0
        if bits not in sizes:
            raise ValueError("Choose one of " + ", ".join(map(str, sizes)) + " bits.")
        return bits

    check("model", model)
    check("features", features)
    check("target", target)
    check("min_rows", lambda t: _whole(t, 1, MAX_FORM_ROWS))
    check("owners", lambda t: _whole(t, 2, MAX_PARTICIPANTS))
    check("rounds", lambda t: _whole(t, 1, MAX_ROUNDS))
    check("eval_every", lambda t: _whole(t, 1, MAX_ROUNDS))
    check("target_improvement", target_improvement)
    check("payment_eth", payment)
    check("deadline_hours", deadline)
    check("key_bits", key_bits)
    doc["contributions"] = bool(values["contributions"])
    if "target" in doc and doc["target"] in doc.get("features", []):
        errors["target"] = "The target cannot also be a feature."
    if errors:
        return None, errors
    try:
        return parse_request_spec(doc), {}
    except SpecError as exc:
        message = str(exc)
        field = _FORM_FIELD.get(exc.field, exc.field)
        if field not in DEFAULTS:
            field = "_form"
        return None, {field: message[:1].upper() + message[1:] + "."}


def form_values(form: Mapping[str, Any] | None) -> dict[str, str]:
    """What the form shows: the posted values, else the defaults."""
    if form is None:
        return dict(DEFAULTS)
    return {name: str(form.get(name) or "") for name in DEFAULTS}
