"""The JSON wire format: every message kind round-trips exactly, and bad input fails cleanly.

Round trips are generated from the messages' own type hints, so a new message or
field is covered without touching this file (and a field type the strategy builder
does not know fails the coverage test instead of being skipped).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import math
import struct
import sys
import time
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaml.crypto import EncryptedVector, PrivateKey, PublicKey, generate_keypair
from deltaml.errors import DeltaMLTypeError, DeltaMLValueError
from deltaml.protocol import messages as m
from deltaml.protocol.messages import Message
from deltaml.services.wire import (
    MAX_WIRE_BYTES,
    MESSAGE_KINDS,
    check_json_depth,
    dumps,
    from_wire,
    loads,
    to_wire,
)

Keys = tuple[PublicKey, PrivateKey]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return generate_keypair(512, allow_test_keys=True)


@pytest.fixture(scope="module")
def other_keys() -> Keys:
    return generate_keypair(768, allow_test_keys=True)


@pytest.fixture(scope="module")
def pool(keys: Keys) -> list[EncryptedVector]:
    """Vectors of several lengths, exponents and bounds under one key (encrypting is slow)."""
    pk, _ = keys
    return [
        EncryptedVector.encrypt_ints(pk, [], 0),
        EncryptedVector.encrypt_ints(pk, [7], 40),
        EncryptedVector.encrypt_ints(pk, [-(2**150), 0, 2**149 + 3], 64),
        EncryptedVector.encrypt(pk, [0.5, -1.25, 3.0, 1e-9], 40),
    ]


# -- helpers --------------------------------------------------------------------------
def float_bits(value: float) -> bytes:
    return struct.pack("<d", value)


def assert_same(a: object, b: object, where: str = "") -> None:
    """Deep equality, with vectors compared by key, exponent, bound and ciphertexts
    (EncryptedVector has identity equality) and floats compared bit for bit."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, Message):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, EncryptedVector):
        assert isinstance(b, EncryptedVector)
        assert a.public_key == b.public_key, where
        assert (a.exponent, a.bound) == (b.exponent, b.bound), where
        assert [int(c) for c in a.ciphertexts] == [int(c) for c in b.ciphertexts], where
    elif isinstance(a, tuple):
        assert isinstance(b, tuple)
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float)
        assert float_bits(a) == float_bits(b), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def strategy_for(hint: object, pk: PublicKey, pool: list[EncryptedVector]) -> st.SearchStrategy:
    """Values of a declared field type (the messages' own grammar)."""
    if hint is int:
        return st.integers(-(2**70), 2**70)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return st.text(max_size=20)
    if hint is bool:
        return st.booleans()
    if hint is EncryptedVector:
        return st.sampled_from(pool)
    if hint is PublicKey:
        return st.just(pk)
    if isinstance(hint, type) and issubclass(hint, Message):
        return message_strategy(hint, pk, pool)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, __import__("types").UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner, pk, pool)
    if origin is tuple and args[1:] == (Ellipsis,):
        return st.lists(strategy_for(args[0], pk, pool), max_size=3).map(tuple)
    raise AssertionError(f"no strategy for {hint!r}: extend strategy_for")


def message_strategy(
    cls: type[Message], pk: PublicKey, pool: list[EncryptedVector]
) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls, **{f.name: strategy_for(hints[f.name], pk, pool) for f in dataclasses.fields(cls)}
    )


def json_round(value: Any) -> Any:
    """What the receiver gets: through JSON text, as strict as the sender can be."""
    return json.loads(json.dumps(value, allow_nan=False))


def simple_value(hint: object, pk: PublicKey, pool: list[EncryptedVector]) -> Any:
    """A fixed, valid value of a declared field type (for payloads to mutate)."""
    fixed: dict[object, Any] = {int: 3, float: 0.5, str: "ab", bool: True, PublicKey: pk}
    if hint in fixed:
        return fixed[hint]
    if hint is EncryptedVector:
        return pool[2]
    if isinstance(hint, type) and issubclass(hint, Message):
        return simple_message(hint, pk, pool)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args[0] is EncryptedVector:
        return (pool[1], pool[2])
    if origin is tuple:
        return (simple_value(args[0], pk, pool),) * 2
    (inner,) = [a for a in args if a is not type(None)]  # float | None
    return simple_value(inner, pk, pool)


