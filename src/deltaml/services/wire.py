"""JSON wire format of every :class:`~deltaml.protocol.messages.Message`.

Parties on different machines exchange exactly the typed messages of
:mod:`deltaml.protocol.messages`; this module turns them into JSON and back, and is
the one place where bytes from another party become Python objects. A message
travels as::

    {"kind": "RoundRequest", "fields": {"round": 3, "total": <vector message>}}

Field values by declared type:

==============================  ===================================================
``int`` / ``bool`` / ``str``    the JSON value (``bool`` is never an ``int`` here)
``float``                       a finite JSON number, written as Python's shortest
                                round-tripping ``repr`` so it reads back bit-exactly
``float | None``                a number or ``null``
``tuple[T, ...]``               a JSON array of ``T`` (nested tuples nest arrays)
``EncryptedVector``             a :func:`~deltaml.crypto.serialization.pack_vectors`
                                object holding one vector
``tuple[EncryptedVector, ...]`` one ``pack_vectors`` object holding them all (the key
                                once), or ``[]`` for an empty tuple (a packed message
                                cannot be empty: it would have no key)
``PublicKey``                   ``{"n": "<hex>", "hs": "<hex>"}``
a nested message                its own ``{"kind", "fields"}`` envelope
==============================  ===================================================

Decoding is strict, because the input comes from another party: every field must
be present (defaults are not filled in, so a sender's omission is an error rather
than a silent default), no unknown field is allowed, no type is coerced except a
JSON integer in a ``float`` field (JSON does not distinguish ``1`` from ``1.0``),
and NaN and infinities are refused. :func:`from_wire` and :func:`loads` raise
:class:`~deltaml.errors.DeltaMLValueError` with one line naming the kind and the
field (``"Setup.spec.rounds: expected int, got str"``) and never another exception
type, whatever JSON they are given. The :class:`~deltaml.errors.DeltaMLTypeError`
that a message's own ``__post_init__`` raises is translated to
:class:`~deltaml.errors.DeltaMLValueError` too, so that a service needs to catch
one type only (and map it to HTTP 400); :class:`~deltaml.errors.DeltaMLTypeError`
is kept for programming errors on the encoding side (passing something that is
not a registered message to :func:`to_wire`).

Keys: a vector object normally carries its public key, which keeps every message
self-contained. With ``to_wire(..., include_key=False)`` vectors carry only the
key's fingerprint; the receiver then passes the key in ``known_keys``. A key
decoded earlier in the same message (``Setup.public_key`` precedes
``Setup.initial_model``) also resolves later fingerprints. Passing ``known_keys``
is worthwhile even for self-contained messages: an equal key decodes to the known
object, which shares its precomputed randomness tables.

The registry :data:`MESSAGE_KINDS` is built from the ``Message`` subclasses that
:mod:`deltaml.protocol.messages` defines, and every field's codec is compiled at
import, so a new message or a field type this format cannot carry fails loudly at
import instead of on the first request.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from deltaml.crypto import EncryptedVector, PublicKey
from deltaml.errors import DeltaMLError, DeltaMLTypeError, DeltaMLValueError
from deltaml.protocol import exact_messages as _exact_messages
from deltaml.protocol import form_messages as _form_messages
from deltaml.protocol import messages as _messages
from deltaml.protocol.json_limits import MAX_JSON_DEPTH, check_json_depth
from deltaml.protocol.messages import Message
from deltaml.services.wire_codecs import (
    _ENVELOPE,
    KnownKeys,
    _Bool,
    _Codec,
    _Decoding,
    _fail,
    _Float,
    _index_keys,
    _Int,
    _Key,
    _Optional,
    _short,
    _Str,
    _Tuple,
    _type_name,
    _Vector,
    _Vectors,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_WIRE_BYTES",
    "MESSAGE_KINDS",
    "KnownKeys",
    "check_json_depth",
    "dumps",
    "from_wire",
    "loads",
    "to_wire",
]

#: Default largest encoded message :func:`loads` accepts. A 2048-bit ciphertext is
#: about 683 base64 characters, so this leaves room for ~90,000 of them — far more
#: than any round needs — while bounding what one request can make a party parse.
MAX_WIRE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Nested(_Codec):
    """A message inside a message, in its own envelope (looked up late: any order works)."""

    cls: type[Message]

    def encode(self, value: object, where: str, include_key: bool) -> object:
        if type(value) is not self.cls:
            raise DeltaMLTypeError(
                f"{where} must be a {self.cls.__name__}, got {_type_name(value)}"
            )
        return _encode_message(typing.cast(Message, value), where, include_key)

    def decode(self, data: object, where: str, ctx: _Decoding) -> object:
        return _decode_message(data, where, ctx, expected=self.cls)


_SIMPLE: dict[object, _Codec] = {int: _Int(), bool: _Bool(), str: _Str(), float: _Float()}


def _compile(hint: object, where: str) -> _Codec:
    """The codec of a declared field type; refuses (at import) any type it cannot carry."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    if hint is EncryptedVector:
        return _Vector()
    if hint is PublicKey:
        return _Key()
    if isinstance(hint, type) and issubclass(hint, Message) and hint is not Message:
        return _Nested(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(options) == 1:
            return _Optional(_compile(options[0], where))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if args[0] is EncryptedVector:
            return _Vectors()
        return _Tuple(_compile(args[0], where))
    raise DeltaMLTypeError(
        f"{where} has type {hint!r}, which the wire format cannot carry: "
        "add a codec in deltaml/services/wire.py"
    )


@dataclass(frozen=True)
class _Schema:
    cls: type[Message]
    fields: tuple[tuple[str, _Codec], ...]
    names: frozenset[str]


def _message_classes() -> dict[str, type[Message]]:
    """Every concrete ``Message`` subclass that :mod:`deltaml.protocol.messages` and
    :mod:`deltaml.protocol.exact_messages` (``solver: exact``) and
    :mod:`deltaml.protocol.form_messages` (``metric_protocol: gram``) define."""
    found: dict[str, type[Message]] = {}
    for module in (_messages, _exact_messages, _form_messages):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Message)
                and value is not Message
                and value.__module__ == module.__name__
            ):
                found[value.__name__] = value
    return found


