"""The public rules every party applies and the verifier holds the others to.

Each is a pure function of public inputs, and every choice that looks random is
derived from SHA-256 of public inputs (never from a library's random stream), so
that an independent verifier, in any language, reproduces it from this text:

* :func:`split_roles` — who trains and who validates;
* :func:`is_evaluated` — which rounds publish a metric;
* :func:`last_round` — when a target improvement stops training;
* :func:`metric_remixer` and :func:`contribution_remixer` — which validator remixes;
* :func:`shapley_seed` — the seed in the contribution records (unused: Shapley values are exact);
* :func:`compute_payouts` — how the deposit is split (:mod:`deltaml.protocol.payouts`).

The modules that used to define them (``roles.aggregator``, ``evidence.published``,
``learning.metrics``, ``learning.contributions``, ``ledger.payouts``) re-export them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from deltaml.errors import DeltaMLValueError
from deltaml.protocol.payouts import Payouts, compute_payouts, scale_metric

__all__ = [
    "EXACT_ROUND",
    "SHAPLEY_SEED_DOMAIN",
    "SPLIT_DOMAIN",
    "Payouts",
    "compute_payouts",
    "contribution_remixer",
    "evaluates",
    "improvement_percent",
    "is_evaluated",
    "last_round",
    "metric_remixer",
    "n_trainers",
    "scale_metric",
    "shapley_seed",
    "spec_hash",
    "split_key",
    "split_roles",
]

SPLIT_DOMAIN = b"deltaml-split-roles/1\x00"
SHAPLEY_SEED_DOMAIN = b"deltaml-shapley-seed/1\x00"


def n_trainers(n_owners: int, trainer_fraction: float) -> int:
    """``round(fraction · n)`` (halves up), at least one trainer and one validator."""
    return min(n_owners - 1, max(1, math.floor(trainer_fraction * n_owners + 0.5)))


def split_key(seed: int, owner_id: str) -> bytes:
    """An owner's sort key in the split: ``SHA-256(SPLIT_DOMAIN ‖ ascii(seed) ‖ 0x00 ‖
    utf8(owner_id))``, where ``ascii(seed)`` is the seed in decimal digits."""
    return hashlib.sha256(
        SPLIT_DOMAIN + str(int(seed)).encode("ascii") + b"\x00" + owner_id.encode("utf-8")
    ).digest()


def split_roles(
    owner_ids: Sequence[str], trainer_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """The trainer/validator split of ``owner_ids`` under the public ``seed``.

    Construction (reproducible without this code):

    1. ``t = min(n − 1, max(1, floor(trainer_fraction · n + 0.5)))`` trainers of
       ``n = len(owner_ids)`` owners;
    2. each owner id gets the key ``SHA-256(b"deltaml-split-roles/1\\x00" ‖
       str(seed) in ASCII decimal ‖ b"\\x00" ‖ owner id in UTF-8)``;
    3. owners are ordered by (key as bytes, owner id); the first ``t`` train, the
       others validate;
    4. both lists are returned sorted by owner id.

    The order of ``owner_ids`` does not matter.
    """
    if len(owner_ids) < 2:
        raise DeltaMLValueError(
            "training needs at least two data owners (a trainer and a validator)"
        )
    if not 0 < trainer_fraction < 1:
        raise DeltaMLValueError("trainer fraction must lie strictly between 0 and 1")
    t = n_trainers(len(owner_ids), trainer_fraction)
    ordered = sorted(owner_ids, key=lambda owner: (split_key(seed, owner), owner))
    return sorted(ordered[:t]), sorted(ordered[t:])


def is_evaluated(k: int, rounds: int, every: int) -> bool:
    """Whether round ``k`` publishes a metric: the initial model (0), every ``every``-th
    round and the last (``rounds``)."""
    return k == 0 or k % every == 0 or k == rounds


#: The round the exact solve's model is evaluated and paid as (the initial model is 0).
EXACT_ROUND = 1


def evaluates(k: int, spec: Any) -> bool:
    """Whether a request of ``spec`` (a ``TrainingSpec``) evaluates round ``k``: the exact
    solve its initial model (0) and its exact model (1), unless it has several classes
    (no encrypted metric of those yet); the iterative protocol :func:`is_evaluated`
    rounds up to its last."""
    if spec.solver == "exact":
        return k in (0, EXACT_ROUND) and not spec.n_classes
    return 0 <= k <= spec.rounds and is_evaluated(k, spec.rounds, spec.eval_every)


def improvement_percent(initial: float | None, metric: float | None) -> float | None:
    """How much lower ``metric`` is than ``initial``, in percent of ``initial``."""
    if initial is None or metric is None or initial <= 0:
        return None
    return 100.0 * (initial - metric) / initial


def last_round(rounds: int, target_improvement: float, metrics: Mapping[int, float]) -> int:
    """The round training ends after: the first evaluated round (before the last)
    whose published metric improves on the initial one (round 0) by at least
    ``target_improvement`` percent, else ``rounds``. 0 means no target.

    The aggregator stops by this rule and the verifier holds it to it: it may
    neither stop early nor train (and be paid for) rounds past the target.
    """
    if target_improvement > 0:
        for k in sorted(metrics):
            gain = improvement_percent(metrics.get(0), metrics[k])
            if 0 < k < rounds and gain is not None and gain >= target_improvement:
                return k
    return rounds


def metric_remixer(validators: Sequence[str], round_: int, eval_every: int = 1) -> str | None:
    """Who remixes the metric of round ``k``.

    Evaluations are numbered ``i = ⌈k / eval_every⌉`` (round 0, every
    ``eval_every``-th round and the last one get 0, 1, 2, …) and the ``i``-th is
    remixed by ``validators[i mod V]``, so the work rotates through the validators
    whatever ``eval_every`` is (with ``eval_every = 1`` it is ``validators[k mod V]``).
    A single validator remixes too: the last mixing of every vector the buyer
    decrypts is then the signed output of a seated owner, so an aggregator that
    feeds the buyer anything else is refused (and garbage fed to the remixer shows
    the buyer only a norm).
    """
    if not validators:
        return None
    if eval_every < 1 or round_ < 0:
        raise DeltaMLValueError("rounds and eval_every must be non-negative and positive")
    return validators[-(-round_ // eval_every) % len(validators)]


def contribution_remixer(validators: Sequence[str]) -> str | None:
    """Who remixes the contribution columns — the first validator.

    A single validator remixes too (see :func:`metric_remixer`).
    """
    return validators[0] if validators else None


#: The label of the contributions' batch of Gram forms (``metric_protocol: gram``).
FORM_CONTRIBUTIONS = "contributions"


def form_label(round_: int) -> str:
    """The label of round ``round_``'s evaluation as a batch of Gram forms."""
    return f"metric-{round_}"


