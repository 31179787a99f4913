"""Data sets as a data owner holds them: load, check, split, profile, synthesize.

A :class:`Dataset` is a numeric feature matrix, a numeric target and the names
that go with them. :func:`load_dataset` builds one from scikit-learn's bundled
``diabetes`` or ``breast_cancer`` files or from a CSV file, and refuses anything
it cannot use with a :class:`~deltaml.errors.DataError` whose message is one line
naming the file and the problem.

Privacy rule of this module: data values never appear in an error message, a log
line or a :func:`profile`. Messages name columns and row numbers only, because
the file is the owner's and its values may be sensitive; the profile is what an
owner publishes, so it holds names, types and counts, never a value or a
statistic of values.

Row numbers in messages count data rows from 1 (the header is not a row); the
physical line of the file is given too, for an editor.

scikit-learn is imported only inside the functions that need it, so importing
this module stays cheap.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deltaml.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "Task",
    "load_dataset",
    "make_synthetic",
    "profile",
    "profile_csv",
    "split_owners",
    "train_test_split",
]

logger = logging.getLogger(__name__)

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
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
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


# --------------------------------------------------------------------------- loading


def load_dataset(
    spec: str | os.PathLike[str],
    target: str | None = None,
    task: str | None = None,
    *,
    features: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    share: bool = False,
    multiclass: bool = False,
) -> Dataset:
    """Load a built-in data set or a CSV file and check it can be trained on.

    Parameters
    ----------
    spec : str or path-like
        ``"diabetes"`` (442 rows, 10 features, regression; scikit-learn's unscaled
        version) or ``"breast_cancer"`` (569 rows, 30 features, classification,
        classes ``("malignant", "benign")``), read from scikit-learn's bundled
        files without network; these names win over a file of the same name.
        Anything else is the path of a comma-separated UTF-8 file whose first
        line names the columns and whose other lines hold numbers. Blank lines
        are skipped; ``""``, ``NA``, ``N/A``, ``null`` and ``None`` are missing
        values.
    target : str, optional
        Name of the target column; default the last column. Every other column
        is a feature. For a built-in data set it can only be ``"target"``.
    task : {"regression", "classification"}, optional
        Default: classification when the target has exactly two distinct values,
        regression otherwise. A classification target is encoded as ``0.0`` /
        ``1.0`` in sorted order of its values (numeric order for numbers, text
        order for text labels), which are kept in ``Dataset.classes``. A text
        target is allowed only for classification.

    Returns
    -------
    Dataset
        With ``source`` the built-in name or the path as given.

    Raises
    ------
    DataError
        With a one-line message ``"<file>: <problem>"`` when the file is
        missing, unreadable, empty, not parseable as CSV, has no header, has
        duplicate or empty column names, a single column, an unknown or empty
        target name, missing, non-numeric or non-finite values, fewer rows than
        features + 1, a constant feature, a constant target, or a target that
        is not two-class when classification is asked for, or a value whose
        magnitude is at least :data:`MAX_ABS_VALUE` (it would not survive the
        fixed-point encoding of the encrypted statistics). Messages name
        columns and rows, never values.

    Other Parameters
    ----------------
    features : sequence of str, optional
        CSV only: exactly these columns, in this order, are the features (a
        data owner answering a request); the file's other columns are not read,
        so a text column the request does not use is no obstacle.
    classes : sequence of two str, optional
        Classification only: the ``(negative, positive)`` labels, encoded as
        0 and 1 whatever each file holds (numbers compare as numbers: ``1``
        matches ``1.0``). Every owner of a request encodes with the same pair,
        so a share holding one class is allowed and never flips the coding; a
        label outside the pair is refused naming its row.
    share : bool
        The data is one owner's share of a federation: the checks that only
        make sense for the whole training set (rows >= features + 1, no
        constant feature, two distinct target values) are left to the
        protocol, which checks the union.
    multiclass : bool
        Let a classification target have up to :data:`MAX_CLASSES` classes
        (coded 0 .. K-1 in sorted order; trained one-vs-rest by
        :func:`deltaml.simulation.run_simulation`). ``"iris"`` always has three.
    """
    label = _one_line(os.fspath(spec))
    if task is not None and task not in _TASKS:
        raise DataError(f"{label}: task must be 'regression' or 'classification', got {task!r}")
    if classes is not None and len(classes) != 2:
        raise DataError(f"{label}: classes must name two labels (negative, positive)")
    if isinstance(spec, str) and spec in BUILTIN_DATASETS:
        dataset = _load_builtin(spec, target, cast("Task | None", task), multiclass)
    else:
        dataset = _load_csv(
            label,
            spec,
            target,
            cast("Task | None", task),
            features=features,
            classes=None if classes is None else (str(classes[0]), str(classes[1])),
            share=share,
            multiclass=multiclass,
        )
    logger.debug(
        "loaded %s: %d rows, %d features, %s",
        label,
        dataset.n_rows,
        dataset.n_features,
        dataset.task,
    )
    return dataset


def _load_builtin(
    name: str, target: str | None, task: Task | None, multiclass: bool = False
) -> Dataset:
    from sklearn import datasets

    if target is not None and target != _BUILTIN_TARGET:
        raise DataError(
            f"{name}: the built-in data set's target column is {_BUILTIN_TARGET!r}, "
            f"not {_one_line(repr(target))}"
        )
    if name == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)  # raw units: standardization is ours
        code_names: Sequence[str] | None = None
    else:
        loader = datasets.load_iris if name == "iris" else datasets.load_breast_cancer
        bunch = loader()
        code_names = [str(c) for c in bunch.target_names]
        task = task or "classification"
        multiclass = multiclass or name == "iris"
    X = np.asarray(bunch.data, dtype=np.float64)
    values = np.asarray(bunch.target, dtype=np.float64)
    feature_names = tuple(str(f) for f in bunch.feature_names)
    y, resolved_task, classes = _encode_numeric_target(
        name, _BUILTIN_TARGET, values, task, code_names, multiclass=multiclass
    )
    return _checked_dataset(
        name, X, y, feature_names, _BUILTIN_TARGET, resolved_task, classes, source=name
    )


def _read_table(
    label: str, spec: str | os.PathLike[str]
) -> tuple[list[str], list[list[str]], list[int]]:
    """The column names, the stripped cells of each data row and each row's line."""
    header, records = _read_csv_records(label, spec)
    names = _check_header(label, header)
    if not records:
        raise DataError(f"{label}: the file has a header but no data rows")
    for row, (line, fields) in enumerate(records, start=1):
        if len(fields) != len(names):
            raise DataError(
                f"{label}: not a valid CSV table: row {row} (line {line}) has "
                f"{len(fields)} fields but the header has {len(names)}"
            )
    cells = [[field.strip() for field in fields] for _, fields in records]
    lines = [line for line, _ in records]
    return names, cells, lines


