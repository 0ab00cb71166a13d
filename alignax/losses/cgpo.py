"""CGPO's three judge-gated optimizers (CRPG, CODPO, CRRAFT) and FSPO.

CGPO: "The Perfect Blend: Redefining RLHF with Mixture of Judges" (Xu et al., Meta, arXiv
2409.20370). No official code. The paper body was not retrievable from this workspace (only its
abstract and third-party summaries), so every formula below is as METHODS.md §9 states it [MEM/3P]
and stays unverified; in particular the calibrated-reward baseline ā, the KL handling of CRPG, the
CODPO NLL weight λ and CRRAFT's weighting. The judges themselves are data: each function takes a
boolean `feasible` (every judge of the task accepted the sample) and applies it as the paper says:
  - CRPG: infeasible samples get zero calibrated reward, so they leave the ascent direction.
  - CODPO: the positive is the best *feasible* response and the negative the worst violating one
    (data construction); prompts without a feasible positive are masked out via `pair_mask`.
  - CRRAFT: infeasible samples are dropped; the rest are fine-tuned on, weighted by R_calib.
Calibrated reward: R_calib(s, a) = σ( r(s, a) − r(s, ā) ), ā a baseline (golden / initial-policy)
response for the same prompt.

FSPO (Singh et al., arXiv 2502.19312; built on the official DPO code base): the *loss* is a plain
IPO (default) or DPO loss on the query pair; everything personal lives in the *data construction*:
the prompt is the user's N few-shot preference examples C_u serialized before the query x, and the
log-probs are of the query's responses only, log π(y | C_u, x), for both policy and reference.
`fspo` therefore takes ordinary pairwise log-probs computed on few-shot-conditioned prompts. The
official DPO repository's IPO uses summed (not length-normalized) log-probs, so the default here is
sequence-level; β = 0.1 is unverified [MEM].
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.registry import register
from alignax.losses.common import PAIR_INPUTS, REF_INPUTS, ROLLOUTS
from alignax.losses.common import f32 as _f32, pair_metrics as _pair_metrics
from alignax.ops import numerics


def calibrated_reward(*, rewards: chex.Array, baseline_rewards: chex.Array) -> jnp.ndarray:
    """R_calib(s, a) = σ( r(s, a) − r(s, ā) ) in [0, 1]."""
    chex.assert_equal_shape([rewards, baseline_rewards])
    r, rb = _f32(rewards, baseline_rewards)
    return jax.nn.sigmoid(r - rb)


@register(
    "crpg",
    method=None,
    inputs=("logps", "rewards", "baseline_rewards", "feasible"),
    hparams={"kl_coef": 0.0},
    pending=ROLLOUTS,
)
def crpg(
    *,
    logps: chex.Array,
    rewards: chex.Array,
    baseline_rewards: chex.Array,
    feasible: chex.Array,
    ref_logps: chex.Array | None = None,
    kl_coef: float = 0.0,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CRPG surrogate: its gradient is the paper's primal-only constrained policy gradient.

    w = stopgrad( R_calib(s,a)·1[(s,a) feasible] − kl_coef·(log π(a|s) − log π_ref(a|s)) )
    L = − mean_B  w · log π_w(a|s)         ⇒  ∇L = −(1/|B|) Σ w ∇log π_w(a|s)

    Args:
      logps: [B] summed log-probs of the sampled responses under the current policy.
      rewards, baseline_rewards: [B] reward-model scores of a and of the baseline ā.
      feasible: [B] bool, all judges accept.
      ref_logps, kl_coef: optional KL-to-reference shaping of the reward (0 by default; the
        paper's KL regularizer/bound and its value are unverified).
    """
    chex.assert_rank([logps, rewards, baseline_rewards, feasible], 1)
    chex.assert_equal_shape([logps, rewards, baseline_rewards, feasible])
    (lp,) = _f32(logps)
    gate = jnp.asarray(feasible, jnp.float32)
    r_calib = calibrated_reward(rewards=rewards, baseline_rewards=baseline_rewards)
    weight = r_calib * gate
    metrics = {"calibrated_reward": jnp.mean(r_calib), "feasible_fraction": jnp.mean(gate)}
    if ref_logps is not None:
        chex.assert_equal_shape([logps, ref_logps])
        log_ratio = lp - jnp.asarray(ref_logps, jnp.float32)
        weight = weight - kl_coef * log_ratio
        metrics["kl"] = jnp.mean(jax.lax.stop_gradient(log_ratio))
    weight = jax.lax.stop_gradient(weight)
    loss = -jnp.mean(weight * lp)
    return loss, metrics


