"""A simulation on owners' mixed tables: empty cells and categorical columns (issue 13).

Each owner's rows (a :class:`pandas.DataFrame`) are encoded as the request's
:class:`~deltaml.learning.tabular.TableSpec` says — what an owner node does with its
CSV (:func:`deltaml.services.owner_data.request_dataset`) — and the encoded shares run
through the roles like any other (:func:`deltaml.simulation.simulate_shares`). The
trained model names the encoded columns and carries the table, so it predicts raw rows
itself (:meth:`deltaml.estimator.TrainedModel.encode`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.csv_load import _read_table
from deltaml.learning.data import Dataset
from deltaml.learning.dataset import _MISSING_TOKENS, _one_line
from deltaml.learning.tabular import TableSpec, encode_frame, encoding_notes
from deltaml.protocol.spec import check_requirements
from deltaml.roles.aggregator import RoundRecord
from deltaml.simulation import SimulationConfig, SimulationResult, owner_ids, simulate_shares

__all__ = ["TableRun", "encode_owners", "run_table_simulation", "simulate_frames"]


@dataclass(frozen=True)
class TableRun:
    """A simulation's result, the owners' encoded shares and each owner's notes."""

    result: SimulationResult
    shares: list[Dataset]
    #: Per owner id: what encoding its rows did, in plain words (counts only).
    notes: dict[str, list[str]]


def encode_owners(
    frames: Sequence[Any], table: TableSpec
) -> tuple[list[Dataset], dict[str, list[str]]]:
    """Each owner's frame encoded with ``table`` (errors name the owner, column and row)."""
    shares: list[Dataset] = []
    notes: dict[str, list[str]] = {}
    for oid, frame in zip(owner_ids(len(frames)), frames, strict=True):
        ds, other = encode_frame(frame, table, oid)
        shares.append(ds)
        notes[oid] = encoding_notes(frame, table, other)
    return shares, notes


def simulate_frames(
    config: SimulationConfig,
    frames: Sequence[Any],
    table: TableSpec,
    test: Any = None,
) -> TableRun:
    """The protocol on owners' mixed tables (linear, or logistic when ``table.classes``
    names the target's two labels); ``test`` (raw rows) is encoded alike."""
    shares, notes = encode_owners(frames, table)
    test_set = encode_frame(test, table, "test")[0] if test is not None else None
    logistic = table.classes is not None
    result = simulate_shares(
        config,
        "logistic" if logistic else "linear",
        "classification" if logistic else "regression",
        shares,
        test_set,
    )
    result.table = model_table(table, result)
    return TableRun(result, shares, notes)


def model_table(table: TableSpec, result: SimulationResult) -> dict[str, Any]:
    """The request's table as the trained model carries it (to encode raw rows)."""
    out: dict[str, Any] = {
        "features": [*table.numeric, *table.categorical],
        "missing": list(table.may_be_missing),
        "categorical": {k: list(v) for k, v in table.categorical.items()},
    }
    if not table.indicator:
        out["missing_indicator"] = False
        out["impute_means"] = result.impute_means
    return out


def run_table_simulation(
    config: SimulationConfig,
    missing: Sequence[str] = (),
    categorical: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[RoundRecord], None] | None = None,
    missing_indicator: bool = True,
) -> TableRun:
    """``deltaml simulate --dataset CSV --missing … --categorical …``: the CSV's rows
    (target ``config.target`` or the last column, every other column a feature) dealt
    out to ``config.owners`` owners after a seeded test split, each owner's share
    encoded as a request naming ``missing`` and ``categorical`` would have it.

    A logistic model reads the target's two labels in sorted order (negative first).
    The whole file is checked first, so an error names the file, the column and its row.
    """
    label = _one_line(str(config.dataset))
    names, cells, _ = _read_table(label, config.dataset)
    target = config.target or names[-1]
    if target not in names:
        raise DataError(f"{label}: no target column {target!r}")
    columns = {
        name: [None if row[j].lower() in _MISSING_TOKENS else row[j] for row in cells]
        for j, name in enumerate(names)
    }
    requirements: dict[str, Any] = check_requirements(
        {
            "features": [n for n in names if n != target],
            "target": target,
            "owners": config.owners,
            "missing": list(missing),
            "categorical": {k: list(v) for k, v in (categorical or {}).items()},
            "missing_indicator": missing_indicator,
        }
    )
    if config.model == "logistic":
        labels = sorted({c for c in columns[target] if c is not None})
        if len(labels) != 2:
            raise DataError(f"{label}: a logistic model needs a two-class target {target!r}")
        requirements["classes"] = labels
    table = TableSpec.from_requirements(requirements)
    encode_frame(columns, table, label)  # every problem named by file, column and row
    order = np.random.default_rng(config.seed).permutation(len(cells))
    n_test = max(1, round(len(cells) * config.test_fraction))

    def rows(index: np.ndarray) -> dict[str, list[Any]]:
        return {name: [values[i] for i in index] for name, values in columns.items()}

    frames = [rows(part) for part in np.array_split(order[n_test:], config.owners)]
    shares, notes = encode_owners(frames, table)
    test = encode_frame(rows(order[:n_test]), table, "test")[0]
    logistic = table.classes is not None
    result = simulate_shares(
        config,
        "logistic" if logistic else "linear",
        "classification" if logistic else "regression",
        shares,
        test,
        progress,
    )
    result.table = model_table(table, result)
    return TableRun(result, shares, notes)
