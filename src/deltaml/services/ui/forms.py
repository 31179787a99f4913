"""The buyer's request form, on top of the one request spec (:mod:`deltaml.protocol.spec`).

Each form field reads its text into the value of one spec field (``payment_eth``
into ``deposit_wei``, the others under their own names) and that value is checked
by the spec field itself (:meth:`~deltaml.protocol.spec.SpecField.check`): the
form has no ranges and no defaults of its own, it only words the spec's for a
person. Every wrong field gets its message at once; a spec error is put at the
form field its ``field`` names. Then the whole spec goes through
:func:`~deltaml.protocol.spec.parse_request_spec` — the same check as ``deltaml
buyer request SPEC.yaml`` and the aggregator's — so the page can never accept
what the CLI refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deltaml.protocol import spec as s
from deltaml.protocol.spec import SpecError, parse_request_spec
from deltaml.services.ui.format import WEI_PER_ETH, parse_eth

#: A bound this large is not worth saying ("at least 1" rather than "1 to 2**63 - 1").
_UNSAID_BOUND = 10**12


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("Enter a whole number.") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("Enter a number.") from None


def _text(text: str) -> str:
    return text


def _features(text: str) -> list[str]:
    names = [f.strip() for f in text.split(",") if f.strip()]
    if len(set(names)) != len(names):
        raise ValueError("A column is named twice.")
    return names


def _target(text: str) -> str:
    if "," in text:
        raise ValueError("Name one column only.")
    return text


def _levels(text: str) -> dict[str, list[str]]:
    """``column: level, level, …`` per line (the first level the reference)."""
    out: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        column, colon, levels = line.partition(":")
        names = [v.strip() for v in levels.split(",") if v.strip()]
        if not colon or not column.strip() or not names:
            raise ValueError(
                f"Line {number}: write a column, a colon and its levels, such as "
                '"color: red, green, blue".'
            )
        if column.strip() in out:
            raise ValueError(f"Line {number}: the column {column.strip()} is named twice.")
        out[column.strip()] = names
    return out


def _levels_text(value: Any) -> str:
    return "\n".join(f"{column}: {', '.join(levels)}" for column, levels in dict(value).items())


def _percent(text: str) -> float:
    try:
        return float(text.rstrip(" %"))
    except ValueError:
        raise ValueError("Enter a percentage, such as 40, or leave it empty.") from None


def _ether(text: str) -> int:
    try:
        return parse_eth(text)
    except ValueError as exc:
        if "18 decimals" in str(exc):
            raise ValueError(
                "Use at most 18 decimals: the smallest amount is 0.000000000000000001 ETH (1 wei)."
            ) from None
        raise ValueError("Enter a number of ether, such as 0.5.") from None


def _eth_text(wei: Any) -> str:
    whole, part = divmod(int(wei), WEI_PER_ETH)
    return str(whole) if not part else f"{whole}.{part:018d}".rstrip("0")


def _range_words(field: s.SpecField) -> str:
    if field.high is None or field.high >= _UNSAID_BOUND:
        return f"Enter a whole number of at least {field.low:g}."
    return f"Enter a number from {field.low:g} to {field.high:g}."


@dataclass(frozen=True)
class Field:
    """One form field: its label and help, the spec field it fills, and how.

    ``read`` turns the (stripped, non-empty) text into the spec value, raising a
    ValueError worded for a person; ``wrong`` words the spec field's own range
    (formatted with its ``low`` and ``high``); ``required`` is what an empty box
    says when the spec has no default for it (or the form wants a value).
    """

    name: str
    label: str
    help: str = ""
    spec: str = ""
    read: Callable[[str], Any] = _text
    wrong: str = ""
    required: str = ""
    #: The text the empty form shows for the spec's default.
    show: Callable[[Any], str] = str

    @property
    def spec_field(self) -> s.SpecField:
        return s.FIELDS[self.spec or self.name]

    def message(self) -> str:
        """The spec field's range, in words."""
        f = self.spec_field
        return self.wrong.format(low=f.low, high=f.high) if self.wrong else _range_words(f)

    def default_text(self) -> str:
        f = self.spec_field
        if f.default is s.REQUIRED:
            return "" if f.low is None else f"{f.low:g}"
        return self.show(f.default)


