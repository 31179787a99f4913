"""Attacks on what the buyer decrypts in the Gram metric (``metric_protocol: gram``;
roles/form_holder.py): it must never become a decryption oracle.

- a remixer that passes on a ciphertext of its choosing (another validator's Gram entry,
  a model) instead of its input plus its mask: it cannot prove it knows what it added;
- an aggregator asking for a batch twice, for a round the spec does not evaluate, or
  for contributions the request did not ask for;
- an aggregator that has the remixer combine other terms than the buyer's (a chosen
  ciphertext to decrypt), or shifts its share (so the published value would carry it):
  the buyer decrypts only forms over its own terms, and publishes none out of range;
- an aggregator that names the remixer a smaller scale than the rules give, to narrow the
  mask that hides the vectors from it;
- an aggregator that hands the remixer forged products ``Enc(Hũ)·Enc(c·e_j)``, so that
  the remixer's share carries ``c`` times its own mask entry and the published metric
  would give that mask away (and with it the model): beyond the honest forms' limit, so
  never published.

Each test was run with its defence removed (the remixer's scale check, the buyer's proof
check, answer-once guard,
schedule and contributions checks, terms-digest check and range check — the last
also with the looser limit it had before, ``(D·K·2·max|ũ|)²`` times ``H``'s bound,
under which the forged products' metric was published) and failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from deltaml.crypto import EncryptedVector
from deltaml.errors import ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import form_messages as fm
from deltaml.protocol import messages as m
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport.base import Transport

CONFIG = SimulationConfig(
    rounds=3,
    eval_every=3,
    key_bits=1024,
    allow_test_keys=True,
    chain=False,
    metric_protocol="gram",
)


class _Tamper(Transport):
    """The aggregator's outgoing messages, rewritten by ``tamper`` (it may send more)."""

    def __init__(self, inner: Transport, tamper: Callable[[Transport, str, m.Message], Any]):
        self.inner = inner
        self.tamper = tamper

    def request(self, party_id: str, message: m.Message) -> m.Message:
        return self.tamper(self.inner, party_id, message)  # type: ignore[no-any-return]

    def request_all(self, requests: Any) -> list[m.Message]:
        return [self.request(p, msg) for p, msg in requests]

    @property
    def cpu_seconds(self) -> Any:
        return self.inner.cpu_seconds


def _run(tamper: Any = None, **changes: Any) -> SimulationResult:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 5, seed=0)
    wrap = {"transport_wrapper": lambda inner: _Tamper(inner, tamper)} if tamper else {}
    config = dataclasses.replace(CONFIG, **changes)
    return simulate_shares(config, "linear", "regression", shares, None, **wrap)


def test_a_remixer_passing_on_a_ciphertext_of_its_choosing_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import forms

    honest = forms.add_masks_with_proof

    def substitute(key: Any, context: bytes, vectors: Any, share: Any) -> Any:
        out, proof = honest(key, context, vectors, share)
        out[0][0] = key.raw_encrypt(42)  # a ciphertext it wants the buyer to open
        return out, proof

    monkeypatch.setattr(forms, "add_masks_with_proof", substitute)
    with pytest.raises(ProtocolError, match="does not prove what it added"):
        _run()


def _twice(inner: Transport, party: str, msg: m.Message) -> m.Message:
    if isinstance(msg, fm.FormRequest):
        inner.request(party, msg)
    return inner.request(party, msg)


def test_a_batch_is_answered_once() -> None:
    with pytest.raises(ProtocolError, match="already answered"):
        _run(_twice)


def _relabel(label: str) -> Callable[[Transport, str, m.Message], m.Message]:
    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormRequest) and msg.label == "metric-0":
            msg = dataclasses.replace(msg, label=label)
        return inner.request(party, msg)

    return tamper


def test_a_round_the_spec_does_not_evaluate_is_refused() -> None:
    with pytest.raises(ProtocolError, match="round 2 has no evaluation"):
        _run(_relabel("metric-2"))


def test_contributions_are_refused_where_the_request_has_none() -> None:
    with pytest.raises(ProtocolError, match="did not ask for contributions"):
        _run(_relabel("contributions"), contributions=False)


def test_forms_over_other_terms_than_the_buyers_are_not_decrypted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The aggregator swaps the buyer's terms for a ciphertext of its choosing (here the
    masked vector's first entry) before the remixer sums them. The remixer refuses
    products the buyer did not sign; set that aside, the buyer still refuses to decrypt
    sums over other terms than its own."""
    from deltaml.roles import forms

    monkeypatch.setattr(forms.FormRemixer, "signed_by_buyer", lambda *args: True)

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormCombineRequest):
            chosen = EncryptedVector(
                msg.share.public_key, [msg.products.products[0].ciphertexts[0]], 0, 0
            )
            msg = dataclasses.replace(msg, products=dataclasses.replace(msg.products, terms=chosen))
            combined = inner.request(party, msg)  # the remixer signs the sum it made
            assert isinstance(combined, fm.FormCombined)
            # … and the aggregator has the buyer open it, as if the sum were honest
            return inner.request("buyer", fm.FormOpenRequest(msg.label, combined, party))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="not over the buyer's own terms"):
        _run(tamper)


def test_a_shifted_share_is_not_published() -> None:
    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormCombineRequest):
            key = msg.share.public_key
            shift = key.raw_encrypt(1 << 700)
            shifted = [c * shift % key.nsquare for c in msg.share.ciphertexts]
            msg = dataclasses.replace(msg, share=EncryptedVector(key, shifted, 0, 0))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="out of range"):
        _run(tamper)


def _forged_products(inner: Transport, party: str, msg: m.Message) -> m.Message:
    """``Enc(Hũ_0)`` times ``Enc(2^200)`` in its first entry: the remixer's share would
    then carry ``2^200`` times its own mask entry ``a²_0`` into the published metric,
    far above the honest forms, and ``a²_0`` would follow to the last bit."""
    if isinstance(msg, fm.FormCombineRequest) and msg.label == "metric-0":
        first = msg.products.products[0]
        key = first.public_key
        shift = key.raw_encrypt(1 << 200)
        forged = [first.ciphertexts[0] * shift % key.nsquare, *first.ciphertexts[1:]]
        products = (EncryptedVector(key, forged, 0, 0), *msg.products.products[1:])
        msg = dataclasses.replace(
            msg, products=dataclasses.replace(msg.products, products=products)
        )
    return inner.request(party, msg)


def test_forged_products_are_refused_by_the_remixer() -> None:
    with pytest.raises(ProtocolError, match="not signed by the buyer"):
        _run(_forged_products)


def test_forged_products_the_remixer_took_are_not_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second line: a remixer that did not check the buyer's signature — the buyer
    publishes no form beyond what honest vectors give (here ``2^200·a²_0`` is)."""
    from deltaml.roles import forms

    monkeypatch.setattr(forms.FormRemixer, "signed_by_buyer", lambda *args: True)
    with pytest.raises(ProtocolError, match="out of range"):
        _run(_forged_products)


def test_a_smaller_scale_named_to_the_remixer_is_refused() -> None:
    """Named scale 1 for the contributions (the rules give the encoded relaxation,
    about 2^33), the remixer's mask would be 33 bits narrower than the vectors it must
    hide from the aggregator: it sizes its mask by the rules' scale and refuses."""

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormMaskRequest) and msg.label == "contributions":
            msg = dataclasses.replace(msg, scale=1)
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="named at scale 1"):
        _run(tamper)
