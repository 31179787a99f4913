"""An owner's data files: which CSVs it offers, their profiles, a request's columns.

A request that names ``missing`` or ``categorical`` columns (a mixed table) is
read with :mod:`deltaml.learning.tabular`: empty cells of the columns it lets be
missing are filled with 0 plus an indicator column, categorical columns are
one-hot encoded with the request's levels (a level it does not name counts as
"other"). What that did is said in plain words (:func:`request_dataset`'s notes),
as counts, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deltaml.errors import DeltaMLValueError
from deltaml.learning.csv_load import _read_table
from deltaml.learning.data import Dataset, load_dataset, profile_csv
from deltaml.learning.dataset import _MISSING_TOKENS, _one_line
from deltaml.learning.tabular import TableSpec, encode_frame, encoding_notes


def find_csvs(paths: list[Path]) -> dict[str, Path]:
    """Every CSV named or inside a named folder, by name (the file's stem)."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(path.glob("*.csv"))
        elif path.exists():
            files = [path]
        else:
            raise DeltaMLValueError(f"{path} does not exist")
        for file in files:
            if file.stem in found:
                raise DeltaMLValueError(f"two datasets are named {file.stem!r}: rename one")
            found[file.stem] = file
    if not found:
        raise DeltaMLValueError("no CSV file found in " + ", ".join(map(str, paths)))
    return found


#: The class labels of a logistic request that names none: 0 is negative, 1 positive.
DEFAULT_CLASSES = ("0", "1")


def dataset_profile(name: str, path: Path) -> dict[str, Any]:
    """What the aggregator may know of one dataset (no value of it), and its problems
    in plain words (:func:`deltaml.learning.data.profile_csv`)."""
    return {"name": name, **profile_csv(path)}


def select_columns(
    path: Path,
    features: list[str],
    target: str,
    model: str = "linear",
    classes: list[str] | None = None,
) -> Dataset:
    """The dataset at ``path`` with exactly ``features`` (in that order) and ``target``.

    ``model`` is the request's model type: a logistic request reads the target as
    the request's two ``classes`` (negative, positive; default ``0`` and ``1``),
    the same coding at every owner, so an owner holding one class only takes part
    and its labels never flip; a linear one reads it as numbers. Only the
    requested columns are read: a text column the request does not use is none
    of its business.
    """
    logistic = model == "logistic"
    return load_dataset(
        path,
        target=target,
        task="classification" if logistic else "regression",
        features=features,
        classes=(list(classes or DEFAULT_CLASSES)) if logistic else None,
        share=True,
    )


def request_dataset(
    path: Path, requirements: Mapping[str, Any], model: str = "linear"
) -> tuple[Dataset, list[str]]:
    """The dataset at ``path`` as the request whose data ``requirements`` these are needs
    it, and notes in plain words on what was filled in or counted as "other".

    Raises :class:`~deltaml.errors.DataError` in one line naming the file, the column and
    the row (an empty cell the request does not let be missing, text in a column it
    does not name categorical, a value too large …).
    """
    if not requirements.get("missing") and not requirements.get("categorical"):
        ds = select_columns(
            path,
            list(requirements["features"]),
            str(requirements["target"]),
            model,
            requirements.get("classes"),
        )
        return ds, []
    spec = TableSpec.from_requirements(requirements)
    if model == "logistic" and spec.classes is None:
        spec = TableSpec.from_requirements({**requirements, "classes": list(DEFAULT_CLASSES)})
    label = _one_line(str(path))
    names, cells, _ = _read_table(label, path)
    wanted = [*requirements["features"], requirements["target"]]
    columns = {
        name: [None if row[j].lower() in _MISSING_TOKENS else row[j] for row in cells]
        for j, name in enumerate(names)
        if name in wanted
    }
    ds, other = encode_frame(columns, spec, label)
    return ds, encoding_notes(columns, spec, other)