def _required_number(low: str, high: str) -> str:
    return f"Required: enter a whole number from {low} to {high}."


_ROUNDS = s.FIELDS["rounds"]
_OWNERS = s.FIELDS["owners"]
FIELDS = [
    Field(
        "model",
        "Model type",
        "Linear regression, or logistic regression for a 0/1 target.",
        wrong="Choose " + " or ".join(s.MODELS) + ".",
    ),
    Field(
        "solver",
        "Training",
        "Rounds of federated training, or one exact solve: the optimum itself, in one step.",
        wrong="Choose " + " or ".join(s.SOLVERS) + ".",
    ),
    Field(
        "metric_protocol",
        "Validation metric",
        "How the validators' error is measured: mixing every validator's residuals at each "
        "evaluation, or each validator's encrypted Gram matrix once — held by two "
        "validators, never sent to your node — and masked forms that your node only "
        "decrypts: its cost does not grow with the validators (for many owners).",
        wrong="Choose " + " or ".join(s.METRIC_PROTOCOLS) + ".",
    ),
    Field(
        "features",
        "Feature columns",
        "Column names, separated by commas (for example: age, bmi). Names the owners "
        "have registered are offered as you type.",
        read=_features,
        wrong=f"Name 1 to {s.MAX_FEATURES} columns of at most {s.MAX_NAME} characters each.",
        required="Required: name at least one feature column.",
        show=lambda v: ", ".join(v),
    ),
    Field(
        "target",
        "Target column",
        "The one column the model predicts.",
        read=_target,
        wrong=f"Name a column of at most {s.MAX_NAME} characters.",
        required="Required: name the target column.",
    ),
    Field(
        "missing",
        "Columns that may be empty",
        "Feature columns in which an owner may have empty cells, separated by commas: an "
        "empty cell is filled with 0 and marked in a column of its own (or, ticked below, "
        "filled with the column's mean over all owners). Empty: owners with an empty cell "
        "are not offered the request.",
        read=_features,
        wrong=f"Name feature columns of at most {s.MAX_NAME} characters, each once.",
        show=lambda v: ", ".join(v),
    ),
    Field(
        "categorical",
        "Categorical columns",
        "One line per text column: its name, a colon and its levels (the first is the "
        'reference), such as "smoker: no, yes". A level an owner has but you do not name '
        "counts as the first.",
        read=_levels,
        wrong=f"Give each column 2 to {s.MAX_LEVELS} distinct levels of at most "
        f"{s.MAX_LEVEL} characters.",
        show=_levels_text,
    ),
    Field(
        "min_rows",
        "Minimum rows per owner",
        "Owners with fewer rows are not offered it.",
        read=_whole,
        required="Required: enter a whole number, such as 1.",
    ),
    Field(
        "owners",
        "Owners needed",
        f"Training starts when this many have accepted (≥ {_OWNERS.low:g}).",
        read=_whole,
        required=_required_number(f"{_OWNERS.low:g}", f"{_OWNERS.high:g}"),
    ),
    Field(
        "rounds",
        "Training rounds",
        f"How many rounds to train, {_ROUNDS.low:g} to {_ROUNDS.high:g}. With a target "
        "improvement, training stops sooner once the target is reached.",
        read=_whole,
        required=_required_number(f"{_ROUNDS.low:g}", f"{_ROUNDS.high:g}"),
    ),
    Field(
        "target_improvement",
        "Target improvement (%)",
        "Stop at the first evaluation this much better than the initial model. Empty: none.",
        read=_percent,
        wrong="Enter at least {low:g} and less than {high:g}, or leave it empty.",
        show=lambda v: f"{v:g}" if v else "",
    ),
    Field(
        "eval_every",
        "Evaluate every … rounds",
        "The validation MSE is measured then.",
        read=_whole,
        required=_required_number(f"{_ROUNDS.low:g}", f"{_ROUNDS.high:g}"),
    ),
    Field(
        "payment_eth",
        "Payment (ETH)",
        "Held in escrow by the contract until you approve.",
        spec="deposit_wei",
        read=_ether,
        wrong="The payment must be more than 0 and less than 2**128 wei.",
        required="Required: enter the payment in ether, such as 0.5.",
        show=_eth_text,
    ),
    Field(
        "deadline_hours",
        "Deadline (hours)",
        "After it the request fails and you are refunded.",
        read=_number,
        wrong="Enter more than {low:g} and at most {high:g} hours.",
        required="Required: enter a number of hours, such as 24.",
        show=lambda v: f"{v:g}",
    ),
    Field(
        "key_bits",
        "Paillier key size (bits)",
        "Larger is safer and slower.",
        read=_whole,
        wrong="Choose one of the key sizes offered.",  # replaced by the sizes offered
    ),
    Field(
        "contributions",
        "Measure each trainer's contribution",
        "Pays trainers by merit.",
        read=bool,
        show=lambda v: "on" if v else "",
    ),
]
_BY_NAME = {f.name: f for f in FIELDS}
#: The form field of each spec field.
_FORM_FIELD = {f.spec or f.name: f.name for f in FIELDS}

