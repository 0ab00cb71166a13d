"""KTO (Ethayarajh et al., 2024): unpaired desirable/undesirable completions and its KL baseline z0.

Peer: TRL 0.19.1 `KTOTrainer.kto_loss`; tests/test_losses_dpo.py.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.common import checked_f32, example_weights, weighted_mean
from alignax.losses.registry import register

# --------------------------------------------------------------------------------------------
# KTO (unpaired)
# --------------------------------------------------------------------------------------------


def kto_kl_baseline(kl_logps, ref_kl_logps, *, axis_name=None):
    """KTO's reference point z0 = max(0, mean_i [log π_θ(y'_i|x_i) − log π_ref(y'_i|x_i)]), detached.

    (x_i, y'_i) are mismatched pairs (TRL cycles completions by one within the batch). Under
    pmap/shard_map pass `axis_name` to average across devices first, as TRL gathers.
    """
    kl = jnp.mean(checked_f32("kl_logps", kl_logps) - checked_f32("ref_kl_logps", ref_kl_logps))
    if axis_name is not None:
        kl = jax.lax.pmean(kl, axis_name)
    return jax.lax.stop_gradient(jnp.maximum(kl, 0.0))


@register(
    "kto",
    method="kto",
    inputs=("logps", "ref_logps", "desirable", "kl_baseline"),
    hparams={"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0},
    reference=True,
    config="configs/kto.py",
)
def kto(
    *,
    logps,
    ref_logps,
    desirable,
    kl_baseline,
    example_mask=None,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
):
    """KTO (Ethayarajh et al., 2024), unpaired: each example has one completion and a label.

    r = log π_θ(y|x) − log π_ref(y|x) (summed); z0 = `kl_baseline` (see `kto_kl_baseline`; a
    stop-gradient is applied here too). Per example:
      desirable:   λ_D (1 − σ(β(r − z0)))
      undesirable: λ_U (1 − σ(β(z0 − r)))
    loss = mean over the batch. Defaults β = 0.1, λ_D = λ_U = 1 (paper and TRL). TRL warns unless
    λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3].
    """
    policy = checked_f32("logps", logps)
    batch = policy.shape[0]
    ref = jax.lax.stop_gradient(checked_f32("ref_logps", ref_logps, batch))
    is_desirable = jnp.asarray(desirable).astype(bool)
    chex.assert_shape(is_desirable, (batch,), custom_message="kto: `desirable` must be [B] booleans")
    w = example_weights(example_mask, batch)
    z0 = jax.lax.stop_gradient(jnp.asarray(kl_baseline, jnp.float32))
    rewards = beta * (policy - ref)
    logratio = policy - ref
    per_example = jnp.where(
        is_desirable,
        desirable_weight * (1.0 - jax.nn.sigmoid(beta * (logratio - z0))),
        undesirable_weight * (1.0 - jax.nn.sigmoid(beta * (z0 - logratio))),
    )
    loss = weighted_mean(per_example, w)
    w_d, w_u = w * is_desirable, w * (~is_desirable)
    rewards = jax.lax.stop_gradient(rewards)
    metrics = {
        "kl": z0,
        "rewards/chosen": weighted_mean(rewards, w_d),
        "rewards/rejected": weighted_mean(rewards, w_u),
        "rewards/margins": weighted_mean(rewards, w_d) - weighted_mean(rewards, w_u),
        "logps/chosen": weighted_mean(jax.lax.stop_gradient(policy), w_d),
        "logps/rejected": weighted_mean(jax.lax.stop_gradient(policy), w_u),
        "count/chosen": jnp.sum(w_d),
        "count/rejected": jnp.sum(w_u),
    }
    return loss, metrics


__all__ = ["kto", "kto_kl_baseline"]
