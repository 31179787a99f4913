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
  plus ``"<name>__missing"`` for an empty cell. A level the spec does not name
  counts as the reference ("other"): the owner's profile says how many rows,
  never which values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.data import MAX_ABS_VALUE, Dataset

__all__ = ["TableSpec", "encode_frame", "federated_means"]

MISSING_SUFFIX = "__missing"


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
        Those of ``numeric`` that may have empty cells (each gets an indicator).
    categorical : mapping of str to sequence of str
        Categorical columns and their levels, the first the reference.
    """

    target: str
    numeric: tuple[str, ...] = ()
    may_be_missing: tuple[str, ...] = ()
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "may_be_missing", tuple(self.may_be_missing))
        object.__setattr__(
            self, "categorical", {str(k): tuple(map(str, v)) for k, v in self.categorical.items()}
        )
        unknown = [c for c in self.may_be_missing if c not in self.numeric]
        if unknown:
            raise DataError(f"may_be_missing names non-numeric column(s) {unknown}")
        for name, levels in self.categorical.items():
            if len(levels) < 2 or len(set(levels)) != len(levels):
                raise DataError(f"categorical column {name!r} needs two or more distinct levels")
        names = [*self.numeric, *self.categorical, self.target]
        if len(set(names)) != len(names):
            raise DataError("a column is named twice in the table spec")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The encoded columns, in the order every owner uses."""
        out = list(self.numeric)
        out += [f"{c}{MISSING_SUFFIX}" for c in self.may_be_missing]
        for name, levels in self.categorical.items():
            out += [f"{name}={level}" for level in levels[1:]]
            out.append(f"{name}{MISSING_SUFFIX}")
        return tuple(out)


def encode_frame(frame: Any, spec: TableSpec, source: str) -> tuple[Dataset, dict[str, int]]:
    """One owner's rows (a :class:`pandas.DataFrame`) encoded as ``spec`` says.

    Returns the data set and the owner's profile notes: per categorical column the
    number of rows whose level the spec does not name (counted as "other").

    Raises
    ------
    DataError
        Naming ``source``, the column and the row for: a missing column, a missing
        target or a missing cell in a numeric column the spec does not let be
        missing, a non-numeric or non-finite number, or a magnitude beyond
        :data:`deltaml.learning.data.MAX_ABS_VALUE`. Never a value.
    """
    columns = [str(c) for c in frame.columns]
    needed = [*spec.numeric, *spec.categorical, spec.target]
    absent = [c for c in needed if c not in columns]
    if absent:
        raise DataError(f"{source}: no column(s) {absent}")
    n = len(frame)
    parts: list[np.ndarray] = []
    indicators: list[np.ndarray] = []
    for name in spec.numeric:
        values, missing = _numbers(frame[name], source, name)
        if missing.any() and name not in spec.may_be_missing:
            row = int(np.flatnonzero(missing)[0]) + 1
            raise DataError(
                f"{source}: missing value in column {name!r} at row {row}; "
                "the request does not let it be missing"
            )
        parts.append(np.where(missing, 0.0, values))
        if name in spec.may_be_missing:
            indicators.append(missing.astype(np.float64))
    parts += indicators
    other: dict[str, int] = {}
    for name, levels in spec.categorical.items():
        cells = [_text(v) for v in frame[name]]
        missing = np.array([c is None for c in cells])
        for level in levels[1:]:
            parts.append(np.array([c == level for c in cells], dtype=np.float64))
        parts.append(missing.astype(np.float64))
        other[name] = sum(1 for c in cells if c is not None and c not in levels)
    y, y_missing = _numbers(frame[spec.target], source, spec.target)
    if y_missing.any():
        row = int(np.flatnonzero(y_missing)[0]) + 1
        raise DataError(f"{source}: missing target {spec.target!r} at row {row}")
    X = np.column_stack(parts) if parts else np.empty((n, 0))
    ds = Dataset(
        X=X,
        y=y,
        feature_names=spec.feature_names,
        target_name=spec.target,
        task="regression",
        source=source,
    )
    return ds, other


def federated_means(spec: TableSpec, means: np.ndarray) -> dict[str, float]:
    """The mean of each may-be-missing column's *observed* values, over all owners.

    ``means`` are the published column means of the encoded features (the
    protocol's ``Standardization.means``: ``Σx / N`` and ``Σmissing / N``), so
    ``Σx / (N − Σmissing)`` = ``mean_x / (1 − mean_missing)``.
    """
    names = spec.feature_names
    out = {}
    for name in spec.may_be_missing:
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