def simple_message(cls: type[Message], pk: PublicKey, pool: list[EncryptedVector]) -> Message:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: simple_value(hints[f.name], pk, pool) for f in dataclasses.fields(cls)})


@pytest.fixture(scope="module")
def setup_message(keys: Keys, pool: list[EncryptedVector]) -> m.Setup:
    pk, _ = keys
    spec = m.TrainingSpec(model="ridge", rounds=5, l2=0.1, metric_noise=0.25)
    stats = m.PublicStats(
        count=100,
        means=(0.1, -2.5, 1e300),
        scales=(1.0, 5e-324, 3.0),
        target_mean=-0.0,
        target_scale=2.0,
        plaintexts=("ab", "0"),
        randomness=("ff",),
    )
    return m.Setup(
        role="trainer",
        spec=spec,
        stats=stats,
        public_key=pk,
        n_trainers=3,
        initial_model=pool[3],
    )


# -- the registry ---------------------------------------------------------------------
def all_subclasses(cls: type[Message]) -> set[type[Message]]:
    found: set[type[Message]] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def test_every_message_subclass_is_registered() -> None:
    modules = {
        m.__name__,
        "deltaml.protocol.exact_messages",  # solver: exact
        "deltaml.protocol.form_messages",  # metric_protocol: gram
    }
    defined = {c for c in all_subclasses(Message) if c.__module__ in modules}
    assert defined, "no messages found"
    assert set(MESSAGE_KINDS.values()) == defined
    for name, cls in MESSAGE_KINDS.items():
        assert name == cls.__name__
    assert "Message" not in MESSAGE_KINDS
    with pytest.raises(TypeError):
        MESSAGE_KINDS["Evil"] = m.Ack  # type: ignore[index]


def test_strategies_cover_every_field_type(keys: Keys, pool: list[EncryptedVector]) -> None:
    for cls in MESSAGE_KINDS.values():
        message_strategy(cls, keys[0], pool)  # raises for a type the tests do not know


# -- round trips ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(MESSAGE_KINDS))
def test_every_kind_round_trips(kind: str, keys: Keys, pool: list[EncryptedVector]) -> None:
    cls = MESSAGE_KINDS[kind]

    @FAST
    @given(message_strategy(cls, keys[0], pool))
    def check(msg: Message) -> None:
        wire = to_wire(msg)
        assert wire["kind"] == kind
        json.dumps(wire, allow_nan=False)  # JSON-serializable, strictly
        back = from_wire(json_round(wire))
        assert_same(msg, back)
        assert_same(msg, loads(dumps(msg)))
        # Without vectors (nor messages that may hold some), dataclass equality holds too.
        if not any(isinstance(v, EncryptedVector | tuple | Message) for v in vars(msg).values()):
            assert back == msg

    check()


def test_setup_round_trip_in_detail(setup_message: m.Setup, keys: Keys) -> None:
    wire = to_wire(setup_message)
    assert set(wire) == {"kind", "fields"}
    fields = wire["fields"]
    assert isinstance(fields, dict)
    assert fields["public_key"] == keys[0].to_dict()
    assert fields["spec"]["kind"] == "TrainingSpec"
    assert fields["stats"]["fields"]["means"] == [0.1, -2.5, 1e300]
    assert fields["initial_model"]["format"] == "deltaml-vectors/1"
    back = from_wire(json_round(wire))
    assert isinstance(back, m.Setup)
    assert_same(setup_message, back)
    assert back.spec == setup_message.spec and back.stats == setup_message.stats
    assert math.copysign(1.0, back.stats.target_mean) == -1.0
    assert back.stats.scales[1] == 5e-324


