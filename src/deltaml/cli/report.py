"""``deltaml simulate``'s report: one small function per part of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deltaml.simulation import SimulationResult


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def _header(r: SimulationResult) -> None:
    print(
        f"{r.config.dataset} · {r.model} · {r.config.owners} owners "
        f"({plural(len(r.trainers), 'trainer')}, {plural(len(r.validators), 'validator')}) · "
        f"{r.config.key_bits}-bit Paillier"
    )
    print(f"  trainers: {', '.join(r.trainers)}   validators: {', '.join(r.validators)}")
    if r.multiclass:
        print(
            f"  {len(r.classes or ())} classes ({', '.join(r.classes or ())}): one exact solve "
            "fits a linear score per class (linear discriminant analysis, softmax probabilities)"
        )


def _rounds(r: SimulationResult) -> None:
    metric_name = "validation MSE" if r.task == "regression" else "validation loss (Taylor)"
    if r.initial_metric is not None or any(rec.metric is not None for rec in r.rounds):
        print(f"\n  round  {metric_name}")
    if r.initial_metric is not None:
        print(f"  {0:>5}  {r.initial_metric:.6g}  (initial model)")
    for rec in r.rounds:
        if rec.metric is not None:
            flag = "  (refreshed)" if rec.refreshed else ""
            print(f"  {rec.round:>5}  {rec.metric:.6g}{flag}")
    if r.config.solver == "exact":
        print("\n  one exact solve (no rounds): the model is the optimum of the trainers' system")
    elif len(r.rounds) < r.config.rounds:
        print(
            f"  stopped after round {r.rounds[-1].round}: the target of "
            f"{r.config.target_improvement:g} % improvement was reached"
        )
    contributions = f", contributions {r.contribution_seconds:.2f} s" if r.contributions else ""
    print(
        f"\n{plural(len(r.rounds), 'round', 'rounds')} in {r.seconds:.2f} s "
        f"(set-up {r.setup_seconds:.2f} s, training {r.training_seconds:.2f} s, "
        f"metrics {r.metric_seconds:.2f} s{contributions}; "
        f"{plural(r.refreshes, 'refresh', 'refreshes')})"
    )
    print(
        f"  objective gap to the exact centralized optimum: {r.objective_gap:.3g} "
        f"({100 * r.objective_gap:.4f} %)"
    )


def _regression_scores(r: SimulationResult) -> None:
    t = r.test
    note = f"   ({r.baseline_note})" if r.baseline_note else ""
    if "optimum_test_mse" in t:
        ratio = t["test_mse"] / t["optimum_test_mse"]
        print(
            f"  test MSE {t['test_mse']:.6g}   exact optimum {t['optimum_test_mse']:.6g}"
            f"   ratio {ratio:.6f}"
        )
        if r.baseline_note:
            print(f"  scikit-learn LinearRegression: test MSE {t['sklearn_test_mse']:.6g}{note}")
    elif "test_mse" in t:
        print(f"  test MSE {t['test_mse']:.6g}   scikit-learn {t['sklearn_test_mse']:.6g}")


def _multiclass_scores(r: SimulationResult) -> None:
    t = r.test
    print(f"  {'':<22}{'accuracy':>10}{'macro AUC':>11}{'macro F1':>10}")
    for name, prefix in (
        ("ours", "test"),
        ("scikit-learn logistic", "sklearn_test"),
        ("scikit-learn LDA", "sklearn_lda_test"),
    ):
        print(
            f"  {name:<22}{t[prefix + '_accuracy']:>10.4f}{t[prefix + '_auc']:>11.4f}"
            f"{t[prefix + '_macro_f1']:>10.4f}"
        )
    print(f"  {'class':<22}{'AUC':>10}{'precision':>11}{'recall':>10}{'F1':>8}")
    for label in r.classes or ():
        print(
            f"  {label:<22}{t[f'test_auc[{label}]']:>10.4f}"
            f"{t[f'test_precision[{label}]']:>11.4f}{t[f'test_recall[{label}]']:>10.4f}"
            f"{t[f'test_f1[{label}]']:>8.4f}"
        )


def _classifier_scores(r: SimulationResult) -> None:
    t = r.test
    if r.multiclass and "test_macro_f1" in t:
        _multiclass_scores(r)
        return
    note = f"   ({r.baseline_note})" if r.baseline_note else ""
    if "optimum_test_auc" in t:
        print(
            f"  test AUC {t['test_auc']:.4f}   optimum (logistic, our l2) "
            f"{t['optimum_test_auc']:.4f}"
        )
        acc, best = t["test_accuracy"], t["optimum_test_accuracy"]
        print(f"  test accuracy {acc:.4f}   optimum {best:.4f}")
        if r.baseline_note:
            print(
                f"  scikit-learn default: AUC {t['sklearn_test_auc']:.4f}, "
                f"accuracy {t['sklearn_test_accuracy']:.4f}{note}"
            )
    elif "test_auc" in t:
        print(f"  test AUC {t['test_auc']:.4f}   scikit-learn {t['sklearn_test_auc']:.4f}")
        acc, sk_acc = t["test_accuracy"], t["sklearn_test_accuracy"]
        print(f"  test accuracy {acc:.4f}   scikit-learn {sk_acc:.4f}")


def _money(r: SimulationResult) -> None:
    if r.contributions:
        print("\n  contributions (Shapley value, validation SSE; weight of the trainers' pool)")
        for oid, phi, weight in zip(
            r.trainers, r.contributions, r.contribution_weights, strict=True
        ):
            print(f"    {oid:<12} {phi:>12.6g}   {weight / 10**4:6.2f} %")
    paid = r.settlement.withdrawn_wei if r.settlement else {}
    where = f"withdrawn on the {r.settlement.chain} chain" if r.settlement else "by the rule"
    deposits = f"a {r.config.deposit_wei} wei deposit"
    if r.multiclass:
        print("\n  no settlement: a model of several classes has no metric to pay by yet")
    else:
        print(f"\n  payouts of {deposits} ({where})")
        for pid, amount in r.payouts_wei.items():
            print(f"    {pid:<12} {paid.get(pid, amount):>24} wei")
        print(f"    {'refund':<12} {paid.get('buyer', r.refund_wei):>24} wei")
    if r.settlement is not None:
        st = r.settlement
        print(
            f"    contract {st.contract}, request {st.request_id}: {st.status}, "
            f"{st.transactions} transactions, {st.gas_used} gas"
        )


def _evidence(r: SimulationResult) -> None:
    if r.verification is None:
        return
    v = r.verification
    status = "verified" if v.ok else "NOT verified: " + "; ".join(map(str, v.failures[:3]))
    print(f"\n  transcript {r.transcript or '(in memory)'}: {status} ({v.records} records,")
    print(f"    hash {r.transcript_head}; checked in {r.verify_seconds:.2f} s)")


def print_report(result: SimulationResult) -> None:
    """The report of a simulation, on standard output."""
    for part in (_header, _rounds, _regression_scores, _classifier_scores, _money, _evidence):
        part(result)
