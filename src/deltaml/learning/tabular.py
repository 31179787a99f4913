"""Mixed tables: missing values and categorical columns, encoded alike at every owner.

A :class:`TableSpec` is what a buyer's request names: the target, the numeric
columns, which of them may be missing, and each categorical column's levels.
Every owner encodes its own rows with it (:func:`encode_frame`), so all owners
hold the same numeric columns in the same order and nobody's values leave:

- a numeric column that may be missing is filled with ``0`` where missing and
  gets an indicator column ``"<name>__missing"`` (1 where missing). A linear model
  on (filled, indicator) spans exactly the models on (mean-filled, indicator),
  so fitting it is fitting mean imputation plus an indicator; the federated mean
  of the observed values, ``Σx / (N − Σmissing)``, comes out of the encrypted
  column sums the protocol already computes (:func:`federated_means`), with no
  extra round and no owner's count revealed.
- a categorical column becomes one 0/1 column ``"<name>=<level>"`` per level
  the spec names, except the first (the reference, absorbed by the intercept),
  plus ``"<name>__missing"`` for an empty cell if it may be missing. A level the
  spec does not name counts as the reference ("other"): the owner's profile says
  how many rows, never which values.

The column order is the protocol's (:func:`deltaml.protocol.spec.encoded_features`),
so the buyer's model names the same columns. To predict on raw rows, encode them
with the same spec: ``model.to_sklearn().predict(encode_features(frame, spec))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.data import MAX_ABS_VALUE, Dataset
from deltaml.protocol.spec import MISSING_SUFFIX, encoded_features

__all__ = ["TableSpec", "encode_features", "encode_frame", "encoding_notes", "federated_means"]


@dataclass(frozen=True)
class TableSpec:
    """The columns of a mixed table, as a request names them.

    Parameters
    ----------
    target : str
        The (numeric) target column.
    numeric : sequence of str
        Numeric feature columns, in order.
    may_be_missing : sequence of str
        Those of ``numeric`` or ``categorical`` that may have empty cells (each
        gets an indicator).
    categorical : mapping of str to sequence of str
        Categorical columns and their levels, the first the reference.
    classes : pair of str, optional
        A logistic request's (negative, positive) target labels, coded 0 and 1.
    indicator : bool
        A numeric column of ``may_be_missing`` gets an indicator column (0 in its empty
        cells); if false, its empty cells stay empty (NaN) and the protocol fills them
        with the column's federated mean (the request's ``missing_indicator``).
    """

    target: str
    numeric: tuple[str, ...] = ()
    may_be_missing: tuple[str, ...] = ()
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    classes: tuple[str, str] | None = None
    indicator: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "may_be_missing", tuple(self.may_be_missing))
        object.__setattr__(
            self, "categorical", {str(k): tuple(map(str, v)) for k, v in self.categorical.items()}
        )
        unknown = [
            c for c in self.may_be_missing if c not in self.numeric and c not in self.categorical
        ]
        if unknown:
            raise DataError(f"may_be_missing names column(s) that are not features: {unknown}")
        for name, levels in self.categorical.items():
            if len(levels) < 2 or len(set(levels)) != len(levels):
                raise DataError(f"categorical column {name!r} needs two or more distinct levels")
        names = [*self.numeric, *self.categorical, self.target]
        if len(set(names)) != len(names):
            raise DataError("a column is named twice in the table spec")

    @classmethod
    def from_requirements(cls, req: Mapping[str, Any]) -> TableSpec:
        """The table a request's data requirements (or its request spec) name."""
        levels = {str(k): tuple(v) for k, v in (req.get("categorical") or {}).items()}
        classes = req.get("classes")
        return cls(
            target=str(req["target"]),
            numeric=tuple(str(f) for f in req["features"] if f not in levels),
            may_be_missing=tuple(req.get("missing") or ()),
            categorical={f: levels[f] for f in req["features"] if f in levels},
            classes=(str(classes[0]), str(classes[1])) if classes else None,
            indicator=bool(req.get("missing_indicator", True)),
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The encoded columns, in the order every owner uses (the protocol's)."""
        features = [*self.numeric, *self.categorical]
        return tuple(
            encoded_features(features, self.may_be_missing, self.categorical, self.indicator)
        )

    @property
    def imputes(self) -> bool:
        """Whether empty numeric cells are left for the protocol to fill with means."""
        return not self.indicator and any(c in self.numeric for c in self.may_be_missing)


def encode_frame(frame: Any, spec: TableSpec, source: str) -> tuple[Dataset, dict[str, int]]:
    """One owner's rows (a :class:`pandas.DataFrame`, or a mapping of column name to
    cells) encoded as ``spec`` says.

    Returns the data set and the owner's profile notes: per categorical column the
    number of rows whose level the spec does not name (counted as "other").

    Raises
    ------
    DataError
        Naming ``source``, the column and the row for: a missing column, a missing
        target or a missing cell in a column the spec does not let be missing, a
        non-numeric or non-finite number, a target label outside ``spec.classes``,
        or a magnitude beyond :data:`deltaml.learning.data.MAX_ABS_VALUE`. Never a value.
    """
    X, other = _encode(frame, spec, source, with_target=True)
    cells = list(frame[spec.target])
    if spec.classes is None:
        y, y_missing = _numbers(cells, source, spec.target)
        if y_missing.any():
            row = int(np.flatnonzero(y_missing)[0]) + 1
            raise DataError(f"{source}: missing target {spec.target!r} at row {row}")
    else:
        y = _labels(cells, spec.classes, source, spec.target)
    ds = Dataset(
        X=X,
        y=y,
        feature_names=spec.feature_names,
        target_name=spec.target,
        task="regression" if spec.classes is None else "classification",
        classes=spec.classes,
        source=source,
        gaps=spec.imputes,
    )
    return ds, other


def encode_features(frame: Any, spec: TableSpec, source: str = "rows") -> Any:
    """Raw rows encoded as the model's columns: a :class:`pandas.DataFrame` named by
    ``spec.feature_names``, for ``TrainedModel.to_sklearn().predict`` (no target needed;
    an unknown level is "other", as at the owners)."""
    import pandas as pd

    X, _ = _encode(frame, spec, source, with_target=False)
    return pd.DataFrame(X, columns=list(spec.feature_names))


def _encode(
    frame: Any, spec: TableSpec, source: str, *, with_target: bool
) -> tuple[np.ndarray, dict[str, int]]:
    columns = [str(c) for c in (frame.columns if hasattr(frame, "columns") else frame)]
    needed = [*spec.numeric, *spec.categorical, *([spec.target] if with_target else [])]
    absent = [c for c in needed if c not in columns]
    if absent:
        raise DataError(f"{source}: no column(s) {absent}")
    n = len(list(frame[needed[0]])) if needed else 0
    parts: list[np.ndarray] = []
    indicators: list[np.ndarray] = []
    for name in spec.numeric:
        values, missing = _numbers(list(frame[name]), source, name)
        _refuse_missing(missing, spec, source, name)
        if name in spec.may_be_missing and not spec.indicator:
            parts.append(np.where(missing, np.nan, values))  # filled by the protocol
            continue
        parts.append(np.where(missing, 0.0, values))
        if name in spec.may_be_missing:
            indicators.append(missing.astype(np.float64))
    parts += indicators
    other: dict[str, int] = {}
    for name, levels in spec.categorical.items():
        cells = [_text(v) for v in frame[name]]
        missing = np.array([c is None for c in cells], dtype=bool)
        _refuse_missing(missing, spec, source, name)
        # Numbers compare as numbers ("1.0" is level "1"), as a CSV writer may vary.
        named = [_level_of(c, levels) for c in cells]
        for level in levels[1:]:
            parts.append(np.array([c == level for c in named], dtype=np.float64))
        if name in spec.may_be_missing:
            parts.append(missing.astype(np.float64))
        other[name] = sum(
            1 for c, n in zip(cells, named, strict=True) if c is not None and n is None
        )
    return (np.column_stack(parts) if parts else np.empty((n, 0))), other


def _refuse_missing(missing: np.ndarray, spec: TableSpec, source: str, name: str) -> None:
    if missing.any() and name not in spec.may_be_missing:
        row = int(np.flatnonzero(missing)[0]) + 1
        raise DataError(
            f"{source}: missing value in column {name!r} at row {row}; "
            "the request does not let it be missing"
        )


def _labels(cells: list[Any], classes: tuple[str, str], source: str, name: str) -> np.ndarray:
    """A two-class target coded 0 (``classes[0]``) / 1 (``classes[1]``); numbers compare
    as numbers (``1`` matches ``1.0``)."""
    y = np.zeros(len(cells), dtype=np.float64)
    for row, cell in enumerate(cells, start=1):
        text = _text(cell)
        if text is None:
            raise DataError(f"{source}: missing target {name!r} at row {row}")
        code = next((i for i, c in enumerate(classes) if _same_label(text, c)), None)
        if code is None:
            raise DataError(
                f"{source}: target {name!r} at row {row} is neither of the request's classes"
            )
        y[row - 1] = code
    return y


def _level_of(cell: str | None, levels: tuple[str, ...]) -> str | None:
    if cell is None or cell in levels:
        return cell
    return next((level for level in levels if _same_label(cell, level)), None)


def _same_label(text: str, label: str) -> bool:
    if text == label:
        return True
    try:
        return float(text) == float(label)
    except ValueError:
        return False


def encoding_notes(frame: Any, spec: TableSpec, other: Mapping[str, int]) -> list[str]:
    """What encoding ``frame`` did, in plain words an owner can read (counts, never a
    value): rows with an empty cell filled in, rows with a level the spec does not name."""
    notes = []
    for name in spec.may_be_missing:
        empty = sum(1 for cell in frame[name] if _text(cell) is None)
        if empty:
            notes.append(
                f"column {name!r}: {_rows(empty)} with an empty cell, filled in "
                "(the model learns from an indicator column that it was missing)"
            )
    for name, count in other.items():
        if count:
            notes.append(
                f"column {name!r}: {_rows(count)} with a level the request does not name, "
                "counted as other (its first level)"
            )
    return notes


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


def federated_means(spec: TableSpec, means: np.ndarray) -> dict[str, float]:
    """The mean of each may-be-missing column's *observed* values, over all owners.

    ``means`` are the published column means of the encoded features (the
    protocol's ``Standardization.means``: ``Σx / N`` and ``Σmissing / N``), so
    ``Σx / (N − Σmissing)`` = ``mean_x / (1 − mean_missing)``.
    """
    names = spec.feature_names
    out: dict[str, float] = {}
    if not spec.indicator:
        return out
    for name in (c for c in spec.may_be_missing if c in spec.numeric):
        filled = float(means[names.index(name)])
        share_missing = float(means[names.index(f"{name}{MISSING_SUFFIX}")])
        out[name] = filled / (1.0 - share_missing)
    return out


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _numbers(column: Sequence[Any], source: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Floats and a missing mask; refuses text, non-finite and out-of-range numbers."""
    values = np.zeros(len(column), dtype=np.float64)
    missing = np.zeros(len(column), dtype=bool)
    for row, cell in enumerate(column, start=1):
        if _text(cell) is None:
            missing[row - 1] = True
            continue
        try:
            value = float(cell)
        except (TypeError, ValueError):
            raise DataError(
                f"{source}: non-numeric value in column {name!r} at row {row}"
            ) from None
        if not abs(value) < MAX_ABS_VALUE:
            raise DataError(
                f"{source}: value infinite or too large in column {name!r} at row {row}"
            )
        values[row - 1] = value
    return values, missing