@pytest.mark.parametrize(
    "value", [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e22]
)
def test_floats_round_trip_bit_exactly(value: float) -> None:
    msg = m.MetricValue(round=1, value=value)
    back = loads(dumps(msg))
    assert isinstance(back, m.MetricValue)
    assert float_bits(back.value) == float_bits(value)


def test_int_in_a_float_field_travels_as_the_equal_float() -> None:
    msg = m.MetricValue(round=1, value=3)  # messages accept an int for a float
    back = loads(dumps(msg))
    assert isinstance(back, m.MetricValue)
    assert back.value == 3 and type(back.value) is float
    # A JSON integer in a float field (another client's choice) is read as a float.
    wire = to_wire(msg)
    wire["fields"]["value"] = 3  # type: ignore[index]
    again = from_wire(wire)
    assert isinstance(again, m.MetricValue)
    assert type(again.value) is float


def test_large_ints_and_optional_none() -> None:
    spec = m.TrainingSpec(model="x", rounds=2**80, l2=None, deposit_wei=10**40)
    assert loads(dumps(spec)) == spec
    assert to_wire(spec)["fields"]["l2"] is None  # type: ignore[index]


def test_vector_tuples_share_one_key_and_empty_tuples_are_lists(
    keys: Keys, pool: list[EncryptedVector]
) -> None:
    msg = m.Refreshed(round=2, vectors=(pool[1], pool[2], pool[0]))
    packed = to_wire(msg)["fields"]["vectors"]  # type: ignore[index]
    assert packed["key"] == keys[0].to_dict() and len(packed["vectors"]) == 3
    assert_same(msg, loads(dumps(msg)))
    empty = m.ContributionRequest(first_updates=())
    assert to_wire(empty)["fields"]["first_updates"] == []  # type: ignore[index]
    assert_same(empty, loads(dumps(empty)))


def test_decrypted_values_survive(keys: Keys, pool: list[EncryptedVector]) -> None:
    _, sk = keys
    msg = m.RoundRequest(round=1, total=pool[2])
    back = loads(dumps(msg))
    assert isinstance(back, m.RoundRequest)
    assert back.total.decrypt_ints(sk) == [-(2**150), 0, 2**149 + 3]


# -- keys -----------------------------------------------------------------------------
def test_fingerprint_only_vectors_need_known_keys(keys: Keys, pool: list[EncryptedVector]) -> None:
    pk, _ = keys
    msg = m.RoundRequest(round=4, total=pool[3])
    compact = dumps(msg, include_key=False)
    assert len(compact) < len(dumps(msg))
    assert "key" not in to_wire(msg, include_key=False)["fields"]["total"]  # type: ignore[index]
    with pytest.raises(DeltaMLValueError, match=r"^RoundRequest\.total: unknown public key"):
        loads(compact)
    for known in ([pk], {"buyer": pk}):
        back = loads(compact, known_keys=known)
        assert isinstance(back, m.RoundRequest)
        assert back.total.public_key is pk
        assert_same(msg, back)


def test_known_keys_are_shared_objects(setup_message: m.Setup, keys: Keys) -> None:
    pk, _ = keys
    clone = PublicKey(pk.n, pk.hs)
    back = loads(dumps(setup_message), known_keys=[clone])
    assert isinstance(back, m.Setup)
    assert back.public_key is clone and back.initial_model.public_key is clone
    # Without known keys, the message's key and its vector still share one object.
    alone = loads(dumps(setup_message))
    assert isinstance(alone, m.Setup)
    assert alone.initial_model.public_key is alone.public_key


def test_a_key_in_the_message_resolves_its_own_fingerprints(setup_message: m.Setup) -> None:
    back = loads(dumps(setup_message, include_key=False))
    assert_same(setup_message, back)


