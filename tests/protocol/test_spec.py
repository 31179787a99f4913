"""The one request spec: every field's range, errors naming their field, and the CLI,
the web form and the aggregator agreeing on the same spec."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.protocol import spec as s
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.spec import (
    FIELDS,
    SpecError,
    check_solver,
    check_training_spec,
    parse_request_spec,
)

BASE = {"features": ["age", "bmi"], "target": "y", "owners": 3}

#: For every field: values inside its range, and values outside it (or of a wrong type).
CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "model": (["linear", "logistic"], ["forest", "", 1, None]),
    "features": ([["a"], ["a"] * 1000, ["x" * 200]], [[], ["a"] * 1001, ["x" * 201], [1], "a"]),
    "target": (["t", "x" * 200], ["", "x" * 201, 3]),
    "owners": ([2, 64, 1000], [1, 1001, 0, 2.0, True]),
    "min_rows": ([1, 2**63 - 1], [0, 2**63, -1, "1"]),
    "rounds": ([1, 10_000], [0, 10_001, "3", True, 1.5]),
    "eval_every": ([1, 10_000], [0, 10_001]),
    "target_improvement": ([0, 0.0, 99.9], [100, -0.1, math.inf, math.nan]),
    "deposit_wei": ([1, 2**128 - 1], [0, -1, 2**128, 1.0]),
    "deadline_hours": ([0.5, 24, 8760], [0, 8760.1, math.inf, -1]),
    "key_bits": ([1024, 16384], [0, 16385]),
    "l2": ([None, 0, 1e6], [-1.0, 1e6 + 1, math.inf, "0"]),
    "contributions": ([True, False], [1, "yes", None]),
    "solver": (["admm"], ["newton", "", None, 1]),
    "metric_noise": ([0, 1e3], [-0.1, 1000.1, math.inf]),
    "metric_protocol": (["rotation", "gram"], ["mixed", "", None, 1]),
    "split_seed": ([0, 2**64 - 1], [-1, 2**64]),
    "min_trainers": ([1, 2], [0, 3, 65]),  # with owners=3: 1 to owners - 1
    "missing": ([[], ["age"]], [["age", "age"], ["height"], "age", [1], ["x" * 201]]),
    "categorical": (
        [{}, {"bmi": ["low", "high"]}, {"bmi": [str(i) for i in range(100)]}],
        [
            {"bmi": ["low"]},
            {"bmi": ["low", "low"]},
            {"bmi": [str(i) for i in range(10_000)]},
            {"bmi": ["x" * 201, "y"]},
            {"height": ["a", "b"]},
            {"bmi": "low,high"},
            ["bmi"],
        ],
    ),
    "classes": ([None], [["x"], ["x", "x"], [1, 2], ["a", "b", "c"]]),
    "arbiter": (["", "0x" + "ab" * 20], ["0x12", "bob"]),
    "challenge_window_s": ([60, 30 * 24 * 3600], [59, 30 * 24 * 3600 + 1]),
    "rho": ([0.02, 1e3], [0, 1e3 + 1]),
    "relaxation": ([1.6, 1.99], [0, 2]),
    "precision_bits": ([1, 64], [0, 65]),
    "base_exponent": ([1, 256], [0, 257]),
    "trainer_fraction": ([0.5, 0.7], [0, 1, 5]),
    "n_classes": ([0, 3, 100], [1, 2, 101, -1, 3.0, True]),
    "missing_indicator": ([True, False], [1, "no", None]),
    "impute": ([True, False], [1, "yes"]),
}


def test_every_field_has_cases() -> None:
    assert set(CASES) == set(FIELDS)
    assert set(s.REQUEST_FIELDS) | set(s.TRAINING_FIELDS) == set(FIELDS)
    assert {f.name for f in dataclasses.fields(TrainingSpec)} == set(s.TRAINING_FIELDS)


def _parse(name: str, value: Any) -> dict[str, Any]:
    if name in s.REQUEST_FIELDS:
        return parse_request_spec({**BASE, name: value})
    if name == "n_classes":  # more than two classes: a logistic model, one exact solve
        doc = {"model": "logistic", "solver": "exact", "contributions": False}
        return check_training_spec({**doc, "rounds": 2, name: value})
    return check_training_spec({"model": "linear", "rounds": 2, name: value})


def test_more_than_two_classes_need_a_logistic_model_and_the_exact_solve() -> None:
    with pytest.raises(SpecError, match="one exact solve") as caught:
        check_training_spec({"model": "logistic", "rounds": 2, "n_classes": 3})
    assert caught.value.field == "solver"
    with pytest.raises(SpecError, match="logistic") as caught:
        check_training_spec(
            {
                "model": "linear",
                "rounds": 2,
                "solver": "exact",
                "contributions": False,
                "n_classes": 3,
            }
        )
    assert caught.value.field == "n_classes"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_field_takes_its_range_and_its_errors_name_it(name: str) -> None:
    good, bad = CASES[name]
    for value in good:
        assert _parse(name, value)[name] == value
    for value in bad:
        with pytest.raises(SpecError) as caught:
            _parse(name, value)
        assert caught.value.field == name, (name, value, str(caught.value))
        assert str(caught.value).startswith(name) or name in str(caught.value)
        assert isinstance(caught.value, DeltaMLValueError)


def test_cross_field_rules_name_their_field() -> None:
    exact = {**BASE, "solver": "exact", "contributions": False}
    assert parse_request_spec(exact)["solver"] == "exact"
    # the exact solve measures contributions, but not for a model of several classes
    assert parse_request_spec({**exact, "contributions": True})["contributions"] is True
    several = {"solver": "exact", "model": "logistic", "n_classes": 3, "contributions": True}
    with pytest.raises(SpecError) as refused:
        check_solver(several)
    assert refused.value.field == "contributions"
    cases = [
        ({**exact, "target_improvement": 5}, "target_improvement"),
        ({**BASE, "target": "age"}, "target"),
        ({**BASE, "classes": ["a", "b"]}, "classes"),  # a linear model has no classes
        ({**BASE, "model": "logistic", "classes": ["a", "a"]}, "classes"),
        ({**BASE, "colour": "red"}, "colour"),
        ({"features": ["a"], "target": "y"}, "owners"),
        (["not", "a", "mapping"], "_spec"),
    ]
    for doc, field in cases:
        with pytest.raises(SpecError) as caught:
            parse_request_spec(doc)
        assert caught.value.field == field
    assert parse_request_spec({**BASE, "model": "logistic", "classes": ["a", "b"]})["classes"]


def test_defaults_are_the_training_specs() -> None:
    """The message's defaults and the spec's are the same values."""
    for f in dataclasses.fields(TrainingSpec):
        if f.default is not dataclasses.MISSING:
            assert FIELDS[f.name].default == f.default, f.name


def test_the_cli_the_form_and_the_aggregator_agree_on_one_spec() -> None:
    from deltaml.services.aggregator import NewRequest, Requirements, check_spec
    from deltaml.services.buyer import parse_request_spec as cli_parse
    from deltaml.services.ui.forms import validate_request_form

    doc = {**BASE, "rounds": 5, "eval_every": 2, "deposit_wei": 2 * 10**18, "key_bits": 3072}
    via_cli = cli_parse(doc)
    form = {
        "model": "linear",
        "features": "age, bmi",
        "target": "y",
        "min_rows": "1",
        "owners": "3",
        "rounds": "5",
        "eval_every": "2",
        "payment_eth": "2",
        "deadline_hours": "24",
        "key_bits": "3072",
        "contributions": "on",
    }
    via_form, errors = validate_request_form(form)
    assert errors == {} and via_form == via_cli
    training = {n: via_cli[n] for n in s.TRAINING_FIELDS if n in via_cli}
    assert check_spec(training) == training
    assert dataclasses.asdict(TrainingSpec(**check_training_spec(training))) == {
        **check_training_spec(training)
    }
    # Empty ``missing`` and ``categorical`` are not sent (older requests hash the same).
    requirements = {n: via_cli[n] for n in s.REQUIREMENT_FIELDS if via_cli[n] not in ([], {})}
    assert Requirements(**requirements).model_dump(exclude_none=True) == {
        k: v for k, v in requirements.items() if v is not None
    }

    # Mean imputation without indicators: a checkbox of the form, a field of the spec.
    mixed = {**doc, "missing": ["age"], "missing_indicator": False}
    via_form, errors = validate_request_form({**form, "missing": "age", "mean_fill": "on"})
    assert errors == {} and via_form == cli_parse(mixed)
    assert s.imputes(via_form) and not s.imputes({**via_form, "missing_indicator": True})
    assert s.requirement_features(via_form) == ["age", "bmi"]
    assert s.requirement_features({**via_form, "missing_indicator": True}) == [
        "age", "bmi", "age__missing"
    ]  # fmt: skip

    # The same wrong value is refused by all three, each naming the field.
    with pytest.raises(SpecError, match=r"^rounds"):
        cli_parse({**doc, "rounds": 10_001})
    _, errors = validate_request_form({**form, "rounds": "10001"})
    assert set(errors) == {"rounds"}
    with pytest.raises(ValueError, match=r"spec\.rounds"):
        check_spec({**training, "rounds": 10_001})
    with pytest.raises(ValueError, match="owners"):
        NewRequest.model_validate(
            {
                "chain_request_id": 0,
                "spec": training,
                "requirements": {**requirements, "owners": 1001},
                "public_key": {},
                "initial_model": {},
            }
        )


def test_the_form_puts_a_spec_error_at_the_field_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mapped by the error's ``field``, not by how its message starts."""
    from deltaml.services.ui import forms

    def refuse(doc: Any) -> Any:
        raise SpecError("deposit_wei", "a message that names no field at its start")

    monkeypatch.setattr(forms, "parse_request_spec", refuse)
    form = {"features": "a", "target": "y", "payment_eth": "1"}
    _, errors = forms.validate_request_form({**forms.DEFAULTS, **form})
    assert list(errors) == ["payment_eth"]

    def refuse_arbiter(doc: Any) -> Any:
        raise SpecError("arbiter", "arbiter must be an Ethereum address")

    monkeypatch.setattr(forms, "parse_request_spec", refuse_arbiter)
    _, errors = forms.validate_request_form({**forms.DEFAULTS, **form})
    assert list(errors) == ["_form"]


def test_the_simulation_checks_the_same_ranges() -> None:
    from deltaml.simulation import SimulationConfig

    for name, value in [("rounds", 0), ("eval_every", 10_001), ("target_improvement", 100.0)]:
        with pytest.raises(SpecError) as caught:
            SimulationConfig(chain=False, **{name: value})
        assert caught.value.field == name
