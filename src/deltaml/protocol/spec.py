"""The request spec: every field once, with its type, default, range and error text.

A buyer's request is one mapping (a YAML or JSON spec file, the web form, the
aggregator's ``POST /requests`` body). Its fields fall in two groups that overlap:

* the **request** fields a buyer writes (:data:`REQUEST_FIELDS`): what to train
  and on which data, the payment, the deadline, the key size, the arbiter;
* the **training** fields the parties receive as
  :class:`deltaml.protocol.messages.TrainingSpec` (:data:`TRAINING_FIELDS`), which
  add the solver's settings (``rho``, ``relaxation``, ``precision_bits``,
  ``base_exponent``) and ``trainer_fraction``.

:func:`parse_request_spec` checks a buyer's spec (CLI, YAML/JSON, web form),
:func:`check_training_spec` the aggregator's copy of the training fields,
:func:`check_requirements` the data requirements the aggregator matches owners
against, and :func:`check_field` one value (the simulation's settings). Every
error is a :class:`SpecError` whose ``field`` names the field it is about, and
whose message starts with that name.

**Mixed tables** (``missing``, ``categorical``; issue 13). A request may let some
feature columns have empty cells (``missing``: their names) and name categorical
feature columns with their levels (``categorical``: column -> levels, the first the
reference). Every owner encodes its rows alike (:func:`encoded_features` gives the
columns, :mod:`deltaml.learning.tabular` the encoding), so the protocol itself is
unchanged — it trains on more numeric columns:

* a numeric column in ``missing`` is filled with 0 where empty, plus an indicator
  column ``"<name>__missing"``. For a linear (or logistic) model on standardized
  columns this *is* mean imputation with an indicator (scikit-learn's
  ``SimpleImputer(strategy="mean", add_indicator=True)``): the models on (0-filled,
  indicator) and on (mean-filled, indicator) are the same set, one the other's
  reparametrization; the federated mean of the observed cells is public anyway from
  the encrypted column sums (``Σx / (N − Σmissing)``). So no new message, round or
  check is needed, and no owner's count of missing cells is revealed.
* with ``missing_indicator: false``, a numeric column in ``missing`` gets no
  indicator: it is mean-imputed with federated means (scikit-learn's
  ``SimpleImputer(strategy="mean")``). The owners' statistics are then the sums and
  counts of their non-empty cells (``impute`` in the training spec:
  :func:`deltaml.learning.standardize.local_sums_missing`); the buyer publishes each
  column's mean over the non-empty cells of all owners (and thereby, per column, the
  number of empty cells over all owners — never one owner's), every owner fills its
  empty cells with it, and the standardization is that of the filled columns — one
  statistics round still, recomputed by ``deltaml verify``.
* a categorical column becomes one 0/1 column ``"<name>=<level>"`` per level but
  the first; a level the spec does not name counts as the first ("other": the
  owner's profile says how many rows, never which values); if the column is also in
  ``missing``, an empty cell sets its ``"<name>__missing"`` column.
* an empty cell in a column not in ``missing``, or a text cell in a column not in
  ``categorical``, is refused by the owner naming file, column and row.

A column in ``missing`` gets an indicator column, which must not be constant over
all owners (the statistics round refuses constant columns): name only the columns
that do have empty cells somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.address import is_address

from deltaml.errors import DeltaMLValueError

#: Most participants the contract seats in one request (seats are a Merkle root on chain).
MAX_PARTICIPANTS = 1000
#: Bounds of what the database and the contract hold: counts, rows and seeds are
#: 63-bit (``bigint``); the contract keeps the deposit in 128 bits and rounds in 32.
MAX_BIGINT = 2**63 - 1
MAX_DEPOSIT_WEI = 2**128 - 1
MAX_ROUNDS = 10_000
#: Longest column name.
MAX_NAME = 200
#: Most feature columns a request may name.
MAX_FEATURES = 1000
#: The contract refuses a deadline more than a year away.
MAX_DEADLINE_HOURS = 24 * 365
MAX_KEY_BITS = 16384
#: Challenge window a request gets unless its buyer chooses another (a day), and the
#: contract's bounds on it (``MIN_/MAX_CHALLENGE_WINDOW``).
DEFAULT_CHALLENGE_WINDOW_S = 24 * 3600
MIN_CHALLENGE_WINDOW_S = 60
MAX_CHALLENGE_WINDOW_S = 30 * 24 * 3600
#: Most levels a categorical column may name, and the longest level.
MAX_LEVELS = 100
MAX_LEVEL = 200
#: The suffix of a missing-cell indicator column (``"<name>__missing"``).
MISSING_SUFFIX = "__missing"
MODELS = ("linear", "logistic")
#: ``admm``: the iterative protocol; ``exact``: the one-shot exact solve (docs/exactness.md).
SOLVERS = ("admm", "exact")
#: How validation errors are measured: each evaluation's residual vectors mixed over
#: every validator (``rotation``), or the validators' summed Gram matrix sent once and
#: a masked product with the key holder per evaluation (``gram``: docs/performance.md).
METRIC_PROTOCOLS = ("rotation", "gram")


class SpecError(DeltaMLValueError):
    """A request spec's value is missing, of the wrong type or out of range.

    ``field`` names the field (``"_spec"`` for the spec as a whole); the message
    starts with it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a field a spec must give.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class SpecField:
    """One field: its accepted types, default, range check and the message it fails with."""

    name: str
    kinds: tuple[type, ...]
    default: Any
    ok: Callable[[Any], bool]
    message: str
    #: A buyer writes it in a request spec.
    request: bool = True
    #: The parties receive it in the ``TrainingSpec``.
    training: bool = False
    #: Numeric bounds, for forms and help texts (``None``: not a number or unbounded).
    low: float | None = None
    high: float | None = None

    def check(self, value: Any) -> Any:
        """``value`` if it has one of the field's types and is in range (else a SpecError)."""
        if isinstance(value, bool) and bool not in self.kinds:
            raise SpecError(self.name, f"{self.name} must be a number, not {value}")
        if not isinstance(value, self.kinds):
            raise SpecError(self.name, f"{self.name} has the wrong type ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(self.name, f"{self.name} must be a finite number, not {value}")
        if value is not None and not self.ok(value):
            raise SpecError(self.name, self.message)
        return value


def _names(values: list[Any], most: int) -> bool:
    return 0 < len(values) <= most and all(
        isinstance(v, str) and 0 < len(v) <= MAX_NAME for v in values
    )


def _levels(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 2 <= len(value) <= MAX_LEVELS
        and all(isinstance(v, str) and 0 < len(v) <= MAX_LEVEL for v in value)
        and len(set(value)) == len(value)
    )


def _categorical(value: dict[Any, Any]) -> bool:
    return len(value) <= MAX_FEATURES and all(
        isinstance(k, str) and 0 < len(k) <= MAX_NAME and _levels(v) for k, v in value.items()
    )


def _classes(values: list[Any]) -> bool:
    return len(values) == 2 and all(isinstance(c, str) and 0 < len(c) <= MAX_NAME for c in values)


_NUMBER = (int, float)
_FIELDS = [
    SpecField("model", (str,), "linear", lambda v: v in MODELS, "model must be linear or logistic",
              training=True),
    SpecField("features", (list,), REQUIRED, lambda v: _names(v, MAX_FEATURES),
              f"features must be a non-empty list of at most {MAX_FEATURES} column names "
              f"of 1 to {MAX_NAME} characters"),
    SpecField("target", (str,), REQUIRED, lambda v: 0 < len(v) <= MAX_NAME,
              f"target must be a column name of 1 to {MAX_NAME} characters"),
    SpecField("owners", (int,), REQUIRED, lambda v: 2 <= v <= MAX_PARTICIPANTS,
              f"owners must be at least 2 (a trainer and a validator), at most {MAX_PARTICIPANTS}",
              low=2, high=MAX_PARTICIPANTS),
    SpecField("min_rows", (int,), 1, lambda v: 1 <= v <= MAX_BIGINT,
              "min_rows must be 1 to 2**63 - 1", low=1, high=MAX_BIGINT),
    SpecField("rounds", (int,), 12, lambda v: 1 <= v <= MAX_ROUNDS,
              f"rounds must be 1 to {MAX_ROUNDS}", training=True, low=1, high=MAX_ROUNDS),
    SpecField("eval_every", (int,), 3, lambda v: 1 <= v <= MAX_ROUNDS,
              f"eval_every must be 1 to {MAX_ROUNDS}", training=True, low=1, high=MAX_ROUNDS),
    SpecField("target_improvement", _NUMBER, 0.0, lambda v: 0 <= v < 100,
              "target_improvement must be at least 0 and below 100 (percent; 0: none)",
              training=True, low=0, high=100),
    SpecField("deposit_wei", (int,), 10**18, lambda v: 0 < v <= MAX_DEPOSIT_WEI,
              "deposit_wei must be positive and below 2**128", training=True,
              low=1, high=MAX_DEPOSIT_WEI),
    SpecField("deadline_hours", _NUMBER, 24, lambda v: 0 < v <= MAX_DEADLINE_HOURS,
              f"deadline_hours must be positive and at most {MAX_DEADLINE_HOURS}",
              low=0, high=MAX_DEADLINE_HOURS),
    SpecField("key_bits", (int,), 2048, lambda v: 0 < v <= MAX_KEY_BITS,
              f"key_bits must be positive and at most {MAX_KEY_BITS}", high=MAX_KEY_BITS),
    SpecField("l2", (*_NUMBER, type(None)), None, lambda v: 0 <= v <= 1e6,
              "l2 must be 0 to 10**6 (or null)", training=True, low=0, high=1e6),
    SpecField("contributions", (bool,), True, lambda v: True, "", training=True),
    SpecField("solver", (str,), "admm", lambda v: v in SOLVERS,
              f"solver must be one of {', '.join(SOLVERS)}", training=True),
    SpecField("metric_noise", _NUMBER, 0.0, lambda v: 0 <= v <= 1e3,
              "metric_noise must be 0 to 1000", training=True, low=0, high=1e3),
    SpecField("metric_protocol", (str,), "rotation", lambda v: v in METRIC_PROTOCOLS,
              f"metric_protocol must be one of {', '.join(METRIC_PROTOCOLS)}", training=True),
    SpecField("split_seed", (int,), 0, lambda v: 0 <= v < 2**64,
              "split_seed must be 0 to 2**64 - 1", training=True, low=0, high=2**64 - 1),
    SpecField("min_trainers", (int,), 1, lambda v: 1 <= v <= MAX_PARTICIPANTS,
              f"min_trainers must be 1 to owners - 1 (at most {MAX_PARTICIPANTS - 1})",
              training=True, low=1, high=MAX_PARTICIPANTS - 1),
    SpecField("missing", (list,), [], lambda v: not v or _names(v, MAX_FEATURES),
              "missing must be a list of feature column names that may have empty cells"),
    SpecField("missing_indicator", (bool,), True, lambda v: True,
              "missing_indicator must be true or false"),
    SpecField("categorical", (dict,), {}, _categorical,
              f"categorical must map a feature column to a list of 2 to {MAX_LEVELS} "
              f"distinct levels of 1 to {MAX_LEVEL} characters (the first the reference)"),
    SpecField("classes", (list, type(None)), None, _classes,
              "classes must name two labels: [negative, positive]"),
    # Who resolves a dispute about the result (an address; needed with a contract).
    SpecField("arbiter", (str,), "", lambda v: not v or is_address(v),
              "arbiter must be an Ethereum address (0x and 40 hex digits)"),
    SpecField("challenge_window_s", (int,), DEFAULT_CHALLENGE_WINDOW_S,
              lambda v: MIN_CHALLENGE_WINDOW_S <= v <= MAX_CHALLENGE_WINDOW_S,
              f"challenge_window_s must be {MIN_CHALLENGE_WINDOW_S} to {MAX_CHALLENGE_WINDOW_S}",
              low=MIN_CHALLENGE_WINDOW_S, high=MAX_CHALLENGE_WINDOW_S),
    # The solver's settings and the split: fixed by the buyer's node, not in a spec file.
    SpecField("rho", _NUMBER, 0.02, lambda v: 0 < v <= 1e3, "rho must be above 0 and at most 1000",
              request=False, training=True),
    SpecField("relaxation", _NUMBER, 1.6, lambda v: 0 < v < 2,
              "relaxation must be above 0 and below 2", request=False, training=True),
    SpecField("precision_bits", (int,), 32, lambda v: 1 <= v <= 64,
              "precision_bits must be 1 to 64", request=False, training=True),
    SpecField("base_exponent", (int,), 40, lambda v: 1 <= v <= 256,
              "base_exponent must be 1 to 256", request=False, training=True),
    SpecField("trainer_fraction", _NUMBER, 0.7, lambda v: 0 < v < 1,
              "trainer_fraction must lie strictly between 0 and 1", request=False,
              training=True),
    # From the request's ``missing_indicator: false``: owners send the sums of their
    # non-empty cells, and fill their empty cells with the published column means.
    SpecField("impute", (bool,), False, lambda v: True, "impute must be true or false",
              request=False, training=True),
    # From the request's ``classes``: 0 for one model, K >= 3 for K classes (one solve).
    SpecField("n_classes", (int,), 0, lambda v: v == 0 or 3 <= v <= MAX_LEVELS,
              f"n_classes must be 0 (one model) or 3 to {MAX_LEVELS} (a multiclass target)",
              request=False, training=True),
]  # fmt: skip
#: Every field of a request, by name.
FIELDS: dict[str, SpecField] = {f.name: f for f in _FIELDS}
#: The fields of a buyer's request spec, in the order the help lists them.
REQUEST_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.request)
#: The fields of the ``TrainingSpec`` the parties receive.
TRAINING_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.training)
#: The data requirements the aggregator matches owners' datasets against.
REQUIREMENT_FIELDS: tuple[str, ...] = (
    "features", "target", "min_rows", "owners", "classes", "missing", "categorical",
    "missing_indicator",
)  # fmt: skip
#: Defaults of a buyer's request spec (``features``, ``target`` and ``owners`` have none).
REQUEST_DEFAULTS: dict[str, Any] = {
    name: FIELDS[name].default for name in REQUEST_FIELDS if FIELDS[name].default is not REQUIRED
}