# -- encoding errors ------------------------------------------------------------------
def test_to_wire_refuses_what_json_cannot_carry(
    keys: Keys, other_keys: Keys, pool: list[EncryptedVector]
) -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(DeltaMLValueError, match=r"MetricValue\.value: expected a finite"):
            to_wire(m.MetricValue(round=1, value=bad))
    with pytest.raises(DeltaMLValueError, match=r"PublicStats\.means\[1\]"):
        to_wire(m.PublicStats(1, (0.0, math.nan), (), 0.0, 1.0))
    foreign = EncryptedVector.encrypt_ints(other_keys[0], [1], 0)
    with pytest.raises(DeltaMLValueError, match=r"Refreshed\.vectors: .*share one public key"):
        to_wire(m.Refreshed(round=1, vectors=(pool[1], foreign)))


def test_to_wire_refuses_what_is_not_a_registered_message() -> None:
    @dataclasses.dataclass(frozen=True)
    class Ack(Message):  # same name as a real kind, but not it
        note: str = ""

    with pytest.raises(DeltaMLTypeError, match="not a registered message kind"):
        to_wire(Ack())
    with pytest.raises(DeltaMLTypeError):
        to_wire({"kind": "Ack", "fields": {"note": ""}})  # type: ignore[arg-type]


# -- decoding errors ------------------------------------------------------------------
def valid(kind: str = "MetricValue") -> dict[str, Any]:
    msgs = {
        "MetricValue": m.MetricValue(round=3, value=0.5, rows=10),
        "Ack": m.Ack(note="hi"),
    }
    return json_round(to_wire(msgs[kind]))


def mutated(change: Any) -> dict[str, Any]:
    data = valid()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ([], r"^message: expected a JSON object, got list$"),
        ("Ack", r"^message: expected a JSON object, got str$"),
        (None, r"^message: expected a JSON object, got null$"),
        ({"kind": "Ack"}, r"^message: expected an object with exactly 'kind' and 'fields'$"),
        ({"kind": "Ack", "fields": {}, "x": 1}, r"exactly 'kind' and 'fields'"),
        ({"kind": 3, "fields": {}}, r"^message: kind must be a string, got int$"),
        ({"kind": "Nope", "fields": {}}, r"^message: unknown message kind 'Nope'$"),
        ({"kind": "Message", "fields": {}}, r"unknown message kind 'Message'"),
        ({"kind": "Ack", "fields": []}, r"^Ack: fields must be a JSON object, got list$"),
        ({"kind": "Ack", "fields": {}}, r"^Ack\.note: missing field$"),
        ({"kind": "Ack", "fields": {"note": "", "extra": 1}}, r"^Ack: unknown field 'extra'$"),
        ({"kind": "Ack", "fields": {"note": 5}}, r"^Ack\.note: expected str, got int$"),
    ],
)
def test_structural_errors(data: object, pattern: str) -> None:
    with pytest.raises(DeltaMLValueError, match=pattern):
        from_wire(data)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("round", "3", r"^MetricValue\.round: expected int, got str$"),
        ("round", True, r"^MetricValue\.round: expected int, got bool$"),
        ("round", 3.0, r"^MetricValue\.round: expected int, got float$"),
        ("round", None, r"^MetricValue\.round: expected int, got null$"),
        ("value", "0.5", r"^MetricValue\.value: expected float, got str$"),
        ("value", False, r"^MetricValue\.value: expected float, got bool$"),
        ("value", math.nan, r"^MetricValue\.value: expected a finite float, got nan$"),
        ("value", math.inf, r"^MetricValue\.value: expected a finite float, got inf$"),
        ("value", -math.inf, r"expected a finite float, got -inf"),
        ("value", 10**400, r"^MetricValue\.value: integer too large for a float$"),
        ("plaintexts", "ab", r"^MetricValue\.plaintexts: expected a list, got str$"),
        ("plaintexts", ["a", 1], r"^MetricValue\.plaintexts\[1\]: expected str, got int$"),
        ("plaintexts", {"0": "a"}, r"expected a list, got object"),
    ],
)
def test_type_errors_name_kind_and_field(field: str, value: object, pattern: str) -> None:
    data = valid()
    data["fields"][field] = value
    with pytest.raises(DeltaMLValueError, match=pattern):
        from_wire(data)


