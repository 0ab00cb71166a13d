"""DPO variants that reshape the margin's loss: AOT, APO-zero/down, DiscoPOP and LN-DPO.

TRL's `loss_type`s "aot", "aot_pair", "apo_zero", "apo_down", "discopop" and LN-DPO
(length-normalized DPO). Same contract, notation and peer as alignax.losses.dpo_family (its
docstring): keyword-only pure functions from per-example `[B]` log-probs to `(loss, metrics)`,
checked name by name against TRL 0.19.1 in tests/test_losses_dpo.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.common import (
    PAIR_INPUTS,
    REF_INPUTS,
    finish_dpo_pair,
    finish_pair,
    length_average,
    pair_inputs,
    pair_metrics,
    response_lengths,
    smoothed_sigmoid_loss,
    weighted_mean,
)
from alignax.losses.registry import register
from alignax.ops import numerics

Array = jax.Array


def _sorted_valid(values: Array, weights: Array) -> Array:
    """Sort ascending over the batch with masked examples pushed to the end (as +inf)."""
    return jnp.sort(jnp.where(weights != 0, values, jnp.inf))


def _aot_loss(a, b, weights, beta, label_smoothing):
    a_sorted, b_sorted = _sorted_valid(a, weights), _sorted_valid(b, weights)
    # Both arrays have the same number of valid entries, so they occupy the same leading slots.
    num_valid = jnp.sum(weights != 0)
    sorted_weights = (jnp.arange(a.shape[0]) < num_valid).astype(jnp.float32)
    delta = jnp.where(sorted_weights != 0, a_sorted - b_sorted, 0.0)
    return smoothed_sigmoid_loss(beta * delta, label_smoothing), sorted_weights


@register(
    "aot",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "label_smoothing": 0.0},
    reference=True,
    config="configs/dpo.py",
)
def aot(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
):
    """AOT, paired (Melnyk et al., 2024, "Distributional Preference Alignment via Optimal Transport").

    Sort Δ = log π_w − log π_l and Δ_ref = log π_ref,w − log π_ref,l independently over the batch;
    δ_i = sort(Δ)_i − sort(Δ_ref)_i; L = mean_i [−(1−ε) log σ(βδ_i) − ε log σ(−βδ_i)].
    The loss couples examples (it is a batch-level objective): padded examples are sorted out.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    per_sorted, sorted_w = _aot_loss(chosen - rejected, ref_c - ref_r, w, beta, label_smoothing)
    loss = weighted_mean(per_sorted, sorted_w)
    metrics = pair_metrics(
        chosen_rewards=beta * (chosen - ref_c),
        rejected_rewards=beta * (rejected - ref_r),
        chosen_logps=chosen,
        rejected_logps=rejected,
        weights=w,
    )
    return loss, metrics