@register(
    "codpo",
    method="pairwise",
    inputs=(*REF_INPUTS, "chosen_logps", "rejected_logps", "chosen_lengths"),
    hparams={"beta": 0.1, "nll_weight": 1.0},
    reference=True,
    config="configs/dpo.py",
)
def codpo(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    chosen_lengths: chex.Array,
    beta: float = 0.1,
    nll_weight: float = 1.0,
    pair_mask: chex.Array | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CODPO: DPO on (best feasible, worst violating) + a length-normalized NLL on the positive.

    L_i = −log σ( β[ρ(a⁺) − ρ(a⁻)] ) − (λ/|a⁺|) log π_w(a⁺|s),   ρ = log π_w − log π_ref
    L = Σ m_i L_i / Σ m_i  (m = pair_mask: prompts with no feasible positive are left out).

    λ = nll_weight (1.0, unverified), β = 0.1 (unverified).
    """
    arrays = [chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths]
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)
    pw, pl, rw, rl, nw = _f32(*arrays)
    mask = jnp.ones_like(pw) if pair_mask is None else jnp.asarray(pair_mask, jnp.float32)
    chex.assert_equal_shape([pw, mask])
    dpo_losses = -numerics.log_sigmoid(beta * ((pw - rw) - (pl - rl)))
    nll_losses = -pw / jnp.maximum(nw, 1.0)
    losses = dpo_losses + nll_weight * nll_losses
    denominator = jnp.maximum(jnp.sum(mask), 1.0)
    metrics = _pair_metrics(chosen_rewards=beta * (pw - rw), rejected_rewards=beta * (pl - rl), chosen_logps=pw, rejected_logps=pl)
    metrics["codpo/dpo"] = jnp.sum(dpo_losses * mask) / denominator
    metrics["codpo/nll"] = jnp.sum(nll_losses * mask) / denominator
    return jnp.sum(losses * mask) / denominator, metrics


@register(
    "crraft",
    method="multi_sample",
    inputs=("logps", "lengths", "rewards", "baseline_rewards", "feasible"),
    hparams={"length_normalize": True},
    config="configs/scored_samples.py",
)
def crraft(
    *,
    logps: chex.Array,
    lengths: chex.Array,
    rewards: chex.Array,
    baseline_rewards: chex.Array,
    feasible: chex.Array,
    length_normalize: bool = True,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CRRAFT: reward-weighted fine-tuning on the selected feasible responses.

    L = − Σ_i 1[feasible_i] · stopgrad(R_calib_i) · ℓ_i / Σ_i 1[feasible_i],
    ℓ_i = log π_w(a_i|s_i) / |a_i| (length_normalize, default) or the summed log-prob.

    The selection (top-1 or top-m by R_calib among feasible candidates, optionally with the golden
    response in the pool) is data construction; pass the selected responses here. Infeasible rows
    contribute nothing (they are dropped, as the paper says).
    """
    arrays = [logps, lengths, rewards, baseline_rewards, feasible]
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)
    lp, n = _f32(logps, lengths)
    gate = jnp.asarray(feasible, jnp.float32)
    r_calib = jax.lax.stop_gradient(calibrated_reward(rewards=rewards, baseline_rewards=baseline_rewards))
    per_example = lp / jnp.maximum(n, 1.0) if length_normalize else lp
    loss = -jnp.sum(gate * r_calib * per_example) / jnp.maximum(jnp.sum(gate), 1.0)
    metrics = {
        "calibrated_reward": jnp.sum(gate * r_calib) / jnp.maximum(jnp.sum(gate), 1.0),
        "feasible_fraction": jnp.mean(gate),
        "nll": -jnp.sum(gate * jax.lax.stop_gradient(per_example)) / jnp.maximum(jnp.sum(gate), 1.0),
    }
    return loss, metrics


@register(
    "fspo",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "base_loss": "ipo", "length_normalize": False},
    reference=True,
    config="configs/dpo.py",
)
def fspo(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    chosen_lengths: chex.Array | None = None,
    rejected_lengths: chex.Array | None = None,
    beta: float = 0.1,
    base_loss: str = "ipo",
    length_normalize: bool = False,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """FSPO loss on few-shot-conditioned log-probs log π(y | C_u, x).

    h = ρ(y_w) − ρ(y_l), ρ = log π_θ(y|C_u,x) − log π_ref(y|C_u,x)  (divided by |y| if
    length_normalize, the TRL IPO convention)
    base_loss "ipo" (default): L = mean (h − 1/(2β))²;  "sigmoid" (DPO): L = −mean log σ(βh).
    """
    arrays = [chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps]
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)
    if base_loss not in ("ipo", "sigmoid"):
        raise ValueError(f"base_loss={base_loss!r}; expected 'ipo' or 'sigmoid'")
    pw, pl, rw, rl = _f32(*arrays)
    rho_w, rho_l = pw - rw, pl - rl
    if length_normalize:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("fspo(length_normalize=True) needs chosen_lengths and rejected_lengths")
        chex.assert_equal_shape([pw, chosen_lengths, rejected_lengths])
        nw, nl = _f32(chosen_lengths, rejected_lengths)
        rho_w, rho_l = rho_w / jnp.maximum(nw, 1.0), rho_l / jnp.maximum(nl, 1.0)
    h = rho_w - rho_l
    if base_loss == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = -numerics.log_sigmoid(beta * h)
    # Rewards are logged on the summed log-ratios as TRL does, whatever the normalization.
    metrics = _pair_metrics(chosen_rewards=beta * (pw - rw), rejected_rewards=beta * (pl - rl), chosen_logps=pw, rejected_logps=pl)
    return jnp.mean(losses), metrics
