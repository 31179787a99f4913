"""Attacks on what the buyer decrypts in the Gram metric (``metric_protocol: gram``;
roles/form_holder.py, roles/forms.py): it must never become a decryption oracle.

- a remixer that passes on a ciphertext of its choosing (another validator's Gram entry,
  a model) instead of its input plus its mask: it cannot prove it knows what it added;
- an aggregator asking for a batch twice, for a round the spec does not evaluate, or
  for contributions the request did not ask for;
- an aggregator that names other mask holders than the rule's (itself, say), or hands
  the holders other Gram matrices than the validators signed (its own ``Enc(X)``, so
  that the published forms would be ``uᵀXu`` at its choice of ``X``);
- an aggregator that hands the holders a ``ũ`` of its choosing (the forms would then
  publish ``H`` at chosen points), or has the remixer sum over one: the holders take
  only the buyer's signed ``ũ``, and the buyer decrypts only forms over its own;
- an aggregator that shifts the first share (so the published value would carry it):
  the buyer publishes no form out of range;
- an aggregator that names the holders a smaller scale than the rules give, to narrow
  the mask that hides the vectors from it.

Each test was run with its defence removed (the holders' scale check and buyer-signature
check, the buyer's holder, Gram-digest and proof checks, answer-once guard, schedule and
contributions checks, ũ-digest check and range check) and failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from deltaml.crypto import EncryptedVector
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import vector_digest
from deltaml.protocol import form_messages as fm
from deltaml.protocol import messages as m
from deltaml.simulation import SimulationResult
from deltaml.transport.base import Transport
from gram_testkit import run_gram


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


def _run(tamper: Any = None, owners: int = 5, **changes: Any) -> SimulationResult:
    wrapper = (lambda inner: _Tamper(inner, tamper)) if tamper else None
    return run_gram(owners, wrapper, **changes)


def _run_two(tamper: Any = None) -> SimulationResult:
    """Seven owners: two validators, so both mask holders are validators."""
    return _run(tamper, owners=7)


def test_a_remixer_passing_on_a_ciphertext_of_its_choosing_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.crypto import quadform

    honest = quadform.add_masks_with_proof
    calls: dict[bytes, int] = {}

    def substitute(key: Any, context: bytes, vectors: Any, share: Any) -> Any:
        out, proof = honest(key, context, vectors, share)
        calls[context] = calls.get(context, 0) + 1
        if calls[context] == 2:  # the second holder, the remixer
            out[0][0] = key.raw_encrypt(42)  # a ciphertext it wants the buyer to open
        return out, proof

    monkeypatch.setattr(quadform, "add_masks_with_proof", substitute)
    with pytest.raises(ProtocolError, match="does not prove what it added"):
        _run()


def test_other_holders_than_the_rules_are_refused() -> None:
    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormRequest):  # the aggregator claims the first mask
            msg = dataclasses.replace(msg, holders=("", msg.holders[1]))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="not masked by the holders the rule names"):
        _run_two(tamper)


def test_holders_handed_another_gram_matrix_are_refused() -> None:
    """The aggregator swaps one validator's share for ``Enc(X)`` of its own (keeping the
    validator's signature): the holders sum what they get, but sign its digest, and the
    buyer opens nothing whose holders summed other shares than the validators signed."""

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormMaskRequest):
            share = msg.shares[0]
            key = share.gram.public_key
            mine = [key.raw_encrypt(key.encode_signed(1 << 40)) for _ in share.gram.ciphertexts]
            forged = dataclasses.replace(share.gram, ciphertexts=mine)
            msg = dataclasses.replace(
                msg, shares=(dataclasses.replace(share, gram=forged), *msg.shares[1:])
            )
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="did not sum the validators' shares"):
        _run_two(tamper)


def _chosen_opened(opened: fm.FormOpened) -> fm.FormOpened:
    """The buyer's ``ũ`` with its first value replaced (its signature kept)."""
    return dataclasses.replace(opened, opened=("1", *opened.opened[1:]))


def test_a_u_tilde_of_the_aggregators_choosing_is_refused_by_the_holders() -> None:
    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormPrepareRequest | fm.FormShareRequest | fm.FormCombineRequest):
            msg = dataclasses.replace(msg, opened=_chosen_opened(msg.opened))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="not signed by the buyer"):
        _run_two(tamper)


