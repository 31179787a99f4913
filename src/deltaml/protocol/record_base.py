"""The machinery of typed transcript records: a frozen dataclass per body kind whose
:meth:`Record.from_body` checks each field's JSON type (the kinds: :mod:`deltaml.protocol.records`).

This module imports nothing but :mod:`deltaml.errors` (it is the protocol layer).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar, Union

from deltaml.errors import DeltaMLValueError

__all__ = ["OPTIONAL", "Record", "RecordError", "VectorRef"]

#: A vector reference as it appears in a body: ``{"sha256", "length", "exponent"}``.
VectorRef = dict[str, Any]

_R = TypeVar("_R", bound="Record")


class RecordError(DeltaMLValueError):
    """A record body that does not have the fields (or the types) its kind requires."""


@dataclasses.dataclass(frozen=True)
class Record:
    """A transcript record's body: one field per body field (``kind``/``key`` apart)."""

    KIND: ClassVar[str] = ""

    def to_body(self) -> dict[str, Any]:
        """The body's fields, as JSON values (the recorder adds ``kind`` and ``key``); an
        :data:`OPTIONAL` field only when it differs from its default."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not (f.metadata.get("optional") and getattr(self, f.name) == _default_of(f))
        }

    @classmethod
    def from_body(cls: type[_R], body: Mapping[str, Any]) -> _R:
        """Read a body of this kind, checking each field's presence and type."""
        if not isinstance(body, Mapping):
            raise RecordError(f"{cls.KIND}: the body is not an object")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in body:
                if f.metadata.get("optional"):
                    continue
                raise RecordError(f"{cls.KIND}.{f.name}: missing")
            value = body[f.name]
            if not _is(value, hints[f.name]):
                raise RecordError(
                    f"{cls.KIND}.{f.name}: expected {_name(hints[f.name])},"
                    f" got {type(value).__name__}"
                )
            values[f.name] = value
        return cls(**values)


#: The metadata of a field that bodies written before it was added do not have
#: (``dataclasses.field(default_factory=list, metadata=OPTIONAL)``): left out of a body
#: while it holds its default, so those bodies (and their digests) stay as they were.
OPTIONAL: Mapping[str, bool] = {"optional": True}


def _default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


_SCALARS: Mapping[Any, Any] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: type(v) is int,
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _is(value: Any, tp: Any) -> bool:
    """Whether the JSON value ``value`` has the type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_is(value, t) for t in typing.get_args(tp))
    if tp in _SCALARS:
        return bool(_SCALARS[tp](value))
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return isinstance(value, list | tuple) and all(_is(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(tp)
        return isinstance(value, Mapping) and all(
            _is(k, key) and _is(v, item) for k, v in value.items()
        )
    raise TypeError(f"unsupported record field type {tp!r}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