def test_bool_fields_refuse_ints(keys: Keys) -> None:
    stats = json_round(
        to_wire(m.StatsRequest(include_target=True, public_key=keys[0], base_exponent=40))
    )
    stats["fields"]["include_target"] = 1
    with pytest.raises(DeltaMLValueError, match=r"^StatsRequest\.include_target: expected bool"):
        from_wire(stats)


def test_nested_errors_carry_the_path(setup_message: m.Setup) -> None:
    data = json_round(to_wire(setup_message))
    bad = copy.deepcopy(data)
    bad["fields"]["spec"]["fields"]["rounds"] = "5"
    with pytest.raises(DeltaMLValueError, match=r"^Setup\.spec\.rounds: expected int, got str$"):
        from_wire(bad)
    bad = copy.deepcopy(data)
    bad["fields"]["stats"]["fields"]["means"][2] = None
    with pytest.raises(DeltaMLValueError, match=r"^Setup\.stats\.means\[2\]: expected float"):
        from_wire(bad)
    bad = copy.deepcopy(data)
    bad["fields"]["spec"] = bad["fields"]["stats"]
    with pytest.raises(
        DeltaMLValueError, match=r"^Setup\.spec: expected a TrainingSpec, got PublicStats$"
    ):
        from_wire(bad)
    bad = copy.deepcopy(data)
    del bad["fields"]["stats"]["fields"]["count"]
    with pytest.raises(DeltaMLValueError, match=r"^Setup\.stats\.count: missing field$"):
        from_wire(bad)


def test_malformed_keys(setup_message: m.Setup, keys: Keys) -> None:
    pk, _ = keys
    data = json_round(to_wire(setup_message))
    cases: list[tuple[object, str]] = [
        ("abc", "exactly 'n' and 'hs'"),
        ({"n": format(pk.n, "x")}, "exactly 'n' and 'hs'"),
        ({"n": "xyz", "hs": "1"}, "key n must be a hex string"),
        ({"n": 5, "hs": "1"}, "key n must be a hex string"),
        ({"n": "", "hs": "1"}, "key n must be a hex string"),
        ({"n": "f" * 10_000, "hs": "1"}, "key n must be a hex string"),
        ({"n": format(pk.n, "x"), "hs": "0"}, "randomness base out of range"),
        ({"n": format(pk.n + 1, "x"), "hs": "2"}, "not a Paillier modulus"),
        ({"n": format(pk.n * 3, "x"), "hs": "2"}, "unsupported key size"),
        ({"n": format(pk.n, "x"), "hs": format(pk.n, "x")}, "not coprime"),
    ]
    for value, message in cases:
        bad = copy.deepcopy(data)
        bad["fields"]["public_key"] = value
        with pytest.raises(DeltaMLValueError, match=r"^Setup\.public_key: ") as info:
            from_wire(bad)
        assert message in str(info.value)
        assert "\n" not in str(info.value)


def test_malformed_vectors_are_delegated_and_named(keys: Keys, pool: list[EncryptedVector]) -> None:
    pk, _ = keys
    data = json_round(to_wire(m.RoundRequest(round=1, total=pool[2])))
    vector = data["fields"]["total"]["vectors"][0]
    blob = base64.b64decode(vector["ciphertexts"])

    def expect(change: Any, message: str) -> None:
        bad = copy.deepcopy(data)
        change(bad["fields"]["total"])
        with pytest.raises(DeltaMLValueError, match=r"^RoundRequest\.total: ") as info:
            from_wire(bad)
        assert message in str(info.value)

    def set_vector(name: str, value: object) -> Any:
        return lambda total: total["vectors"][0].__setitem__(name, value)

    expect(set_vector("ciphertexts", base64.b64encode(blob[:-1]).decode()), "bytes of ciphertexts")
    expect(set_vector("ciphertexts", "!!!"), "not valid base64")
    expect(set_vector("exponent", -1), "exponent must be")
    expect(set_vector("bound", format(pk.n, "x")), "bound")
    expect(set_vector("length", 2), "expected 2 ×")
    expect(lambda total: total.pop("key"), "exactly one of 'key' and 'key_fingerprint'")
    expect(lambda total: total.__setitem__("format", "v0"), "unsupported vector message format")
    expect(lambda total: total["vectors"].append(total["vectors"][0]), "exactly one vector, got 2")
    expect(lambda total: total.__setitem__("vectors", []), "exactly one vector, got 0")
    with pytest.raises(DeltaMLValueError, match=r"^RoundRequest\.total: .*JSON object"):
        from_wire({"kind": "RoundRequest", "fields": {"round": 1, "total": []}})

    tuples = json_round(to_wire(m.Refreshed(round=1, vectors=(pool[1],))))
    tuples["fields"]["vectors"]["vectors"] = []
    with pytest.raises(DeltaMLValueError, match=r"^Refreshed\.vectors: an empty tuple .* \[\]$"):
        from_wire(tuples)