def test_forms_over_another_u_tilde_than_the_buyers_are_not_decrypted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Set aside the holders' signature check: the buyer still refuses to decrypt forms
    over another ``ũ`` than its own."""
    from deltaml.roles import forms

    monkeypatch.setattr(forms.MaskHolder, "signed_by_buyer", lambda *args: True)

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormPrepareRequest | fm.FormShareRequest):
            msg = dataclasses.replace(msg, opened=_chosen_opened(msg.opened))
        if isinstance(msg, fm.FormCombineRequest):
            msg = dataclasses.replace(msg, opened=_chosen_opened(msg.opened))
            combined = inner.request(party, msg)  # the remixer signs the sum it made
            assert isinstance(combined, fm.FormCombined)
            # … and the aggregator has the buyer open it, as if it were over its ũ
            return inner.request("buyer", fm.FormOpenRequest(msg.label, combined, party))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="not over the buyer's own"):
        _run_two(tamper)


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


def test_a_shifted_share_is_not_published() -> None:
    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormCombineRequest):
            share = msg.share.share
            key = share.public_key
            shift = key.raw_encrypt(1 << 700)
            shifted = dataclasses.replace(
                share, ciphertexts=[c * shift % key.nsquare for c in share.ciphertexts]
            )
            msg = dataclasses.replace(msg, share=dataclasses.replace(msg.share, share=shifted))
            combined = inner.request(party, msg)
            assert isinstance(combined, fm.FormCombined)
            # (the aggregator holds the first mask here: the share is its own to name)
            opening = fm.FormOpenRequest(msg.label, combined, party, vector_digest(shifted))
            return inner.request("buyer", opening)
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="out of range"):
        _run(tamper)


def test_a_smaller_scale_named_to_a_holder_is_refused() -> None:
    """Named scale 1 for the contributions (the rules give the encoded relaxation,
    about 2^33), a holder's mask would be 33 bits narrower than the vectors it must
    hide: it sizes its mask by the rules' scale and refuses."""

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormMaskRequest) and msg.label == "contributions":
            msg = dataclasses.replace(msg, scale=1)
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="named at scale 1"):
        _run_two(tamper)


def _bent(vector: EncryptedVector) -> EncryptedVector:
    """``vector`` with ``Enc(2^60)`` added to its first ciphertext."""
    key = vector.public_key
    first = vector.ciphertexts[0] * key.raw_encrypt(1 << 60) % key.nsquare
    return dataclasses.replace(vector, ciphertexts=[first, *vector.ciphertexts[1:]])


def test_a_first_share_changed_in_transit_is_not_decrypted() -> None:
    """The aggregator adds a ciphertext of its own to the first holder's share on its
    way to the remixer, and names the buyer the share it changed: the first holder did
    not sign that one."""
    crosses: dict[str, fm.FormCross] = {}

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        reply = None
        if isinstance(msg, fm.FormCombineRequest):
            share = dataclasses.replace(msg.share, share=_bent(msg.share.share))
            combined = inner.request(party, dataclasses.replace(msg, share=share))
            assert isinstance(combined, fm.FormCombined)
            cross = crosses[msg.label]
            return inner.request(
                "buyer",
                fm.FormOpenRequest(
                    msg.label, combined, party, vector_digest(share.share), share.cross_digests,
                    share.signature, tuple(vector_digest(v) for v in cross.products),
                    cross.signature,
                ),
            )  # fmt: skip
        reply = inner.request(party, msg)
        if isinstance(reply, fm.FormCross):
            crosses[reply.label] = reply
        return reply

    with pytest.raises(
        ProtocolError, match=r"FormShare of .* does not carry owner-\d+'s signature"
    ):
        _run_two(tamper)


def test_the_remixers_products_changed_in_transit_are_not_decrypted() -> None:
    """The aggregator hands the first holder the remixer's ``Enc(H a²)`` with a ciphertext
    of its own added: the first holder signs what it used, not what the remixer signed."""

    def tamper(inner: Transport, party: str, msg: m.Message) -> m.Message:
        if isinstance(msg, fm.FormShareRequest):
            products = (_bent(msg.cross.products[0]), *msg.cross.products[1:])
            msg = dataclasses.replace(msg, cross=dataclasses.replace(msg.cross, products=products))
        return inner.request(party, msg)

    with pytest.raises(ProtocolError, match="not over the remixer's products"):
        _run_two(tamper)