#: What the empty form shows: the request spec's defaults, as text.
DEFAULTS: dict[str, str] = {f.name: f.default_text() for f in FIELDS}


def key_sizes(allow_test_keys: bool) -> list[int]:
    return [1024, 2048, 3072] if allow_test_keys else [2048, 3072]


def _read(field: Field, text: str) -> Any:
    """The spec value of one field's text (``None``: empty and the spec default applies);
    a ValueError worded for a person if it is not a valid value."""
    if not text:
        if field.required:
            raise ValueError(field.required)
        if field.spec_field.default is s.REQUIRED:
            raise ValueError(field.message())
        return None
    value = field.read(text)
    try:
        return field.spec_field.check(value)
    except SpecError:
        raise ValueError(field.message()) from None


def _spec_error(exc: SpecError) -> dict[str, str]:
    """A whole-spec error at the form field it names (``_form`` if none shows it)."""
    message = str(exc)
    field = _FORM_FIELD.get(exc.field, "_form")
    return {field: message[:1].upper() + message[1:] + "."}


def validate_request_form(
    form: Mapping[str, Any], allow_test_keys: bool = False
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The request spec of a posted form, or None and a message per wrong field."""
    doc: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in FIELDS:
        text = str(form.get(field.name) or "").strip()
        try:
            value = _read(field, text)
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if value is not None:
            doc[field.spec or field.name] = value
    doc["contributions"] = bool(str(form.get("contributions") or "").strip())
    if str(form.get("mean_fill") or "").strip():  # the checkbox below "missing"
        doc["missing_indicator"] = False
    sizes = key_sizes(allow_test_keys)
    bits = doc.get("key_bits", s.REQUEST_DEFAULTS["key_bits"])
    if "key_bits" in errors or bits not in sizes:
        errors["key_bits"] = "Choose one of " + ", ".join(map(str, sizes)) + " bits."
    if errors:
        return None, errors
    try:
        return parse_request_spec(doc), {}
    except SpecError as exc:
        return None, _spec_error(exc)


def form_values(form: Mapping[str, Any] | None) -> dict[str, str]:
    """What the form shows: the posted values, else the defaults."""
    if form is None:
        return {**DEFAULTS, "mean_fill": ""}
    return {name: str(form.get(name) or "") for name in [*DEFAULTS, "mean_fill"]}
