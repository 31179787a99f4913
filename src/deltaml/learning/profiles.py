"""What an owner publishes of its data: names, types and counts, never a value."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deltaml.learning.csv_load import _read_table
from deltaml.learning.dataset import (
    _MISSING_TOKENS,
    MAX_ABS_VALUE,
    Dataset,
    _is_number,
    _one_line,
    _quote,
)

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
                "only requests that let it be missing can use it"
            )
        text = next((r for r, cell in present if not _is_number(cell)), None)
        if text is not None:
            columns.append({"name": name, "role": "column", "type": "text", "nulls": nulls})
            # The row says where to look when the text is a typo in a numeric column.
            problems.append(
                f"non-numeric value in column {_quote(name)} at row {text + 1} "
                f"(line {lines[text]}): it holds text, so it can only be a categorical "
                "column of a request that names its levels, or the target of a logistic "
                "request that names its classes"
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