def _build_schemas(classes: Mapping[str, type[Message]]) -> dict[type[Message], _Schema]:
    schemas: dict[type[Message], _Schema] = {}
    for name, cls in classes.items():
        hints = typing.get_type_hints(cls)
        fields = tuple(
            (f.name, _compile(hints[f.name], f"{name}.{f.name}")) for f in dataclasses.fields(cls)
        )
        schemas[cls] = _Schema(cls, fields, frozenset(n for n, _ in fields))
    return schemas


#: Every message kind by name (``"RoundRequest"`` → :class:`RoundRequest`), read-only.
MESSAGE_KINDS: Mapping[str, type[Message]] = types.MappingProxyType(_message_classes())
_SCHEMAS = _build_schemas(MESSAGE_KINDS)


# -- messages -------------------------------------------------------------------------
def _encode_message(msg: Message, where: str, include_key: bool) -> dict[str, object]:
    schema = _SCHEMAS[type(msg)]
    return {
        "kind": schema.cls.__name__,
        "fields": {
            name: codec.encode(getattr(msg, name), f"{where}.{name}", include_key)
            for name, codec in schema.fields
        },
    }


def _decode_message(
    data: object, where: str, ctx: _Decoding, expected: type[Message] | None
) -> Message:
    """Decode an envelope; ``where`` names it in errors ("" at the top: the kind does)."""
    if not isinstance(data, Mapping):
        raise _fail(where or "message", f"expected a JSON object, got {_type_name(data)}")
    if set(data) != _ENVELOPE:
        raise _fail(where or "message", "expected an object with exactly 'kind' and 'fields'")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise _fail(where or "message", f"kind must be a string, got {_type_name(kind)}")
    cls = MESSAGE_KINDS.get(kind)
    if cls is None:
        raise _fail(where or "message", f"unknown message kind {_short(kind)}")
    if expected is not None and cls is not expected:
        raise _fail(where, f"expected a {expected.__name__}, got {kind}")
    base = where or kind
    fields = data["fields"]
    if not isinstance(fields, Mapping):
        raise _fail(base, f"fields must be a JSON object, got {_type_name(fields)}")
    schema = _SCHEMAS[cls]
    extra = [name for name in fields if name not in schema.names]
    if extra:
        name = extra[0]
        label = _short(name) if isinstance(name, str) else _type_name(name)
        raise _fail(base, f"unknown field {label}")
    for name, _ in schema.fields:
        if name not in fields:
            raise _fail(f"{base}.{name}", "missing field")
    values = {
        name: codec.decode(fields[name], f"{base}.{name}", ctx) for name, codec in schema.fields
    }
    try:
        return cls(**values)
    except DeltaMLError as exc:  # __post_init__'s DeltaMLTypeError: the checks above missed it
        raise _fail(base, str(exc)) from None


