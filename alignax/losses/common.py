"""Helpers shared by the objective modules: float32 promotion, checked per-example inputs, the
preference-pair plumbing (inputs, masked means, length averages, metrics) and the input names."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.ops import numerics

Array = jax.Array


def f32(*arrays):
    """Every input as float32: bf16 log-probs in, float32 losses out."""
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def checked_f32(name: str, x, batch: int | None = None) -> Array:
    if x is None:
        raise ValueError(f"missing required input `{name}`")
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a [B] array of per-example values, got shape {x.shape}")
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"`{name}` has batch {x.shape[0]}, expected {batch} (like chosen_logps)")
    return x.astype(jnp.float32)


def example_weights(example_mask, batch: int) -> Array:
    if example_mask is None:
        return jnp.ones((batch,), jnp.float32)
    return checked_f32("example_mask", example_mask, batch)


def weighted_mean(values: Array, weights: Array) -> Array:
    return numerics.masked_mean(values, weights)


def pair_metrics(
    *, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, weights=None, extra=None
) -> dict[str, Array]:
    """The metrics TRL/SPPO/INPO trainers log for a preference pair (rewards detached); a batch mean
    over the kept examples when `weights` ([B], 0 = masked) is given."""
    if weights is None:
        weights = jnp.ones(jnp.shape(chosen_rewards), jnp.float32)
    chosen_rewards = jax.lax.stop_gradient(chosen_rewards)
    rejected_rewards = jax.lax.stop_gradient(rejected_rewards)
    metrics = {
        "rewards/chosen": weighted_mean(chosen_rewards, weights),
        "rewards/rejected": weighted_mean(rejected_rewards, weights),
        "rewards/margins": weighted_mean(chosen_rewards - rejected_rewards, weights),
        "rewards/accuracies": weighted_mean((chosen_rewards > rejected_rewards).astype(jnp.float32), weights),
        "logps/chosen": weighted_mean(jax.lax.stop_gradient(chosen_logps), weights),
        "logps/rejected": weighted_mean(jax.lax.stop_gradient(rejected_logps), weights),
    }
    if extra:
        metrics.update({k: jax.lax.stop_gradient(v) for k, v in extra.items()})
    return metrics


def pair_inputs(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask, *, needs_ref=True):
    chosen = checked_f32("chosen_logps", chosen_logps)
    batch = chosen.shape[0]
    rejected = checked_f32("rejected_logps", rejected_logps, batch)
    if needs_ref:
        ref_chosen = jax.lax.stop_gradient(checked_f32("ref_chosen_logps", ref_chosen_logps, batch))
        ref_rejected = jax.lax.stop_gradient(checked_f32("ref_rejected_logps", ref_rejected_logps, batch))
    else:
        ref_chosen = ref_rejected = None
    return chosen, rejected, ref_chosen, ref_rejected, example_weights(example_mask, batch)


def response_lengths(chosen_lengths, rejected_lengths, batch: int, who: str):
    if chosen_lengths is None or rejected_lengths is None:
        raise ValueError(
            f"{who}: needs `chosen_lengths` and `rejected_lengths` (response token counts) to length-normalize"
        )
    return checked_f32("chosen_lengths", chosen_lengths, batch), checked_f32(
        "rejected_lengths", rejected_lengths, batch
    )


def length_average(values: Array, lengths: Array, weights: Array, fill: float = -1.0) -> Array:
    """values / lengths on kept rows (weights != 0) and `fill` on masked rows, NaN-free under `jax.grad`.

    Double-where: the denominator is made safe (1 on masked rows) *before* dividing, so a masked
    zero-length (padding) row never computes 0/0; masking the quotient afterwards alone would still
    send NaN gradients back (0 · ∂(x/0) = NaN). `fill` = −1 keeps every downstream term finite (e.g.
    ORPO's log(1 − e^avg), which is −inf at avg = 0). A zero length on a row that is NOT masked is a
    data error (the data path drops rows without response tokens) and still gives NaN, loudly.
    """
    kept = weights != 0
    return jnp.where(kept, values / jnp.where(kept, lengths, 1.0), fill)


def smoothed_sigmoid_loss(logits: Array, label_smoothing: float) -> Array:
    """−(1−ε) log σ(z) − ε log σ(−z): DPO's loss, cDPO when ε > 0 (Mitchell 2023)."""
    return -(1.0 - label_smoothing) * numerics.log_sigmoid(logits) - label_smoothing * numerics.log_sigmoid(-logits)


def finish_pair(per_example, weights, *, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps, extra=None):
    chex.assert_rank(per_example, 1)
    loss = weighted_mean(per_example, weights)
    metrics = pair_metrics(
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        weights=weights,
        extra=extra,
    )
    return loss, metrics


def finish_dpo_pair(per_example, weights, *, beta, pair, extra=None):
    """`finish_pair` for the losses whose rewards are DPO's implicit ones (Rafailov et al., 2023):
    `pair` = (chosen, rejected, ref_chosen, ref_rejected) log-probs, chosen reward
    beta * (chosen - ref_chosen), rejected reward beta * (rejected - ref_rejected)."""
    chosen, rejected, ref_chosen, ref_rejected = pair
    return finish_pair(
        per_example,
        weights,
        chosen_rewards=beta * (chosen - ref_chosen),
        rejected_rewards=beta * (rejected - ref_rejected),
        chosen_logps=chosen,
        rejected_logps=rejected,
        extra=extra,
    )


# Keyword arrays of the pairwise contract (DESIGN.md), as the `pairwise` method provides them.
PAIR_INPUTS = ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")
REF_INPUTS = ("ref_chosen_logps", "ref_rejected_logps")

# Why a registered loss has no config yet (`LossInfo.pending`): the pipeline it needs.
ROLLOUTS = (
    "needs on-policy rollouts scored by a reward or value model; the rollout pipeline of the on-policy "
    "iteration work (alignax/iterate) does not exist yet"
)
DRAFT = "needs a draft and a target model's per-position outputs; the speculative-decoding trainer does not exist yet"
JUDGMENTS = (
    "needs judgment-conditioned inputs and token flags; the CUT judgment data path (the LoRA/CUT work) does "
    "not exist yet"
)
