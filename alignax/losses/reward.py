"""Bradley–Terry reward-model loss (AlpacaFarm reward_modeling_trainer.py; TRL RewardTrainer).

AlpacaFarm (tatsu-lab/alpaca_farm, METHODS.md §11): logit = r_1 − r_0, loss = BCE_with_logits(logit,
choice), averaged; with choice = 1 for the preferred index this is −log σ(r_w − r_l). TRL 0.19.1
RewardTrainer.compute_loss: −log σ(r_w − r_l − margin) when the batch has a "margin" column
(Llama-2's margin loss), averaged. Both are the function below.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.registry import register
from alignax.ops import numerics


@register(
    "reward_bt",
    method="reward_model",
    inputs=("chosen_rewards", "rejected_rewards"),
    hparams={},
    config="configs/reward_model.py",
)
def reward_bt(
    *,
    chosen_rewards: chex.Array,
    rejected_rewards: chex.Array,
    margin: chex.Array | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """L = −mean log σ( r(x, y_w) − r(x, y_l) − m ),  m = margin (0 if absent).

    Args:
      chosen_rewards, rejected_rewards: [B] scalar rewards (the head read at each sequence's last
        real token).
      margin: optional [B] (or scalar) required reward gap.
    Returns: (loss, metrics) with accuracy = mean 1[r_w > r_l] (ties count as wrong, as TRL).
    """
    chex.assert_rank([chosen_rewards, rejected_rewards], 1)
    chex.assert_equal_shape([chosen_rewards, rejected_rewards])
    rw = jnp.asarray(chosen_rewards, jnp.float32)
    rl = jnp.asarray(rejected_rewards, jnp.float32)
    difference = rw - rl
    logits = difference if margin is None else difference - jnp.asarray(margin, jnp.float32)
    loss = -jnp.mean(numerics.log_sigmoid(logits))
    metrics = {
        "accuracy": jnp.mean((difference > 0).astype(jnp.float32)),
        "rewards/chosen": jnp.mean(jax.lax.stop_gradient(rw)),
        "rewards/rejected": jnp.mean(jax.lax.stop_gradient(rl)),
        "rewards/margins": jnp.mean(jax.lax.stop_gradient(difference)),
    }
    return loss, metrics
