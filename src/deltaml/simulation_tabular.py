"""A simulation on owners' mixed tables: empty cells and categorical columns (issue 13).

Each owner's rows (a :class:`pandas.DataFrame`) are encoded as the request's
:class:`~deltaml.learning.tabular.TableSpec` says — what an owner node does with its
CSV (:func:`deltaml.services.owner_data.request_dataset`) — and the encoded shares run
through the roles like any other (:func:`deltaml.simulation.simulate_shares`). The
trained model names the encoded columns; predict on raw rows with
:func:`deltaml.learning.tabular.encode_features` and the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deltaml.learning.data import Dataset
from deltaml.learning.tabular import TableSpec, encode_frame, encoding_notes
from deltaml.simulation import SimulationConfig, SimulationResult, owner_ids, simulate_shares

__all__ = ["TableRun", "encode_owners", "simulate_frames"]


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
    return TableRun(result, shares, notes)
