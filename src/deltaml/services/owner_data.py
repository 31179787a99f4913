"""An owner's data files: which CSVs it offers, their profiles, a request's columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltaml.errors import DeltaMLValueError
from deltaml.learning.data import Dataset, load_dataset, profile_csv


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
