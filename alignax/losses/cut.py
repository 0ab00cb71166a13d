"""CUT: Contrastive Unlikelihood Training (Xu et al., "Reasons to Reject? Aligning Language Models
with Judgments", ACL Findings 2024; wwxu21/CUT).

Checked against modeling_llama_unlikelihood.py (wwxu21/CUT @ 76fcc40, read here):
- The batch is [aligned half; misaligned half] from one model in one forward pass. Aligned half:
  positive examples under the plain prompt (Align-P) and negative examples under the
  judgment-conditioned prompt (Align-N). Misaligned half: the negative response y under the
  judgment-free prompt (Misalign).
- L_MLE = mean token NLL over the aligned half (all rows).
- A negative example's response token t is flagged iff the *detached* ratio
  p(y_t | x, j, y_<t) / p(y_t | x, y_<t) > λ.
- L_UL = −(1/N) [ Σ_flagged α·log(1 − p_0) + Σ_unflagged log p_0 ] over the N response tokens of
  the negative examples (p_0 from the judgment-free context); a probability (p_0, or 1 − p_0 on
  flagged tokens) that is exactly 0 gets 1e-5 added before the log.
- L = (L_MLE + L_UL)/2 if the batch holds a negative example, else L_MLE. The code ran with
  micro-batch 1, so this was decided per example; here it is decided per batch as the code would.
- The paper writes L_AlignP + L_AlignN + L_UL [MEM]; alignax follows the code (what was run).
Defaults λ = 1.1, α = 1 (README, online setting); offline Shepherd: λ = 1.2, α = 0.5.

Difference from the code: 1 − p_0 is computed as −expm1(log p_0), more precise than 1 − softmax
in float32; the two agree wherever 1 − p_0 is representable.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

from alignax.losses.registry import register
from alignax.ops import numerics

_ZERO_PROBABILITY_FLOOR = 1e-5  # the official code adds 1e-5 to probabilities that are exactly 0


def cut_flags(
    *,
    judged_logps: chex.Array,
    unjudged_logps: chex.Array,
    mask: chex.Array,
    threshold: float = 1.1,
) -> jnp.ndarray:
    """Inappropriate-token flags: p(y_t|x,j,y_<t) / p(y_t|x,y_<t) > λ, on masked tokens, detached.

    Args:
      judged_logps: [B, T] log-probs of the response tokens given (x, j).
      unjudged_logps: [B, T] log-probs of the same response tokens given x only (same positions).
      mask: [B, T] response-token mask.
      threshold: λ ≥ 1.
    Returns: bool [B, T].
    """
    chex.assert_rank(judged_logps, 2)
    chex.assert_equal_shape([judged_logps, unjudged_logps, mask])
    log_ratio = jax.lax.stop_gradient(jnp.asarray(judged_logps, jnp.float32) - jnp.asarray(unjudged_logps, jnp.float32))
    return (log_ratio > math.log(threshold)) & jnp.asarray(mask, bool)


def _log_floored(probability: jnp.ndarray) -> jnp.ndarray:
    """log(p), with p == 0 replaced by 1e-5 as in the official code."""
    return jnp.log(jnp.where(probability == 0.0, _ZERO_PROBABILITY_FLOOR, probability))


@register(
    "cut",
    method="cut",
    inputs=("aligned_logps", "aligned_mask", "unjudged_logps", "is_negative"),
    hparams={"threshold": 1.1, "unlikelihood_weight": 1.0},
    config="configs/cut.py",
)
def cut(
    *,
    aligned_logps: chex.Array,
    aligned_mask: chex.Array,
    unjudged_logps: chex.Array,
    is_negative: chex.Array,
    threshold: float = 1.1,
    unlikelihood_weight: float = 1.0,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CUT loss from per-token log-probs.

    L_MLE = −Σ m·log p_aligned / Σ m                         (all rows)
    flag  = stopgrad(p_aligned / p_0) > λ                     (negative rows)
    L_UL  = −[Σ_flag α·log(1 − p_0) + Σ_¬flag log p_0] / N_neg (negative rows)
    L     = (L_MLE + L_UL)/2 if any row is negative else L_MLE

    Args:
      aligned_logps: [B, T] response-token log-probs in the aligned context: plain prompt for
        positive rows, judgment prompt for negative rows.
      aligned_mask: [B, T] response-token mask (the same tokens y in both contexts).
      unjudged_logps: [B, T] log-probs of the same tokens under the judgment-free prompt; only
        read on negative rows (positive rows may hold anything finite, e.g. zeros).
      is_negative: [B] bool, True for examples with a negative judgment.
      threshold: λ (default 1.1). unlikelihood_weight: α (default 1.0).
    """
    chex.assert_rank(aligned_logps, 2)
    chex.assert_equal_shape([aligned_logps, aligned_mask, unjudged_logps])
    chex.assert_shape(is_negative, aligned_logps.shape[:1])
    aligned = jnp.asarray(aligned_logps, jnp.float32)
    unjudged = jnp.asarray(unjudged_logps, jnp.float32)
    mask = jnp.asarray(aligned_mask, jnp.float32)
    negative = jnp.asarray(is_negative, bool)

    mle = -numerics.masked_sum(aligned, mask) / jnp.maximum(jnp.sum(mask), 1.0)

    negative_tokens = mask * negative[:, None].astype(jnp.float32)
    flags = cut_flags(judged_logps=aligned, unjudged_logps=unjudged, mask=negative_tokens, threshold=threshold)
    p0 = jnp.exp(unjudged)
    log_p0 = jnp.where(p0 == 0.0, math.log(_ZERO_PROBABILITY_FLOOR), unjudged)
    log_one_minus_p0 = _log_floored(-jnp.expm1(unjudged))
    token_terms = jnp.where(flags, unlikelihood_weight * log_one_minus_p0, log_p0)
    num_negative_tokens = jnp.sum(negative_tokens)
    unlikelihood = -numerics.masked_sum(token_terms, negative_tokens) / jnp.maximum(num_negative_tokens, 1.0)

    has_negative = jnp.any(negative)
    loss = jnp.where(has_negative, 0.5 * (mle + unlikelihood), mle)
    num_flagged = jnp.sum(flags.astype(jnp.float32))
    metrics = {
        "cut/mle": mle,
        "cut/unlikelihood": unlikelihood,
        "cut/num_flagged": num_flagged,
        "cut/flagged_fraction": num_flagged / jnp.maximum(num_negative_tokens, 1.0),
        "cut/negative_fraction": jnp.mean(negative.astype(jnp.float32)),
    }
    return loss, metrics
