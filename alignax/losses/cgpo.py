"""CGPO's three judge-gated optimizers (CRPG, CODPO, CRRAFT) and FSPO.

CGPO: "The Perfect Blend: Redefining RLHF with Mixture of Judges" (Xu et al., Meta, arXiv
2409.20370). No official code. The paper body was not retrievable from this workspace; the formulas
follow METHODS.md §9 as checked against the one public implementation written from the paper,
Hugging Face TRL's CGPO trainer (`trl/trainer/cgpo_trainer.py` and `cgpo_config.py`, contributed
by G. Lopez; it cites the paper's Eq. 14 for CODPO and Eq. 18 for CRRAFT) [3P]. Where that code and
METHODS.md differ, the code is followed, as each docstring says:
  - CRPG: the calibrated, judge-gated reward is also scaled by the KL factor max(0, 1 − KL/KL_max)
    and centred by its batch mean (a baseline): a primal-only policy gradient with a baseline.
  - CODPO: DPO + (λ/|a⁺|)·NLL with λ = 5 (TRL's `lamb` default), β = 0.1; prompts without a
    feasible positive are masked out via `pair_mask`.
  - CRRAFT: reward-weighted NLL on the *summed* log-prob (no length normalization) of the selected
    responses that are feasible and, optionally, within the KL threshold.
The judges themselves are data: each function takes a boolean `feasible` (every judge of the task
accepted the sample). Calibrated reward: R_calib(s, a) = σ( r(s, a) − r(s, ā) ), ā the baseline
(golden / initial-policy) response for the same prompt. Per-sample KL: log π(a|s) − log π_ref(a|s).
Task-specific KL_max, β and λ are in the paper's appendix and remain unverified [MEM].

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

from alignax.losses.common import PAIR_INPUTS, REF_INPUTS, ROLLOUTS
from alignax.losses.common import f32 as _f32
from alignax.losses.common import pair_metrics as _pair_metrics
from alignax.losses.registry import Unset, register
from alignax.ops import numerics


def calibrated_reward(*, rewards: chex.Array, baseline_rewards: chex.Array) -> jnp.ndarray:
    """R_calib(s, a) = σ( r(s, a) − r(s, ā) ) in [0, 1]."""
    chex.assert_equal_shape([rewards, baseline_rewards])
    r, rb = _f32(rewards, baseline_rewards)
    return jax.nn.sigmoid(r - rb)


@register(
    "crpg",
    method=None,
    inputs=("logps", "ref_logps", "rewards", "baseline_rewards", "feasible"),
    hparams={"kl_threshold": Unset(float)},
    reference=True,
    pending=ROLLOUTS,
)
def crpg(
    *,
    logps: chex.Array,
    rewards: chex.Array,
    baseline_rewards: chex.Array,
    feasible: chex.Array,
    ref_logps: chex.Array,
    kl_threshold: float,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CRPG surrogate: its gradient is CGPO's calibrated-regularized policy gradient with a baseline.

    KL_i = log π_w(a_i|s_i) − log π_ref(a_i|s_i)                          (per sample, detached)
    R_i  = R_calib(s_i, a_i) · 1[(s_i, a_i) feasible] · max(0, 1 − KL_i / KL_max)
    L    = − mean_B stopgrad(R_i − mean_B R) · log π_w(a_i|s_i)
    ⇒ ∇L = −(1/|B|) Σ_i (R_i − R̄) ∇log π_w(a_i|s_i)

    Sources: METHODS.md §9 (gated calibrated reward, 1/|B| average) and TRL's CGPO trainer
    (`crpg_optimization`: KL factor `clamp(1 − kl/kl_threshold, min=0)`, batch-mean baseline) [3P].
    TRL divides by the batch's response-token count instead of |B|; alignax keeps 1/|B|.

    Args:
      logps: [B] summed log-probs of the sampled responses under the current policy.
      rewards, baseline_rewards: [B] reward-model scores of a and of the baseline ā.
      feasible: [B] bool, all judges accept.
      ref_logps: [B] summed log-probs of the same responses under the reference policy.
      kl_threshold: KL_max > 0; task-specific (paper appendix), so no default (as in TRL).
    """
    arrays = [logps, rewards, baseline_rewards, feasible, ref_logps]
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)
    if not kl_threshold > 0:
        raise ValueError(f"crpg: kl_threshold (KL_max) must be > 0, got {kl_threshold!r}")
    lp, ref = _f32(logps, ref_logps)
    gate = jnp.asarray(feasible, jnp.float32)
    r_calib = calibrated_reward(rewards=rewards, baseline_rewards=baseline_rewards)
    kl = jax.lax.stop_gradient(lp - ref)
    regularized = jax.lax.stop_gradient(r_calib * gate * jnp.maximum(1.0 - kl / kl_threshold, 0.0))
    advantage = regularized - jnp.mean(regularized)
    loss = -jnp.mean(advantage * lp)
    metrics = {
        "calibrated_reward": jnp.mean(r_calib),
        "regularized_reward": jnp.mean(regularized),
        "feasible_fraction": jnp.mean(gate),
        "kl": jnp.mean(kl),
    }
    return loss, metrics