def _load_csv(
    label: str,
    spec: str | os.PathLike[str],
    target: str | None,
    task: Task | None,
    features: Sequence[str] | None = None,
    classes: tuple[str, str] | None = None,
    share: bool = False,
    multiclass: bool = False,
) -> Dataset:
    names, cells, lines = _read_table(label, spec)
    target_index = _resolve_target_column(label, names, target)
    target_name = names[target_index]
    if features is None:
        feature_index = [j for j in range(len(names)) if j != target_index]
    else:
        absent = [f for f in features if f not in names]
        if absent:
            raise DataError(f"{label}: no column(s) {_quote_names(absent)}")
        if target_name in features or len(set(features)) != len(features):
            raise DataError(f"{label}: the features must be distinct and not the target")
        feature_index = [names.index(f) for f in features]
    used = [*feature_index, target_index]
    _check_missing(label, names, [[row[j] for j in used] for row in cells], lines, used)
    feature_names = tuple(names[j] for j in feature_index)
    if len(cells) < 2 and not share:
        raise DataError(f"{label}: only one data row: training needs at least two")
    X = _parse_numbers(label, names, cells, lines, feature_index)
    target_cells = [row_cells[target_index] for row_cells in cells]
    resolved_classes: tuple[str, ...] | None
    if classes is not None and task != "regression":
        y = _encode_named_classes(label, target_name, target_cells, lines, classes)
        resolved_task: Task = "classification"
        resolved_classes = classes
    elif task != "regression" and not _all_numeric(target_cells):
        y, resolved_task, resolved_classes = _encode_text_target(
            label, target_name, target_cells, multiclass
        )
    else:
        values = _parse_numbers(label, names, cells, lines, [target_index])[:, 0]
        y, resolved_task, resolved_classes = _encode_numeric_target(
            label, target_name, values, task, None, share, multiclass
        )
    if share:
        return Dataset(
            X=X,
            y=y,
            feature_names=feature_names,
            target_name=target_name,
            task=resolved_task,
            source=label,
            classes=resolved_classes,
        )
    return _checked_dataset(
        label, X, y, feature_names, target_name, resolved_task, resolved_classes, source=label
    )