def to_wire(msg: Message, *, include_key: bool = True) -> dict[str, object]:
    """``{"kind": ..., "fields": {...}}``: a JSON-serializable form of ``msg``.

    ``include_key=False`` sends only key fingerprints in vectors (about a sixth
    smaller for one vector); the receiver must then know the key. Raises
    :class:`DeltaMLTypeError` if ``msg`` is not a registered message, and
    :class:`DeltaMLValueError` for values JSON cannot carry faithfully (a NaN or
    infinite float) or vectors of different keys in one tuple.
    """
    cls = type(msg)
    if MESSAGE_KINDS.get(cls.__name__) is not cls:
        raise DeltaMLTypeError(f"not a registered message kind: {cls.__qualname__}")
    return _encode_message(msg, cls.__name__, include_key)


def from_wire(data: object, *, known_keys: KnownKeys | None = None) -> Message:
    """The message that :func:`to_wire` made ``data`` from, after validating everything.

    ``data`` is a decoded JSON value (dicts, lists, str, int, float, bool, None).
    ``known_keys`` resolves fingerprint-only vectors and lets equal keys decode to
    the known objects. Raises :class:`DeltaMLValueError` (one line, naming the kind
    and field) on any defect, and nothing else.
    """
    return _decode_message(data, "", _Decoding(_index_keys(known_keys)), expected=None)


# -- bytes ----------------------------------------------------------------------------
def dumps(msg: Message, *, include_key: bool = True) -> bytes:
    """``msg`` as compact UTF-8 JSON (ASCII in fact: lone surrogates in strings survive)."""
    return json.dumps(
        to_wire(msg, include_key=include_key),
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    ).encode("ascii")


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object hook refusing repeated names: two readers must not see two messages."""
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate name {_short(name)} in an object")
        result[name] = value
    return result


def loads(
    data: bytes | bytearray | memoryview,
    *,
    known_keys: KnownKeys | None = None,
    max_bytes: int = MAX_WIRE_BYTES,
) -> Message:
    """Parse UTF-8 JSON of at most ``max_bytes`` bytes and :func:`from_wire` it.

    Raises :class:`DeltaMLValueError` when the input is too large, is not UTF-8 or
    not JSON (including NaN/Infinity literals, duplicate object names and nesting
    deeper than :data:`MAX_JSON_DEPTH`), or is not a valid message.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DeltaMLTypeError(f"loads expects bytes, got {type(data).__name__}")
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size > max_bytes:
        raise DeltaMLValueError(f"message of {size} bytes exceeds the limit of {max_bytes}")
    raw = bytes(data)
    check_json_depth(raw)
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise DeltaMLValueError("message is not valid UTF-8") from None
    except RecursionError:  # unreachable after check_json_depth; kept as a second guard
        raise DeltaMLValueError("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int literals beyond the digit limit
        raise DeltaMLValueError(f"invalid JSON: {exc}") from None
    return from_wire(value, known_keys=known_keys)
