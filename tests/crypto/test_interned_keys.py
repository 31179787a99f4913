"""One object per public key, and its randomizer thread stops when the key goes."""

from __future__ import annotations

import gc
import threading

from deltaml.crypto import generate_keypair
from deltaml.crypto.paillier import PublicKey
from deltaml.protocol import messages as m
from deltaml.services import wire

POOL_THREAD = "deltaml-randomizers"


def _pool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == POOL_THREAD and t.is_alive()}


def _use(key: PublicKey) -> None:
    for _ in range(60):  # past the uses after which a key builds its table and pool
        key.random_factor()


def test_a_key_decoded_five_times_is_one_object_with_one_thread() -> None:
    before = _pool_threads()
    public, _ = generate_keypair(1024, allow_test_keys=True)
    data = wire.dumps(m.StatsRequest(False, public, 40))
    # Decoded without known keys, as a party reads each new message.
    keys = [wire.loads(data).public_key for _ in range(5)]  # type: ignore[attr-defined]
    keys.append(PublicKey.from_dict(public.to_dict()))
    assert all(k is public for k in keys)
    for k in keys:
        _use(k)
    # counted by identity: an earlier test's key may drop its thread meanwhile
    assert len(_pool_threads() - before) == 1


def test_the_pool_thread_stops_when_its_key_is_dropped() -> None:
    public = generate_keypair(1024, allow_test_keys=True)[0]  # the private key holds it too
    _use(public)
    pool = public._pool
    assert pool is not None and pool.thread.is_alive()
    del public
    gc.collect()
    pool.thread.join(timeout=30)
    assert not pool.thread.is_alive()