def _encode_named_classes(
    label: str,
    target_name: str,
    cells: list[str],
    lines: list[int],
    classes: tuple[str, str],
) -> NDArray[np.float64]:
    """``0.0`` for ``classes[0]``, ``1.0`` for ``classes[1]``; refuse any other label."""
    y = np.empty(len(cells), dtype=np.float64)
    for row, cell in enumerate(cells, start=1):
        for code, name in enumerate(classes):
            if cell == name or (
                _is_number(cell) and _is_number(name) and float(cell) == float(name)
            ):
                y[row - 1] = code
                break
        else:
            raise DataError(
                f"{label}: target column {_quote(target_name)} holds a label other than "
                f"the request's classes {_quote_names(list(classes))} at row {row} "
                f"(line {lines[row - 1]})"
            )
    return y


def _read_csv_records(
    label: str, spec: str | os.PathLike[str]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Return the header fields and ``(line number, fields)`` of each data record."""
    records: list[tuple[int, list[str]]] = []
    try:
        with open(spec, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank line
                records.append((reader.line_num, fields))
    except FileNotFoundError:
        raise DataError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{label}: is a directory, not a CSV file") from None
    except PermissionError:
        raise DataError(f"{label}: cannot read the file: permission denied") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{label}: not a UTF-8 text file (undecodable byte at offset {exc.start})"
        ) from None
    except csv.Error as exc:
        # The csv module's messages name delimiters and limits, never field text.
        raise DataError(f"{label}: not parseable as CSV: {_one_line(str(exc))}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DataError(f"{label}: cannot read the file: {_one_line(reason)}") from None
    if not records:
        raise DataError(f"{label}: the file is empty")
    _, header = records[0]
    return header, records[1:]


def _check_header(label: str, header: list[str]) -> list[str]:
    names = [field.strip() for field in header]
    if all(_is_number(name) for name in names):
        raise DataError(
            f"{label}: no header: the first line holds only numbers; it must name the columns"
        )
    for position, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{label}: column {position} has no name in the header")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{label}: duplicate column name(s): {_quote_names(duplicates)}")
    if len(names) < 2:
        raise DataError(
            f"{label}: only one column ({_quote_names(names)}): need at least one "
            f"feature column and a target column (is the file comma-separated?)"
        )
    return names


def _resolve_target_column(label: str, names: list[str], target: str | None) -> int:
    if target is None:
        return len(names) - 1
    if not target.strip():
        raise DataError(f"{label}: no target column given (the target name is empty)")
    if target not in names:
        raise DataError(
            f"{label}: target column {_quote(target)} not found; "
            f"available columns: {_quote_names(names)}"
        )
    return names.index(target)


def _check_missing(
    label: str,
    names: list[str],
    cells: list[list[str]],
    lines: list[int],
    columns: list[int] | None = None,
) -> None:
    """Refuse missing values; ``cells[r][k]`` is column ``columns[k]`` (default: all)."""
    index = columns if columns is not None else list(range(len(names)))
    missing_columns: set[int] = set()
    first: tuple[int, int] | None = None
    for row, row_cells in enumerate(cells, start=1):
        for k, cell in enumerate(row_cells):
            j = index[k]
            if cell.lower() in _MISSING_TOKENS:
                missing_columns.add(j)
                if first is None:
                    first = (row, lines[row - 1])
    if first is not None:
        quoted = _quote_names([names[j] for j in sorted(missing_columns)])
        raise DataError(
            f"{label}: missing values in column(s) {quoted}; "
            f"first at row {first[0]} (line {first[1]})"
        )


def _parse_numbers(
    label: str,
    names: list[str],
    cells: list[list[str]],
    lines: list[int],
    columns: list[int],
) -> NDArray[np.float64]:
    """Parse ``columns`` of ``cells`` to floats; refuse text and non-finite numbers."""
    out = np.empty((len(cells), len(columns)), dtype=np.float64)
    for row, row_cells in enumerate(cells, start=1):
        for k, j in enumerate(columns):
            try:
                value = float(row_cells[j])
            except ValueError:
                raise DataError(
                    f"{label}: non-numeric value in column {_quote(names[j])} "
                    f"at row {row} (line {lines[row - 1]})"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{label}: non-finite number (infinite or NaN) in column "
                    f"{_quote(names[j])} at row {row} (line {lines[row - 1]})"
                )
            if abs(value) >= MAX_ABS_VALUE:
                raise DataError(
                    f"{label}: value too large in column {_quote(names[j])} at row {row} "
                    f"(line {lines[row - 1]}): magnitudes must stay below "
                    f"{MAX_ABS_VALUE:.3g} to survive the encrypted statistics' "
                    "fixed-point encoding; rescale the column"
                )
            out[row - 1, k] = value
    return out


def _encode_numeric_target(
    label: str,
    target_name: str,
    values: NDArray[np.float64],
    task: Task | None,
    code_names: Sequence[str] | None,
    share: bool = False,
    multiclass: bool = False,
) -> tuple[NDArray[np.float64], Task, tuple[str, ...] | None]:
    """Resolve the task of a numeric target; encode a two-class target as 0/1.

    ``code_names[int(v)]`` names the class coded ``v`` when given (built-ins);
    otherwise the class names are the numbers' text. A share's constant target is
    no error (the protocol checks the union).
    """
    distinct = np.unique(values)
    if task is None:
        task = "classification" if distinct.size == 2 else "regression"
    if task == "regression":
        if distinct.size < 2 and not share:
            raise DataError(f"{label}: target column {_quote(target_name)} is constant")
        return values, task, None
    _check_two_classes(label, target_name, int(distinct.size), multiclass=multiclass)
    y = np.searchsorted(distinct, values).astype(np.float64)
    if code_names is not None:
        classes = tuple(code_names[int(v)] for v in distinct)
    else:
        classes = tuple(_number_text(float(v)) for v in distinct)
    return y, task, classes


def _encode_text_target(
    label: str, target_name: str, cells: list[str], multiclass: bool = False
) -> tuple[NDArray[np.float64], Task, tuple[str, ...]]:
    """Encode a text target as class codes in sorted order (classification only)."""
    distinct = sorted(set(cells))
    _check_two_classes(label, target_name, len(distinct), text=True, multiclass=multiclass)
    code = {name: k for k, name in enumerate(distinct)}
    y = np.array([code[cell] for cell in cells], dtype=np.float64)
    return y, "classification", tuple(distinct)


def _check_two_classes(
    label: str, target_name: str, n_distinct: int, text: bool = False, multiclass: bool = False
) -> None:
    if multiclass and 2 <= n_distinct <= MAX_CLASSES:
        return
    if multiclass:
        kind = "text target column" if text else "target column"
        raise DataError(
            f"{label}: {kind} {_quote(target_name)} has {n_distinct} distinct values; "
            f"classification needs 2 to {MAX_CLASSES}"
        )
    if n_distinct != 2:
        kind = "text target column" if text else "target column"
        plural = "value" if n_distinct == 1 else "values"
        raise DataError(
            f"{label}: {kind} {_quote(target_name)} has {n_distinct} distinct {plural}; "
            f"classification needs exactly two"
        )


def _checked_dataset(
    label: str,
    X: NDArray[np.float64],
    y: NDArray[np.float64],
    feature_names: tuple[str, ...],
    target_name: str,
    task: Task,
    classes: tuple[str, ...] | None,
    source: str,
) -> Dataset:
    """Apply the checks shared by every loader, then build the data set."""
    n_rows, n_features = X.shape
    if n_rows < n_features + 1:
        raise DataError(
            f"{label}: {n_rows} rows is fewer than features + 1 = {n_features + 1} "
            f"({n_features} features and an intercept)"
        )
    spans = np.ptp(X, axis=0)
    constant = [name for name, span in zip(feature_names, spans, strict=True) if span == 0]
    if constant:
        raise DataError(
            f"{label}: constant feature column(s) {_quote_names(constant)} "
            f"(the same value in every row): drop them"
        )
    return Dataset(
        X=X,
        y=y,
        feature_names=feature_names,
        target_name=target_name,
        task=task,
        source=source,
        classes=classes,
    )


# --------------------------------------------------------------------------- splitting


def train_test_split(
    ds: Dataset, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split rows into a training and a test set, stratified for classification.

    Uses :func:`sklearn.model_selection.train_test_split` on the row indices, so
    the split is exactly the one scikit-learn gives for ``(ds.X, ds.y)`` with
    ``test_size=test_fraction``, ``random_state=seed`` and ``stratify=ds.y`` for
    classification (``None`` for regression).

    Parameters
    ----------
    ds : Dataset
        The data set to split.
    test_fraction : float
        Share of rows in the test set, strictly between 0 and 1.
    seed : int
        Random seed.

    Returns
    -------
    tuple of Dataset
        ``(train, test)``; disjoint, together all rows of ``ds``.

    Raises
    ------
    DataError
        If ``test_fraction`` is out of range or the data set is too small to
        split that way (for example fewer than two rows of a class).
    """
    from sklearn.model_selection import train_test_split as sk_train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise DataError(
            f"{ds.source}: test_fraction must be strictly between 0 and 1, got {test_fraction!r}"
        )
    stratify = ds.y if ds.task == "classification" else None
    try:
        train_index, test_index = sk_train_test_split(
            np.arange(ds.n_rows), test_size=test_fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        # scikit-learn's messages here are about counts and sizes, never values.
        raise DataError(f"{ds.source}: cannot split: {_one_line(str(exc))}") from None
    return ds.subset(train_index), ds.subset(test_index)


def split_owners(ds: Dataset, n_owners: int, seed: int = 0, by: str | None = None) -> list[Dataset]:
    """Deal the rows of a data set out to ``n_owners`` data owners.

    Parameters
    ----------
    ds : Dataset
        The data set to split.
    n_owners : int
        Number of owners, at least 2.
    seed : int
        Random seed of the shuffle.
    by : str, optional
        ``None``: independent and identically distributed shares (a seeded
        random permutation of the rows, cut with :func:`numpy.array_split`).
        A feature name (or the target name): non-iid shares — the rows sorted by
        that column and cut into contiguous chunks, so owner ``i`` sees values no
        larger than owner ``i + 1`` does. Ties are broken by the seeded shuffle,
        so rows sharing a value (a binary column) still go out at random.

    Returns
    -------
    list of Dataset
        ``n_owners`` disjoint data sets covering all rows, sizes differing by at
        most one. ``source`` is ``"<source>#owner<i>"``. A share may contain a
        constant column (likely with ``by``); it is not rejected here.

    Raises
    ------
    DataError
        If ``n_owners < 2``, if a share would have fewer than ``n_features + 2``
        rows, or if ``by`` names no column.
    """
    if isinstance(n_owners, bool) or not isinstance(n_owners, int | np.integer):
        raise DataError(f"{ds.source}: n_owners must be an integer, got {n_owners!r}")
    if n_owners < 2:
        raise DataError(f"{ds.source}: need at least 2 owners, got {n_owners}")
    smallest = ds.n_rows // n_owners
    needed = ds.n_features + 2
    if smallest < needed:
        raise DataError(
            f"{ds.source}: {ds.n_rows} rows for {n_owners} owners gives some owner "
            f"{smallest} rows; each needs at least features + 2 = {needed}"
        )
    order = np.random.default_rng(seed).permutation(ds.n_rows)
    if by is not None:
        if by in ds.feature_names:
            column = ds.X[:, ds.feature_names.index(by)]
        elif by == ds.target_name:
            column = ds.y
        else:
            available = _quote_names([*ds.feature_names, ds.target_name])
            raise DataError(
                f"{ds.source}: cannot split by {_quote(by)}: no such column; "
                f"available columns: {available}"
            )
        order = order[np.argsort(column[order], kind="stable")]
    return [
        dataclasses.replace(ds.subset(chunk), source=f"{ds.source}#owner{i}")
        for i, chunk in enumerate(np.array_split(order, n_owners))
    ]


# --------------------------------------------------------------------------- profile


def save_csv(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a CSV that :func:`load_dataset` reads back exactly (features, then
    the target last; every float to 17 significant digits). Parent folders are created.

    Classification labels are written as their 0/1 codes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = ",".join([*ds.feature_names, ds.target_name])
    table = np.column_stack([ds.X, ds.y])
    np.savetxt(target, table, delimiter=",", header=header, comments="", fmt="%.17g")
    return target


def profile(ds: Dataset) -> dict[str, object]:
    """Describe a data set without revealing any value: what an owner publishes.

    Parameters
    ----------
    ds : Dataset
        The owner's data set.

    Returns
    -------
    dict
        ``{"rows": int, "target": str, "task": str, "columns": [...]}`` where each
        column is ``{"name": str, "role": "feature" | "target", "type": "binary" |
        "int" | "float", "nulls": int}``, features first, then the target.
        ``"binary"`` means every value is 0 or 1, ``"int"`` every value is a whole
        number, ``"float"`` anything else. ``nulls`` is always 0 because loading
        refuses missing values; it is kept so profiles match the published
        format. No value, range or statistic of the data is included.
    """
    columns: list[dict[str, object]] = [
        {"name": name, "role": "feature", "type": _column_type(ds.X[:, j]), "nulls": 0}
        for j, name in enumerate(ds.feature_names)
    ]
    columns.append(
        {"name": ds.target_name, "role": "target", "type": _column_type(ds.y), "nulls": 0}
    )
    return {"rows": ds.n_rows, "target": ds.target_name, "task": ds.task, "columns": columns}


def profile_csv(path: str | os.PathLike[str]) -> dict[str, object]:
    """Describe a data owner's CSV file, and its problems in plain words, without a value.

    Unlike :func:`load_dataset` it assumes no target (a request names one) and
    refuses only a file that is not a table at all; everything else is a
    *problem* of a column, said in words an owner can act on, and that column
    is left out of what a request can use.

    Returns
    -------
    dict
        ``{"rows": int, "target": "", "task": "", "columns": [...], "problems":
        [str, ...]}``; each column is ``{"name", "role": "column", "type":
        "binary" | "int" | "float" | "text", "nulls": int}``. A ``"text"`` column
        can only be a classification target (the request names its classes).
        Columns with a value too large for the encrypted statistics are not
        listed (only their problem is).

    Raises
    ------
    DataError
        One line naming the file, when it cannot be read as a table (missing,
        not UTF-8, no header, a single column, no data row, ragged rows).
    """
    label = _one_line(os.fspath(path))
    names, cells, lines = _read_table(label, path)
    problems: list[str] = []
    columns: list[dict[str, object]] = []
    for j, name in enumerate(names):
        present = [
            (r, row[j]) for r, row in enumerate(cells) if row[j].lower() not in _MISSING_TOKENS
        ]
        nulls = len(cells) - len(present)
        if nulls:
            problems.append(
                f"missing values in column {_quote(name)} ({_plural(nulls, 'row')}): "
                "requests that need it are not offered"
            )
        text = next((r for r, cell in present if not _is_number(cell)), None)
        if text is not None:
            columns.append({"name": name, "role": "column", "type": "text", "nulls": nulls})
            # The row says where to look when the text is a typo in a numeric column.
            problems.append(
                f"non-numeric value in column {_quote(name)} at row {text + 1} "
                f"(line {lines[text]}): it holds text, so it can only be the "
                "target of a logistic request that names its classes"
            )
            continue
        values = np.array([float(cell) for _, cell in present], dtype=np.float64)
        bad = [r for (r, _), v in zip(present, values, strict=True) if not abs(v) < MAX_ABS_VALUE]
        if bad:
            problems.append(
                f"value infinite, NaN or too large (magnitude {MAX_ABS_VALUE:.3g} or more) "
                f"in column {_quote(name)} at row {bad[0] + 1} (line {lines[bad[0]]}): "
                "the column is not offered until that is fixed"
            )
            continue
        kind = _column_type(values) if len(values) else "float"
        columns.append({"name": name, "role": "column", "type": kind, "nulls": nulls})
    if len(cells) == 1:
        problems.append("only one data row: it can take part only with other owners' data")
    return {"rows": len(cells), "target": "", "task": "", "columns": columns, "problems": problems}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _column_type(values: NDArray[np.float64]) -> str:
    if np.isin(values, (0.0, 1.0)).all():
        return "binary"
    if (values == np.round(values)).all():
        return "int"
    return "float"


# --------------------------------------------------------------------------- synthetic


def make_synthetic(
    n_owners: int,
    rows_per_owner: int,
    n_features: int,
    task: str = "regression",
    seed: int = 0,
    noise: float = 0.1,
) -> list[Dataset]:
    """Generate owners' data sets for benchmarks, all from one distribution.

    Feature ``j`` is ``mean_j + scale_j · z_j`` with ``z_j ~ N(0, 1)``, means drawn
    uniformly from ``[-50, 50]`` and scales spread evenly on a log axis from 0.1
    to 100 (in random column order; 0.1 alone when ``n_features == 1``), so raw
    columns differ by orders of magnitude and a learner that does not
    standardize converges badly. The signal is defined on the standardized
    features, so every feature matters comparably: ``eta = z · w + b + noise · e``
    with ``e ~ N(0, 1)``, ``b ~ U(-1, 1)`` and weights of random sign and
    magnitude ``U(0.5, 1.5)``, rescaled so that ``z · w`` has standard deviation 3
    whatever ``n_features`` is. Regression targets are ``eta``; classification
    targets are drawn as ``Bernoulli(sigmoid(eta))`` (a logistic link, so a
    logistic model reaches roughly 85 % accuracy), with classes ``("0", "1")``.

    Parameters
    ----------
    n_owners : int
        Number of data sets, at least 1.
    rows_per_owner : int
        Rows in each data set, at least 1.
    n_features : int
        Feature columns ``x0 … x{n_features-1}``, at least 1; the target is ``y``.
    task : {"regression", "classification"}
        Kind of target.
    seed : int
        Random seed; the same arguments give the same arrays.
    noise : float
        Standard deviation of the Gaussian noise added to ``eta``, at least 0.

    Returns
    -------
    list of Dataset
        ``n_owners`` data sets, ``source`` ``"synthetic:owner<i>"``.

    Raises
    ------
    DataError
        If an argument is out of range.
    """
    for name, value in (
        ("n_owners", n_owners),
        ("rows_per_owner", rows_per_owner),
        ("n_features", n_features),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise DataError(f"synthetic: {name} must be a positive integer, got {value!r}")
    if task not in _TASKS:
        raise DataError(f"synthetic: task must be 'regression' or 'classification', got {task!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise DataError(f"synthetic: noise must be a finite number >= 0, got {noise!r}")

    rng = np.random.default_rng(seed)
    means = rng.uniform(-50.0, 50.0, size=n_features)
    scales = 10.0 ** rng.permutation(np.linspace(-1.0, 2.0, n_features))
    signs = rng.choice((-1.0, 1.0), size=n_features)
    weights = signs * rng.uniform(0.5, 1.5, size=n_features)
    weights *= _SYNTHETIC_SIGNAL_STD / np.linalg.norm(weights)
    bias = float(rng.uniform(-1.0, 1.0))
    n_rows = n_owners * rows_per_owner
    z = rng.standard_normal((n_rows, n_features))
    eta = z @ weights + bias + noise * rng.standard_normal(n_rows)
    X = means + scales * z
    classes: tuple[str, ...] | None = None
    if task == "classification":
        y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
        classes = ("0", "1")
    else:
        y = eta
    feature_names = tuple(f"x{j}" for j in range(n_features))
    return [
        Dataset(
            X=X[i * rows_per_owner : (i + 1) * rows_per_owner],
            y=y[i * rows_per_owner : (i + 1) * rows_per_owner],
            feature_names=feature_names,
            target_name="y",
            task=cast(Task, task),
            source=f"synthetic:owner{i}",
            classes=classes,
        )
        for i in range(n_owners)
    ]


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