def check_field(name: str, value: Any) -> Any:
    """``value`` if it is a valid ``name`` (a :class:`SpecError` naming it otherwise)."""
    return FIELDS[name].check(value)


def _check_fields(doc: Any, names: Iterable[str], what: str) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise SpecError("_spec", f"a {what} is a mapping of field: value")
    known = tuple(names)
    unknown = sorted(str(k) for k in set(doc) - set(known))
    if unknown:
        raise SpecError(
            unknown[0], f"unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    spec: dict[str, Any] = {}
    for name in known:
        default = FIELDS[name].default
        if name not in doc and default is REQUIRED:
            raise SpecError(name, f"the {what} needs {name!r}")
        spec[name] = check_field(name, doc.get(name, default))
    return spec


def _check_classes(classes: list[str] | None, model: str | None) -> None:
    if classes is None:
        return
    if model is not None and model != "logistic":
        raise SpecError("classes", "classes only apply to a logistic model")
    if classes[0] == classes[1]:
        raise SpecError("classes", "classes must name two different labels")


def encoded_features(
    features: Iterable[str],
    missing: Iterable[str] = (),
    categorical: Mapping[str, Iterable[str]] | None = None,
    indicator: bool = True,
) -> list[str]:
    """The numeric columns every owner trains on, in order: the numeric features, their
    missing-cell indicators (unless ``indicator`` is false: then the empty cells are
    filled with federated means), then each categorical column's levels but the first
    (and its indicator if it may be missing). Without ``missing`` and ``categorical``,
    the features themselves."""
    levels = {str(k): [str(v) for v in vs] for k, vs in (categorical or {}).items()}
    features = [str(f) for f in features]
    maybe = set(map(str, missing)) if indicator else set()
    numeric = [f for f in features if f not in levels]
    out = [*numeric, *(f"{f}{MISSING_SUFFIX}" for f in numeric if f in maybe)]
    maybe = set(map(str, missing))
    for name in (f for f in features if f in levels):
        out += [f"{name}={level}" for level in levels[name][1:]]
        if name in maybe:
            out.append(f"{name}{MISSING_SUFFIX}")
    return out


def requirement_features(requirements: Mapping[str, Any]) -> list[str]:
    """The encoded columns of a request's data requirements (:func:`encoded_features`)."""
    return encoded_features(
        requirements["features"],
        requirements.get("missing") or (),
        requirements.get("categorical") or {},
        requirements.get("missing_indicator", True),
    )


def imputes(requirements: Mapping[str, Any]) -> bool:
    """Whether a request's owners fill empty numeric cells with federated means (its
    ``missing_indicator`` is false and a numeric feature may be missing)."""
    levels = requirements.get("categorical") or {}
    numeric_gaps = [f for f in requirements.get("missing") or () if f not in levels]
    return not requirements.get("missing_indicator", True) and bool(numeric_gaps)


def _check_table(spec: Mapping[str, Any]) -> None:
    """``missing`` and ``categorical`` name features; the encoded table stays bounded."""
    features = list(spec["features"])
    missing = list(spec.get("missing") or [])
    if len(set(missing)) != len(missing):
        raise SpecError("missing", "missing names a column twice")
    categorical = list(spec.get("categorical") or {})
    for field, names in (("missing", missing), ("categorical", categorical)):
        stray = [n for n in names if n not in features]
        if stray:
            raise SpecError(field, f"{field} names column(s) that are not features: {stray}")
    width = len(requirement_features(spec))
    if width > MAX_FEATURES:
        raise SpecError(
            "categorical",
            f"categorical: the encoded table would have {width} columns, more than {MAX_FEATURES}",
        )


def parse_request_spec(doc: Any) -> dict[str, Any]:
    """A buyer's request spec (YAML, JSON or the web form) checked field by field,
    with defaults filled in; raises a :class:`SpecError` naming the first wrong field."""
    spec = _check_fields(doc, REQUEST_FIELDS, "request spec")
    if spec["target"] in spec["features"]:
        raise SpecError("target", "the target cannot also be a feature")
    _check_classes(spec["classes"], spec["model"])
    _check_table(spec)
    check_solver(spec)
    if not spec["min_trainers"] < spec["owners"]:
        raise SpecError("min_trainers", FIELDS["min_trainers"].message)
    return spec


def check_training_spec(doc: Any) -> dict[str, Any]:
    """The ``TrainingSpec`` fields of ``doc`` checked (unknown fields refused, ``model``
    and ``rounds`` required), with defaults filled in."""
    required = {**doc} if isinstance(doc, Mapping) else doc
    if isinstance(required, dict):
        for name in ("model", "rounds"):
            if name not in required:
                raise SpecError(name, f"the training spec needs {name!r}")
    return check_solver(_check_fields(required, TRAINING_FIELDS, "training spec"))


def check_solver(spec: dict[str, Any]) -> dict[str, Any]:
    """The fields that mean nothing to the exact solver, refused by name (docs/exactness.md):
    one solve has no rounds to stop early. More than two classes are fitted by the exact
    solve only (:mod:`deltaml.learning.lda`), without contributions (no metric yet)."""
    if spec.get("n_classes") and spec.get("solver") != "exact":
        raise SpecError(
            "solver", "a target of more than two classes is fitted by one exact solve: solver exact"
        )
    if spec.get("n_classes") and spec.get("impute"):
        raise SpecError(
            "missing_indicator",
            "missing_indicator false is not offered with more than two classes yet",
        )
    if spec.get("n_classes") and spec.get("model") != "logistic":
        raise SpecError("n_classes", "classes only apply to a logistic model")
    if spec.get("metric_protocol") == "gram" and spec.get("metric_noise"):
        raise SpecError(
            "metric_noise", "metric_noise is not offered with metric_protocol gram yet: leave it 0"
        )
    if spec.get("metric_protocol") == "gram" and spec.get("solver") == "exact":
        raise SpecError(
            "metric_protocol", "metric_protocol gram is not offered with solver exact yet"
        )
    if spec.get("solver") != "exact":
        return spec
    if spec.get("target_improvement"):
        raise SpecError(
            "target_improvement",
            "target_improvement has no meaning with solver exact (one solve, no rounds to "
            "stop early): leave it 0",
        )
    if spec.get("contributions") and spec.get("n_classes"):
        raise SpecError(
            "contributions",
            "contributions are measured on the validators' error, which a model of several "
            "classes does not have yet: set contributions to false",
        )
    return spec


def check_requirements(doc: Any) -> dict[str, Any]:
    """The data requirements of a request (features, target, min_rows, owners, classes)."""
    spec = _check_fields(doc, REQUIREMENT_FIELDS, "requirements")
    _check_classes(spec["classes"], None)
    _check_table(spec)
    return spec
