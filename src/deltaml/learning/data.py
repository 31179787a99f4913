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

import logging
import os
from collections.abc import Sequence
from typing import cast

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.csv_load import _checked_dataset, _encode_numeric_target, _load_csv
from deltaml.learning.dataset import (
    _BUILTIN_TARGET,
    _TASKS,
    BUILTIN_DATASETS,
    MAX_ABS_VALUE,
    MAX_CLASSES,
    Dataset,
    Task,
    _one_line,
)
from deltaml.learning.profiles import profile, profile_csv, save_csv
from deltaml.learning.splits import split_owners, train_test_split
from deltaml.learning.synthetic import make_synthetic

__all__ = [
    "BUILTIN_DATASETS",
    "MAX_ABS_VALUE",
    "MAX_CLASSES",
    "Dataset",
    "Task",
    "load_dataset",
    "make_synthetic",
    "profile",
    "profile_csv",
    "save_csv",
    "split_owners",
    "train_test_split",
]

logger = logging.getLogger(__name__)


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