@register(
    "aot_pair",
    "aot_unpaired",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "label_smoothing": 0.0},
    reference=True,
    config="configs/dpo.py",
)
def aot_pair(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
):
    """AOT, unpaired (TRL 0.19 `aot_pair`, later renamed `aot_unpaired`).

    Sort ρ_w and ρ_l independently over the batch; δ_i = sort(ρ_w)_i − sort(ρ_l)_i; same loss as `aot`.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    per_sorted, sorted_w = _aot_loss(chosen - ref_c, rejected - ref_r, w, beta, label_smoothing)
    loss = weighted_mean(per_sorted, sorted_w)
    metrics = pair_metrics(
        chosen_rewards=beta * (chosen - ref_c),
        rejected_rewards=beta * (rejected - ref_r),
        chosen_logps=chosen,
        rejected_logps=rejected,
        weights=w,
    )
    return loss, metrics


@register(
    "apo_zero",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def apo_zero(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
):
    """APO-zero (D'Oosterlinck et al., 2024, "Anchored Preference Optimization", Eq. 7):

    L = (1 − σ(βρ_w)) + σ(βρ_l). For when chosen outputs are better than the model's own.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    r_w, r_l = beta * (chosen - ref_c), beta * (rejected - ref_r)
    per_example = (1.0 - jax.nn.sigmoid(r_w)) + jax.nn.sigmoid(r_l)
    return finish_pair(
        per_example, w, chosen_rewards=r_w, rejected_rewards=r_l, chosen_logps=chosen, rejected_logps=rejected
    )


@register(
    "apo_down",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def apo_down(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
):
    """APO-down (D'Oosterlinck et al., 2024, Eq. 8): L = σ(βρ_w) + (1 − σ(β(ρ_w − ρ_l))).

    For when chosen outputs are worse than the model's own: lower both, the rejected more.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    r_w, r_l = beta * (chosen - ref_c), beta * (rejected - ref_r)
    per_example = jax.nn.sigmoid(r_w) + (1.0 - jax.nn.sigmoid(r_w - r_l))
    return finish_pair(
        per_example, w, chosen_rewards=r_w, rejected_rewards=r_l, chosen_logps=chosen, rejected_logps=rejected
    )


@register(
    "discopop",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.05, "tau": 0.05},
    reference=True,
    config="configs/dpo.py",
)
def discopop(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.05,
    tau: float = 0.05,
):
    """DiscoPOP / LRML (Chris Lu et al., 2024, "Discovering Preference Optimization Algorithms", Eq. 5).

    z = βh, m = σ(z/τ); L = (1 − m)·(−log σ(z)) + m·e^{−z}: a log-ratio-modulated blend of the
    logistic and exponential losses. This is TRL's form (τ = `discopop_tau`, default 0.05).
    Checked against the official definition (SakanaAI/DiscoPOP-zephyr-7b-gemma model card,
    `log_ratio_modulated_loss`): it modulates with m = σ(h), without β; the two agree exactly
    when τ = β, which is the released setting β = 0.05 and hence alignax's defaults β = τ = 0.05
    (TRL's β default is 0.1, which with τ = 0.05 modulates with σ(2h)).
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    z = beta * ((chosen - rejected) - (ref_c - ref_r))
    modulation = jax.nn.sigmoid(z / tau)
    per_example = (1.0 - modulation) * (-numerics.log_sigmoid(z)) + modulation * jnp.exp(-z)
    return finish_dpo_pair(per_example, w, beta=beta, pair=(chosen, rejected, ref_c, ref_r))


@register(
    "ln_dpo",
    "sigmoid_norm",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 10.0, "label_smoothing": 0.0},
    reference=True,
    config="configs/dpo.py",
)
def ln_dpo(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths,
    rejected_lengths,
    example_mask=None,
    beta: float = 10.0,
    label_smoothing: float = 0.0,
):
    """Length-normalized DPO (FuseChat-3.0, Yang et al., 2025; = current TRL's `sigmoid_norm`):

    L = −log σ(β (ρ_w/|y_w| − ρ_l/|y_l|)) (cDPO smoothing ε optional, 0 by default).
    Default β = 10: FuseChat-3.0's setting for its LN-DPO targets (Llama-3.1-8B, Llama-3.2-1B/3B).
    Rewards are the length-normalized implicit rewards β·ρ/|y|.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    len_w, len_r = response_lengths(chosen_lengths, rejected_lengths, chosen.shape[0], "ln_dpo")
    r_w = beta * length_average(chosen - ref_c, len_w, w)
    r_l = beta * length_average(rejected - ref_r, len_r, w)
    per_example = smoothed_sigmoid_loss(r_w - r_l, label_smoothing)
    return finish_pair(
        per_example, w, chosen_rewards=r_w, rejected_rewards=r_l, chosen_logps=chosen, rejected_logps=rejected
    )


__all__ = [
    "aot",
    "aot_pair",
    "apo_zero",
    "apo_down",
    "discopop",
    "ln_dpo",
]
