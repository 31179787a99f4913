"""Data sets: the :class:`Dataset` type, the limits and the shared message helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deltaml.errors import DataError

Task = Literal["regression", "classification"]
_TASKS: tuple[str, ...] = ("regression", "classification")

#: Names :func:`load_dataset` resolves to scikit-learn's bundled files (no network).
BUILTIN_DATASETS: tuple[str, ...] = ("diabetes", "breast_cancer", "iris")

#: Most classes a multinomial target may have (one-vs-rest trains one model per class).
MAX_CLASSES = 20

#: Target column name of the built-in data sets (as in scikit-learn's data frames).
_BUILTIN_TARGET = "target"

#: Cell texts read as "no value" (compared after stripping and lower-casing).
#: ``nan`` and ``inf`` are not here: they are numbers, refused as non-finite.
_MISSING_TOKENS = frozenset({"", "na", "n/a", "null", "none"})

#: Standard deviation of the noise-free signal ``z · w`` of :func:`make_synthetic`.
_SYNTHETIC_SIGNAL_STD = 3.0

#: At most this many column names are listed in one message.
_MAX_NAMES_IN_MESSAGE = 20

#: The largest magnitude a value may have. The owners' encrypted statistics hold
#: sums of squares at a fixed-point exponent of 40 bits (``TrainingSpec.base_exponent``)
#: inside a Paillier plaintext, whose signed range is n/3 ≥ 2^1021 for the smallest
#: key (1024 bits, tests only): ``rows · x² · 2^40 < 2^1021`` must hold for up to
#: 2^31 rows, so ``|x| < 2^475``. Beyond that a sum wraps around and the column's
#: statistics, and with them its coefficient, are silently wrong; a square beyond
#: 1.8e308 is not even a float. ``2^470`` (about 3e141) leaves a margin.
MAX_ABS_VALUE = 2.0**470


# --------------------------------------------------------------------------- Dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """A numeric data set: features, target and their names.

    Construction copies ``X`` and ``y`` to float64 and makes the copies read-only,
    so a ``Dataset`` is immutable all the way down; take ``ds.X.copy()`` to work
    in place. Equality is identity (``eq=False``): comparing arrays element-wise
    is the caller's choice, not ``==``'s.

    Parameters
    ----------
    X : numpy.ndarray
        Features, shape ``(n_rows, n_features)``, finite float64.
    y : numpy.ndarray
        Target, shape ``(n_rows,)``, finite float64; for classification only
        ``0.0`` and ``1.0``.
    feature_names : tuple of str
        One distinct name per column of ``X``.
    target_name : str
        Name of the target column (distinct from every feature name).
    task : {"regression", "classification"}
        What the target is for.
    source : str
        Where the data came from: a built-in name, a file path, or a label such
        as ``"synthetic:owner0"``.
    classes : tuple of str, optional
        Classification only: the original labels, ``classes[k]`` being the label
        that ``y == k`` encodes. ``None`` for regression.

    Raises
    ------
    DataError
        If shapes, names, task or values are inconsistent.
    """

    X: NDArray[np.float64]
    y: NDArray[np.float64]
    feature_names: tuple[str, ...]
    target_name: str
    task: Task
    source: str
    classes: tuple[str, ...] | None = None
    #: Empty cells (NaN in ``X``) that the protocol fills with the federated means of
    #: their columns (a request with ``missing_indicator: false``).
    gaps: bool = False

    @property
    def multiclass(self) -> bool:
        """More than two classes (trained one-vs-rest)."""
        return self.classes is not None and len(self.classes) > 2

    def __post_init__(self) -> None:
        X = np.array(self.X, dtype=np.float64, copy=True)
        y = np.array(self.y, dtype=np.float64, copy=True)
        names = tuple(str(name) for name in self.feature_names)
        where = f"dataset {self.source!r}"
        if X.ndim != 2:
            raise DataError(f"{where}: X must be 2-dimensional, got shape {X.shape}")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise DataError(f"{where}: y must have shape ({X.shape[0]},), got {y.shape}")
        if len(names) != X.shape[1]:
            raise DataError(f"{where}: {len(names)} feature names for {X.shape[1]} columns")
        if len(set(names)) != len(names) or self.target_name in names:
            raise DataError(f"{where}: feature and target names must be distinct")
        if self.task not in _TASKS:
            raise DataError(f"{where}: task must be one of {_TASKS}, got {self.task!r}")
        finite = np.isfinite(X) | (np.isnan(X) if self.gaps else False)
        if not (finite.all() and np.isfinite(y).all()):
            raise DataError(f"{where}: X and y must be finite")
        if self.task == "classification":
            if self.classes is None or not 2 <= len(self.classes) <= MAX_CLASSES:
                raise DataError(f"{where}: classification needs two to {MAX_CLASSES} classes")
            if not np.isin(y, np.arange(len(self.classes), dtype=np.float64)).all():
                raise DataError(
                    f"{where}: a classification target must be a class code 0 .. "
                    f"{len(self.classes) - 1}"
                )
        elif self.classes is not None:
            raise DataError(f"{where}: classes only apply to classification")
        X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", names)
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    @property
    def n_rows(self) -> int:
        """Number of rows (samples)."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns (the target is not counted)."""
        return int(self.X.shape[1])

    def subset(self, indices: ArrayLike) -> Dataset:
        """Return the rows at ``indices`` as a new data set with the same metadata.

        Parameters
        ----------
        indices : array_like of int or bool
            Row positions (in the given order, repeats allowed) or a boolean mask
            of length ``n_rows``.

        Returns
        -------
        Dataset
            Same names, task, source and classes; only the rows differ.

        Raises
        ------
        IndexError
            If a position is out of range or a mask has the wrong length.
        """
        index = np.asarray(indices)
        if index.dtype != np.bool_:
            index = index.astype(np.intp, copy=False)
        return dataclasses.replace(self, X=self.X[index], y=self.y[index])


# --------------------------------------------------------------------------- helpers


def _one_line(text: str) -> str:
    """Escape line breaks so a message stays on one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _quote(name: str) -> str:
    """Quote a column name for a message (``repr`` escapes control characters)."""
    return repr(name)


def _quote_names(names: Sequence[str]) -> str:
    shown = ", ".join(_quote(name) for name in names[:_MAX_NAMES_IN_MESSAGE])
    hidden = len(names) - _MAX_NAMES_IN_MESSAGE
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _all_numeric(cells: list[str]) -> bool:
    return all(_is_number(cell) for cell in cells)


def _number_text(value: float) -> str:
    """Text of a class value: ``"1"`` for 1.0, ``"0.5"`` for 0.5."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