def test_errors_are_one_line_and_short() -> None:
    huge = "K" * 100_000
    with pytest.raises(DeltaMLValueError) as info:
        from_wire({"kind": huge, "fields": {}})
    assert len(str(info.value)) < 120 and "\n" not in str(info.value)
    with pytest.raises(DeltaMLValueError) as info:
        from_wire({"kind": "Ack", "fields": {"note": "", huge: 1}})
    assert len(str(info.value)) < 120


# -- bytes ----------------------------------------------------------------------------
def test_dumps_is_compact_ascii_json() -> None:
    msg = m.Ack(note="grüße \ud800")  # a lone surrogate survives as an escape
    raw = dumps(msg)
    assert raw.isascii() and b", " not in raw and b": " not in raw
    assert loads(raw) == msg
    assert loads(bytearray(raw)) == msg and loads(memoryview(raw)) == msg


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (b"", r"^invalid JSON: Expecting value"),
        (b"{", r"^invalid JSON: "),
        (b"\xff\xfe", r"^message is not valid UTF-8$"),
        (b'{"kind": "MetricValue", "fields": {"round": 1, "value": NaN}}', r"NaN is not allowed"),
        (b'{"kind": "MetricValue", "fields": {"round": 1, "value": Infinity}}', "Infinity"),
        (b'{"kind": "Ack", "kind": "Ack", "fields": {}}', r"duplicate name 'kind'"),
        (b"[" * 100_000 + b"]" * 100_000, r"^invalid JSON: nested deeper than 32 levels$"),
        (b"[" * 100_000, r"^invalid JSON: nested deeper than 32 levels$"),
        (b'{"a":' * 50_000, r"^invalid JSON: nested deeper than 32 levels$"),
        (b'{"kind": "Ack", "fields": {"note": ' + b"9" * 5000 + b"}}", r"^invalid JSON: "),
        (
            dumps(m.MetricValue(round=1, value=1.5)).replace(b"1.5", b"1e400"),
            "finite float, got inf",
        ),
        (b'"Ack"', r"^message: expected a JSON object, got str$"),
    ],
)
def test_loads_errors(raw: bytes, pattern: str) -> None:
    with pytest.raises(DeltaMLValueError, match=pattern):
        loads(raw)


def test_depth_guard_counts_only_structure() -> None:
    """The parser itself would crash the process on deep input (py_ecc lifts the
    recursion limit), so the guard must be exact about what counts as nesting."""
    assert sys.getrecursionlimit() >= 1000
    check_json_depth(b"[" * 32 + b"]" * 32)
    with pytest.raises(DeltaMLValueError, match="deeper than 32"):
        check_json_depth(b"[" * 33 + b"]" * 33)
    check_json_depth(b"[" * 3 + b"]" * 3, max_depth=3)
    # Brackets in strings (escaped quotes included) are not structure.
    check_json_depth(b'["' + b"[{" * 1000 + b'\\", "\\"[[["]')
    check_json_depth(b'{"a": "\\"' + b"[" * 1000 + b'"}')
    # Shallow but wide is fine; deep after a long prefix is caught across chunks.
    check_json_depth(b"[" + b"[]," * 2_000_000 + b"[]]")
    with pytest.raises(DeltaMLValueError):
        check_json_depth(b"[" + b"[]," * 600_000 + b"[" * 40 + b"]" * 41)
    # A note at depth 32 of nothing still reaches the message check, not the guard.
    with pytest.raises(DeltaMLValueError, match="expected a JSON object"):
        loads(b"[" * 32 + b"]" * 32)