def form_round(label: str) -> int | None:
    """The evaluated round a batch's label names; ``None`` for the contributions.

    Raises :class:`DeltaMLValueError` for any other label."""
    if label == FORM_CONTRIBUTIONS:
        return None
    head, _, tail = label.partition("-")
    if head != "metric" or not tail.isdigit() or len(tail) > 6 or form_label(int(tail)) != label:
        raise DeltaMLValueError(f"no batch of forms is labelled {label[:40]!r}")
    return int(tail)


def form_remixer(validators: Sequence[str], label: str, eval_every: int) -> str | None:
    """Who adds the second mask to a batch: the metric's or the contributions' remixer."""
    k = form_round(label)
    if k is None:
        return contribution_remixer(validators)
    return metric_remixer(validators, k, eval_every)


def form_holders(
    validators: Sequence[str], label: str, eval_every: int
) -> tuple[str | None, str] | None:
    """A batch's two mask holders: the first, the validator after the remixer in seat
    order (``None``: the aggregator, when there is one validator), and the second, the
    remixer (:func:`form_remixer`). The buyer never holds a mask: it holds the key."""
    remixer = form_remixer(validators, label, eval_every)
    if remixer is None:
        return None
    if len(validators) < 2:
        return None, remixer
    return validators[(validators.index(remixer) + 1) % len(validators)], remixer


def shapley_seed(previous_record_hash: str) -> int:
    """The sampling seed, fixed by the transcript up to the mixed columns (128 bits):
    the first 16 bytes, big-endian, of ``SHA-256(b"deltaml-shapley-seed/1\\x00" ‖
    previous_record_hash in ASCII)``.

    Nobody picks it: it is a hash of the chain head just before the buyer is asked,
    so the buyer cannot search for a seed that favours someone. Shapley values are
    now exact in closed form, so no value depends on it; it stays in the format.
    """
    digest = hashlib.sha256(SHAPLEY_SEED_DOMAIN + previous_record_hash.encode("ascii")).digest()
    return int.from_bytes(digest[:16], "big")


def spec_hash(spec: Mapping[str, object]) -> bytes:
    """The hash a request commits to on chain: SHA-256 of the spec (or of the spec and
    the data requirements) as JSON with sorted keys and no spaces."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).digest()


def request_hash(spec: Mapping[str, object], requirements: Mapping[str, object]) -> bytes:
    """What the buyer's ``createRequest`` commits to: the spec and the data requirements."""
    return spec_hash({"spec": spec, "requirements": requirements})
