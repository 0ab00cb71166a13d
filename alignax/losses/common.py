"""Helpers shared by the objective modules (float32 promotion, the preference-pair metrics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def f32(*arrays):
    """Every input as float32: bf16 log-probs in, float32 losses out."""
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def pair_metrics(*, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps) -> dict[str, jnp.ndarray]:
    """The metrics TRL/SPPO/INPO trainers log for a preference pair (rewards detached)."""
    chosen_rewards = jax.lax.stop_gradient(chosen_rewards)
    rejected_rewards = jax.lax.stop_gradient(rejected_rewards)
    return {
        "rewards/chosen": jnp.mean(chosen_rewards),
        "rewards/rejected": jnp.mean(rejected_rewards),
        "rewards/margins": jnp.mean(chosen_rewards - rejected_rewards),
        "rewards/accuracies": jnp.mean((chosen_rewards > rejected_rewards).astype(jnp.float32)),
        "logps/chosen": jnp.mean(jax.lax.stop_gradient(chosen_logps)),
        "logps/rejected": jnp.mean(jax.lax.stop_gradient(rejected_logps)),
    }


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