def test_depth_guard_is_fast_on_the_largest_input() -> None:
    raw = b"[" * (MAX_WIRE_BYTES // 2) + b"]" * (MAX_WIRE_BYTES // 2)
    started = time.perf_counter()
    with pytest.raises(DeltaMLValueError, match="deeper than"):
        loads(raw)
    assert time.perf_counter() - started < 10


def test_loads_size_limit() -> None:
    raw = dumps(m.Ack(note="x" * 1000))
    assert MAX_WIRE_BYTES == 64 * 1024 * 1024
    assert loads(raw, max_bytes=len(raw)) == m.Ack(note="x" * 1000)
    with pytest.raises(DeltaMLValueError, match=r"exceeds the limit of 1000$"):
        loads(raw, max_bytes=1000)
    with pytest.raises(DeltaMLTypeError):
        loads("{}")  # type: ignore[arg-type]


# -- fuzzing: only DeltaMLValueError may escape ----------------------------------------
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: from_wire must refuse them itself
    | st.text(max_size=12)
    | st.sampled_from(sorted(MESSAGE_KINDS))
    | st.sampled_from(["kind", "fields", "format", "key", "vectors", "deltaml-vectors/1"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["kind", "fields"]), children, max_size=4
        )
    ),
    max_leaves=20,
)


def only_value_errors(call: Any) -> None:
    try:
        call()
    except DeltaMLValueError as exc:
        text = str(exc)
        assert text and "\n" not in text


@FUZZ
@given(json_values)
def test_random_json_never_raises_anything_else(data: object) -> None:
    only_value_errors(lambda: from_wire(data))
    only_value_errors(lambda: from_wire({"kind": "Setup", "fields": data}))
    try:
        raw = json.dumps(data).encode()
    except ValueError:
        return
    only_value_errors(lambda: loads(raw))


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    only_value_errors(lambda: loads(raw))


def _walk(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair inside ``data``."""
    found: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((data, key))
            found.extend(_walk(value))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.append((data, index))
            found.extend(_walk(value))
    return found


@pytest.fixture(scope="module")
def valid_payloads(keys: Keys, pool: list[EncryptedVector]) -> list[Any]:
    """One valid wire form of every kind."""
    return [
        json_round(to_wire(simple_message(cls, keys[0], pool)))
        for _, cls in sorted(MESSAGE_KINDS.items())
    ]


@FUZZ
@given(st.data())
def test_mutated_payloads_never_raise_anything_else(
    valid_payloads: list[Any], data: st.DataObject
) -> None:
    payload = copy.deepcopy(data.draw(st.sampled_from(valid_payloads)))
    for _ in range(data.draw(st.integers(1, 3))):
        spots = _walk(payload)
        if not spots:
            break
        container, key = data.draw(st.sampled_from(spots))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "string-edit"]))
        if action == "replace":
            container[key] = data.draw(json_values)
        elif action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[data.draw(st.text(max_size=6))] = data.draw(json_values)
        elif action == "add":
            container.append(data.draw(json_values))
        elif isinstance(container[key], str) and container[key]:
            text = container[key]
            cut = data.draw(st.integers(0, len(text) - 1))
            container[key] = text[:cut] + data.draw(st.text(max_size=3)) + text[cut + 1 :]
    only_value_errors(lambda: from_wire(payload))
    try:
        raw = json.dumps(payload).encode()
    except ValueError:
        return
    only_value_errors(lambda: loads(raw))
