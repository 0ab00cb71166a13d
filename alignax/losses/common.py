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