@register(
    "codpo",
    method="pairwise",
    inputs=("chosen_logps", "rejected_logps", *REF_INPUTS, "chosen_lengths"),
    hparams={"beta": 0.1, "nll_weight": 5.0},
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
    nll_weight: float = 5.0,
    pair_mask: chex.Array | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CODPO: DPO on (best feasible, worst violating) + a length-normalized NLL on the positive.

    L_i = −log σ( β[ρ(a⁺) − ρ(a⁻)] ) − (λ/|a⁺|) log π_w(a⁺|s),   ρ = log π_w − log π_ref
    L = Σ m_i L_i / Σ m_i  (m = pair_mask: prompts with no feasible positive are left out).

    The paper's Eq. 14 as TRL's CGPO trainer implements it (`codpo_optimization`) [3P]: summed
    log-probs in the DPO term, |a⁺| = response tokens of the positive. λ = nll_weight = 5.0 (TRL's
    `lamb` default), β = 0.1. Pair construction is data, not this function: a⁺ the highest-reward
    feasible response, a⁻ the lowest-reward violating one (the lowest-reward one overall when all
    are feasible).
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
    metrics = _pair_metrics(
        chosen_rewards=beta * (pw - rw), rejected_rewards=beta * (pl - rl), chosen_logps=pw, rejected_logps=pl
    )
    metrics["codpo/dpo"] = jnp.sum(dpo_losses * mask) / denominator
    metrics["codpo/nll"] = jnp.sum(nll_losses * mask) / denominator
    return jnp.sum(losses * mask) / denominator, metrics


@register(
    "crraft",
    method="multi_sample",
    inputs=("logps", "lengths", "ref_logps", "rewards", "baseline_rewards", "feasible"),
    hparams={"length_normalize": False, "kl_threshold": Unset(float)},
    reference=True,
    config="configs/scored_samples.py",
)
def crraft(
    *,
    logps: chex.Array,
    rewards: chex.Array,
    baseline_rewards: chex.Array,
    feasible: chex.Array,
    lengths: chex.Array | None = None,
    ref_logps: chex.Array | None = None,
    kl_threshold: float | None = None,
    length_normalize: bool = False,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """CRRAFT: calibrated-reward-weighted fine-tuning on the selected feasible responses.

    g_i = 1[feasible_i] · 1[KL_i ≤ KL_max]   (the KL gate only when kl_threshold is given; it reads ref_logps)
    L   = − Σ_i g_i · stopgrad(R_calib_i) · log π_w(a_i|s_i) / Σ_i g_i
    on the *summed* log-prob: the paper's Eq. 18 as TRL's CGPO trainer implements it
    (`crraft_optimization`) [3P]. `length_normalize=True` (an alignax option, off by default) uses
    log π_w(a_i|s_i)/|a_i| instead and needs `lengths`.

    The selection (top-1 by gated R_calib among the candidates; if none passes, the golden baseline
    response with R_calib = σ(0) = 0.5 when it passes) is data construction: pass the selected
    responses here. Rows with g_i = 0 contribute nothing (dropped, as the paper says).
    """
    arrays = [logps, rewards, baseline_rewards, feasible]
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)
    if kl_threshold is not None and ref_logps is None:
        raise ValueError("crraft: the KL gate (kl_threshold) needs ref_logps")
    (lp,) = _f32(logps)
    gate = jnp.asarray(feasible, jnp.float32)
    metrics = {"feasible_fraction": jnp.mean(gate)}
    if kl_threshold is not None:
        chex.assert_equal_shape([logps, ref_logps])
        kl = jax.lax.stop_gradient(lp - jnp.asarray(ref_logps, jnp.float32))
        gate = gate * (kl <= kl_threshold).astype(jnp.float32)
        metrics["kl"] = jnp.mean(kl)
    kept = gate > 0
    if length_normalize:
        if lengths is None:
            raise ValueError("crraft(length_normalize=True) needs `lengths`")
        chex.assert_equal_shape([logps, lengths])
        (n,) = _f32(lengths)
        lp = lp / jnp.where(kept, jnp.maximum(n, 1.0), 1.0)
    r_calib = jax.lax.stop_gradient(calibrated_reward(rewards=rewards, baseline_rewards=baseline_rewards))
    count = jnp.maximum(jnp.sum(gate), 1.0)
    loss = -numerics.masked_sum(r_calib * lp, gate) / count
    metrics["kept_fraction"] = jnp.mean(gate)
    metrics["calibrated_reward"] = numerics.masked_sum(r_calib, gate) / count
    metrics["nll"] = -numerics.masked_sum(jax.lax.stop_gradient(lp), gate) / count
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
    metrics = _pair_metrics(
        chosen_rewards=beta * (pw - rw), rejected_rewards=beta * (pl - rl), chosen_logps=pw, rejected_logps=pl
    )
    return jnp.mean(losses), metrics
