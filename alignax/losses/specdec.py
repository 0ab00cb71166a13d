"""SpecDec++ acceptance-prediction head loss (Huang, Guo, Wang; COLM 2025; Kaffaljidhmah2/SpecDec_pp).

Checked against specdec_pp/train.py (MyTrainer.compute_loss, read here): two-class logits
[reject, accept] from the head at each draft-token position; soft label p = p_acc (the true
acceptance probability min(1, p_target/p_draft)); torch CrossEntropyLoss with class weights
[weight_mismatch, 1] and reduction "none" for the hard labels 0 and 1, mixed by (1 − p) and p, summed
and divided by Σ [w(1 − p) + p] over loss-bearing positions:

  L = Σ_i [ w(1 − p_i)(−log P̂_reject,i) + p_i(−log P̂_accept,i) ] / Σ_i [ w(1 − p_i) + p_i ]

Positions that hold the target's own token (mixing ratio r = 0.15) or prompt/padding carry no loss:
mask them out. `weight_mismatch` defaults to 1 in train.py; 6 was the best setting, used here.
The monitored metric is the binary KL(p ‖ P̂_accept), with 0·log 0 = 0.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.common import DRAFT
from alignax.losses.registry import register


def _xlogx(x: jnp.ndarray) -> jnp.ndarray:
    safe = jnp.where(x > 0, x, 1.0)
    return jnp.where(x > 0, x * jnp.log(safe), 0.0)


@register(
    "specdec_acceptance",
    method=None,
    inputs=("logits", "accept_probs", "mask"),
    hparams={"mismatch_weight": 6.0},
    pending=DRAFT,
)
def specdec_acceptance(
    *,
    logits: chex.Array,
    accept_probs: chex.Array,
    mask: chex.Array,
    mismatch_weight: float = 6.0,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Class-weighted soft-label 2-class cross-entropy, normalized by the total weight.

    Args:
      logits: [B, T, 2] head logits, index 0 = reject, 1 = accept.
      accept_probs: [B, T] soft labels p_acc in [0, 1].
      mask: [B, T] 1 where the position carries loss.
      mismatch_weight: w, the reject-class weight.
    """
    chex.assert_rank([logits, accept_probs, mask], [3, 2, 2])
    chex.assert_shape(logits, (*accept_probs.shape, 2))
    chex.assert_equal_shape([accept_probs, mask])
    log_probs = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    p = jnp.asarray(accept_probs, jnp.float32)
    m = jnp.asarray(mask, jnp.float32)
    reject_weight = mismatch_weight * (1.0 - p) * m
    accept_weight = p * m
    numerator = jnp.sum(reject_weight * -log_probs[..., 0] + accept_weight * -log_probs[..., 1])
    loss = numerator / jnp.maximum(jnp.sum(reject_weight + accept_weight), 1e-12)
    cross_entropy = p * -log_probs[..., 1] + (1.0 - p) * -log_probs[..., 0]
    entropy_term = _xlogx(p) + _xlogx(1.0 - p)
    count = jnp.maximum(jnp.sum(m), 1.0)
    predicted_accept = jnp.exp(log_probs[..., 1])
    metrics = {
        "kl": jnp.sum((cross_entropy + entropy_term) * m) / count,
        "predicted_accept": jnp.sum(jax.lax.stop_gradient(predicted_accept) * m) / count,
        "target_accept": jnp.sum(p * m) / count,
    }
    return loss, metrics
