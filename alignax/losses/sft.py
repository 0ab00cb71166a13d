"""Supervised fine-tuning NLL and SoFT (Sorted Fine-Tuning, multi-exit NLL).

Both take per-token log-probs of the label tokens (never logits: see alignax.ops for the chunked
kernel) and a loss mask that is 1 on the tokens that carry loss (response tokens) and 0 on prompt
and padding tokens.

Sources
- SFT: the usual token cross-entropy. "token_mean" divides the masked sum by the number of loss
  tokens, as HF/TRL's `num_items_in_batch` does; under gradient accumulation pass the *global*
  token count of the whole accumulated batch as `num_tokens`, so every micro-batch is divided by
  the same number and the accumulated gradient equals the full-batch one.
- SoFT (Kavehzadeh et al., EACL Findings 2024, "Sorted LLaMA"; METHODS.md §8): the NLL of the
  nested sub-models f_n = first n layers -> final norm -> shared LM head, summed over the exits
  n in L_sub (SortedNet sums per-sub-model losses). No official code exists; the paper body could
  not be retrieved here, so three points stay [MEM] as in METHODS.md Appendix A.9: sum vs mean over
  exits (default "sum", option "mean": a mean only rescales the learning rate), all exits trained
  every step (this function takes every exit it is given), and the final norm being applied at
  intermediate exits (a model-side choice: this loss only sees the resulting log-probs).
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax.numpy as jnp

from alignax.losses.registry import Unset, register
from alignax.ops import numerics

_REDUCTIONS = ("token_mean", "sequence_mean")


def _masked_nll(token_logps: jnp.ndarray, loss_mask: jnp.ndarray, *, reduction: str, num_tokens) -> jnp.ndarray:
    """NLL of [B, T] float32 log-probs under a [B, T] float32 mask, reduced as requested."""
    # masked_sum: padding may hold -inf log-probs; masked entries contribute exactly 0.
    token_nll = -numerics.masked_sum(token_logps, loss_mask, axis=-1)
    if reduction == "token_mean":
        denominator = jnp.sum(loss_mask) if num_tokens is None else jnp.asarray(num_tokens, jnp.float32)
        return jnp.sum(token_nll) / jnp.maximum(denominator, 1.0)
    # sequence_mean: mean over sequences of each sequence's token-mean NLL. Fully masked rows
    # (batch padding) are left out of the mean so that padding the batch does not change the loss.
    tokens_per_sequence = jnp.sum(loss_mask, axis=-1)
    per_sequence = token_nll / jnp.maximum(tokens_per_sequence, 1.0)
    has_tokens = (tokens_per_sequence > 0).astype(jnp.float32)
    return jnp.sum(per_sequence * has_tokens) / jnp.maximum(jnp.sum(has_tokens), 1.0)


def _check_reduction(reduction: str, num_tokens) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; expected one of {_REDUCTIONS}")
    if num_tokens is not None and reduction != "token_mean":
        raise ValueError("num_tokens (the global token count) only applies to reduction='token_mean'")


@register(
    "sft",
    method="sft",
    inputs=("token_logps", "loss_mask", "num_tokens"),
    hparams={"reduction": "token_mean"},
    config="configs/sft.py",
)
def sft(
    *,
    token_logps: chex.Array,
    loss_mask: chex.Array,
    reduction: str = "token_mean",
    num_tokens: chex.Numeric | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Negative log-likelihood of the label tokens.

    token_mean:    L = -Σ_{b,t} m_bt log p_bt / N, N = num_tokens if given else Σ m_bt.
    sequence_mean: L = mean over sequences with ≥1 loss token of (-Σ_t m_bt log p_bt / Σ_t m_bt).

    Args:
      token_logps: [B, T] log-probs of the label tokens (any float dtype; computed in float32).
      loss_mask: [B, T] 1/True where the token carries loss.
      reduction: "token_mean" (default, TRL/HF) or "sequence_mean".
      num_tokens: global loss-token count for gradient accumulation (token_mean only).

    Returns:
      (loss, metrics) with metrics nll (this batch's token-mean NLL), ppl, num_tokens.
    """
    chex.assert_rank(token_logps, 2)
    chex.assert_equal_shape([token_logps, loss_mask])
    _check_reduction(reduction, num_tokens)
    logps = jnp.asarray(token_logps, jnp.float32)
    mask = jnp.asarray(loss_mask, jnp.float32)
    loss = _masked_nll(logps, mask, reduction=reduction, num_tokens=num_tokens)
    batch_tokens = jnp.sum(mask)
    batch_nll = -numerics.masked_sum(logps, mask) / jnp.maximum(batch_tokens, 1.0)
    metrics = {"nll": batch_nll, "ppl": jnp.exp(batch_nll), "num_tokens": batch_tokens}
    return loss, metrics


@register(
    "soft",
    method="soft",
    inputs=("exit_token_logps", "loss_mask", "num_tokens"),
    hparams={"exit_reduction": "sum", "reduction": "token_mean", "exit_layers": Unset(tuple)},
    config="configs/soft.py",
)
def soft(
    *,
    exit_token_logps: chex.Array,
    loss_mask: chex.Array,
    exit_reduction: str = "sum",
    reduction: str = "token_mean",
    num_tokens: chex.Numeric | None = None,
    exit_layers: Sequence[int] | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """SoFT: L = Σ_{n ∈ exits} NLL(f_n(x); y)  (or the mean over exits).

    Args:
      exit_token_logps: [L, B, T] per-token label log-probs, one row per exit (through the shared
        head), ordered shallow to deep; the last exit is usually the full model.
      loss_mask: [B, T] loss mask shared by every exit.
      exit_reduction: "sum" (default, SortedNet) or "mean".
      reduction, num_tokens: as in `sft`, applied at each exit.
      exit_layers: optional layer numbers of the exits (e.g. (12, 16, ..., 40)) used to name the
        per-exit metrics `nll/exit_<layer>`; default names by exit index.

    Returns:
      (loss, metrics): per-exit NLLs, `nll` of the deepest exit, and `num_tokens`.
    """
    chex.assert_rank(exit_token_logps, 3)
    chex.assert_rank(loss_mask, 2)
    chex.assert_equal_shape_suffix([exit_token_logps, loss_mask], 2)
    _check_reduction(reduction, num_tokens)
    if exit_reduction not in ("sum", "mean"):
        raise ValueError(f"exit_reduction={exit_reduction!r}; expected 'sum' or 'mean'")
    num_exits = exit_token_logps.shape[0]
    names = list(range(num_exits)) if exit_layers is None else list(exit_layers)
    if len(names) != num_exits:
        raise ValueError(f"exit_layers has {len(names)} entries but exit_token_logps has {num_exits} exits (axis 0)")
    logps = jnp.asarray(exit_token_logps, jnp.float32)
    mask = jnp.asarray(loss_mask, jnp.float32)
    per_exit = jnp.stack(
        [_masked_nll(logps[i], mask, reduction=reduction, num_tokens=num_tokens) for i in range(num_exits)]
    )
    loss = jnp.sum(per_exit) if exit_reduction == "sum" else jnp.mean(per_exit)
    metrics = {f"nll/exit_{name}": per_exit[i] for i, name in enumerate(names)}
    metrics["nll"] = per_exit[-1]
    metrics["num_tokens"] = jnp.sum(mask)
    return loss, metrics
