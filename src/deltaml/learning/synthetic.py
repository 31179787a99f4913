"""Synthetic regression and classification data with known coefficients."""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.dataset import _SYNTHETIC_SIGNAL_STD, _TASKS, Dataset, Task

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
