"""An evaluated round's metric: residual vectors, the mix, the remix, the published value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deltaml.evidence.checks.base import (
    Verifier,
    _is_hex,
    _is_number,
)
from deltaml.evidence.checks.proofs import proven_packed, proven_packed_ciphertexts
from deltaml.evidence.published import (
    denoised_sse,
    denominator_exponent,
    metric_value,
    sse_from_ints,
)
from deltaml.protocol import records
from deltaml.protocol.rules import (
    EXACT_ROUND,
    metric_remixer,
)


def on_encrypted_residuals(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.EncryptedResiduals.from_body(body)
    vr.require(
        vr.spec.get("metric_protocol", "rotation") == "rotation",
        "format",
        "residual vectors in a request whose metric_protocol is gram",
    )
    k = rec.round
    party = vr.records[vr.seq]["party"]
    vr.require(
        rec.input == vr.broadcasts.get(("evaluate", k)),
        "link",
        f"{party} did not evaluate round {k}'s model",
    )
    vr.ok("link")
    rows = rec.rows
    vr.require(type(rows) is int and rows > 0, "format", "rows must be positive")
    parts = vr.residuals.setdefault(k, {})
    vr.require(party not in parts, "completeness", f"{party} answered twice")
    parts[party] = (vr.declare(rec.vector), rows)


def on_mix(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.Mix.from_body(body)
    k = rec.round
    parts = vr.residuals.get(k, {})
    vr.require(
        rec.inputs == [parts.get(v, ("", 0))[0] for v in vr.validators]
        and rec.rows == sum(parts.get(v, ("", 0))[1] for v in vr.validators)
        and k not in vr.mixes,
        "link",
        f"the mixed vector of round {k} is not over every validator's signed vector",
    )
    vr.ok("link")
    vr.require(_is_hex(rec.commitment, 64), "format", "malformed rotation commitment")
    vr.mixes[k] = {"mixed": vr.declare(rec.mixed), "rows": rec.rows}


def on_remix(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.Remix.from_body(body)
    k = rec.round
    party = vr.records[vr.seq]["party"]
    every = vr.spec.get("eval_every")
    vr.require(type(every) is int and every >= 1, "format", "no eval_every in the spec")
    assert isinstance(every, int)
    vr._remixer(party, metric_remixer(vr.validators, k, every), f"round {k}")
    mix = vr.mixes.get(k)
    vr.require(
        mix is not None and rec.input == mix["mixed"] and k not in vr.remixes,
        "link",
        f"the remix of round {k} is not of round {k}'s mixed vector, once",
    )
    assert mix is not None
    vr.ok("link")
    vr.require(_is_hex(rec.commitment, 64), "format", "malformed rotation commitment")
    remixed = vr.declare(rec.vector)
    vr._remixed_ref(mix["mixed"], remixed)
    vr.remixes[k] = remixed


def on_metric_value(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.MetricValue.from_body(body)
    k = rec.round
    mix = vr.mixes.get(k)
    # Every metric vector is remixed, by the only validator too: the buyer decrypts
    # only a seated owner's signed output.
    decrypted = vr.remixes.get(k)
    what = "remixed"
    vr.require(
        mix is not None
        and decrypted is not None
        and rec.vector == decrypted
        and rec.rows == mix["rows"],
        "link",
        f"the metric of round {k} is not a decryption of round {k}'s {what} vector",
    )
    vr.ok("link")
    assert mix is not None and decrypted is not None and vr.model is not None
    vr.require(vr.stats is not None, "link", "a metric before the statistics")
    assert vr.stats is not None
    vr.require(k not in vr.report.metrics, "completeness", f"a second metric, round {k}")
    published = rec.value
    vr.require(_is_number(published), "format", "the metric is not a number")
    vr.report.metrics[k] = float(published)
    denominator = _denominator(vr, rec, k)
    if denominator == 1:
        (values,) = proven_packed(vr, [decrypted], body)
    else:  # the exact model's residues z/δ, raised to δ: the integers z were decrypted
        vector = vr.vector(decrypted, sealed=False) or []
        exponent = denominator_exponent(vr.exponent(decrypted), denominator)
        (values,) = proven_packed_ciphertexts(vr, [vector], [exponent], body, denominator)
    noise = float(vr.spec.get("metric_noise", 0.0))
    sse = denoised_sse(
        sse_from_ints(values, vr.exponent(decrypted), denominator), mix["rows"], noise
    )
    recomputed = metric_value(vr.model, sse, mix["rows"], vr.stats)
    vr.sse[k] = sse
    vr.expect(
        published == recomputed,
        "metric",
        f"round {k}: published {published!r}, the proven plaintexts give {recomputed!r}",
    )


def _denominator(vr: Verifier, rec: records.MetricValue, k: int) -> int:
    """The multiple of ``δ`` the exact model's evaluation was raised to (``solver:
    exact``, its :data:`EXACT_ROUND`), else 1."""
    exact = vr.spec.get("solver") == "exact" and k == EXACT_ROUND
    vr.require(
        bool(rec.denominator) == exact,
        "format",
        f"round {k}: a denominator only comes with the exact model's metric",
    )
    if not exact:
        return 1
    try:
        value = int(rec.denominator, 16)
    except ValueError:
        value = 0
    vr.require(value > 0, "format", f"round {k}: the denominator is not a positive hex integer")
    vr.exact_denominator = value
    return value
