"""Reading a data owner's CSV file into a :class:`~deltaml.learning.dataset.Dataset`, refusing
what cannot be used with one line naming the file, column and row (never a value)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from deltaml.errors import DataError
from deltaml.learning.dataset import (
    _MISSING_TOKENS,
    MAX_ABS_VALUE,
    MAX_CLASSES,
    Dataset,
    Task,
    _all_numeric,
    _is_number,
    _number_text,
    _one_line,
    _quote,
    _quote_names,
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
