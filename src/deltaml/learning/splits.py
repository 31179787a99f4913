"""Splitting a data set: train/test, and over owners (iid or by a column)."""

from __future__ import annotations

import dataclasses

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.dataset import Dataset, _one_line, _quote, _quote_names

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
