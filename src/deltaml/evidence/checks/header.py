"""The header (key, spec, seats, split) and the standardization statistics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from deltaml.crypto import PublicKey
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.checks.base import (
    Skip,
    Verifier,
)
from deltaml.evidence.checks.proofs import check_sum, proven
from deltaml.evidence.published import (
    stats_from_ints,
)
from deltaml.evidence.signatures import (
    key_id,
)
from deltaml.evidence.transcript import (
    FORMAT,
)
from deltaml.learning.models import Standardization, model_type
from deltaml.protocol import records
from deltaml.protocol.rules import (
    split_roles,
)


# -- header and statistics -----------------------------------------------------------
def check_header(vr: Verifier, body: Mapping[str, Any]) -> None:
    vr.require(body.get("format") == FORMAT, "header", "unknown transcript format")
    try:
        key = PublicKey.from_dict(body["public_key"])
    except (DeltaMLValueError, KeyError, TypeError):
        vr.fail("header", "malformed public key")
        raise Skip from None
    spec = body.get("spec")
    vr.require(isinstance(spec, dict), "header", "no spec")
    vr.spec = dict(spec)  # type: ignore[arg-type]
    try:
        vr.model = model_type(vr.spec["model"], vr.spec.get("l2"), vr.spec.get("n_classes") or 0)
    except (DeltaMLValueError, KeyError):
        vr.fail("header", "unknown model type")
        raise Skip from None
    people = body.get("participants")
    vr.require(isinstance(people, list), "header", "no participants")
    for p in people:  # type: ignore[union-attr]
        vr.require(
            isinstance(p, dict)
            and all(isinstance(p.get(k), str) for k in ("id", "role", "address")),
            "header",
            "malformed participant",
        )
        vr.participants[p["id"]] = (p["role"], p["address"])
    try:
        header = records.Header.from_body(body)
    except records.RecordError as exc:
        vr.fail("header", str(exc))
        raise Skip from None
    vr.owners = list(header.owners)
    vr.trainers = list(header.trainers)
    vr.active = list(vr.trainers)
    vr.validators = list(header.validators)
    vr.n_features = header.n_features
    roles = Counter(role for role, _ in vr.participants.values())
    vr.require(
        roles["buyer"] == 1 and roles["aggregator"] == 1, "header", "needs one buyer, one FA"
    )
    try:
        split = split_roles(
            vr.owners, float(vr.spec["trainer_fraction"]), int(vr.spec["split_seed"])
        )
    except (DeltaMLValueError, KeyError, TypeError, ValueError):
        vr.fail("split", "the split cannot be recomputed")
        raise Skip from None
    declared = {pid: role for pid, (role, _) in vr.participants.items() if pid in vr.owners}
    vr.expect(
        split == (vr.trainers, vr.validators)
        and all(declared.get(t) == "trainer" for t in vr.trainers)
        and all(declared.get(v) == "validator" for v in vr.validators)
        and len(declared) == len(vr.owners),
        "split",
        "trainers and validators are not the split of the recorded seed",
    )
    vr.key, vr.key_id = key, key_id(key)  # a usable header: the rest can be checked


def on_header(vr: Verifier, body: Mapping[str, Any]) -> None:
    vr.require(vr.seq == 0, "header", "a second header")


def on_encrypted_sums(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.EncryptedSums.from_body(body)
    party = vr.records[vr.seq]["party"]
    vr.require(party not in vr.sums, "completeness", f"{party} sent statistics twice")
    vr.sums[party] = vr.declare(rec.sums)


def on_stats_total(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.StatsTotal.from_body(body)
    total = vr.declare(rec.total)
    inputs = rec.inputs
    vr.require(
        inputs == [vr.sums.get(o) for o in vr.owners] and rec.contributors == len(vr.owners),
        "link",
        "the statistics total is not over every owner's signed sums, once each",
    )
    vr.ok("link")
    vr.stats_total = {"total": total, "include_target": bool(rec.include_target)}
    check_sum(vr, total, inputs)


def on_public_stats(vr: Verifier, body: Mapping[str, Any]) -> None:
    rec = records.PublicStats.from_body(body)
    vr.require(vr.stats_total is not None, "link", "statistics before their total")
    assert vr.stats_total is not None and vr.key is not None
    digest = vr.stats_total["total"]
    vr.require(rec.total == digest, "link", "the buyer decrypted another total")
    # The published statistics are what later metrics use, proven or not.
    vr.stats = Standardization.published(
        rec.count, rec.means, rec.scales, rec.target_mean, rec.target_scale,
        rec.class_counts, rec.class_means, rec.impute_means,
    )  # fmt: skip
    values = proven(vr, digest, rec.plaintexts, rec.randomness)
    classes, impute = int(vr.spec.get("n_classes") or 0), bool(vr.spec.get("impute"))
    try:
        stats = stats_from_ints(
            values, vr.exponent(digest), vr.n_features, vr.stats_total["include_target"],
            classes, impute,
        )  # fmt: skip
    except DeltaMLValueError as exc:
        vr.fail("statistics", f"cannot recompute: {exc}")
        raise Skip from None
    published = (
        rec.count,
        list(rec.means),
        list(rec.scales),
        rec.target_mean,
        rec.target_scale,
        tuple(rec.class_counts),
        tuple(rec.class_means),
        tuple(rec.impute_means),
    )
    recomputed = (
        stats.count,
        [float(v) for v in stats.means],
        [float(v) for v in stats.scales],
        float(stats.target_mean),
        float(stats.target_scale),
        *stats.extra_fields(),
    )
    vr.expect(
        published == recomputed,
        "statistics",
        "the published means and scales are not those of the proven total",
    )
