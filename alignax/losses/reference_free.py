"""Reference-free pairwise objectives: SimPO, CPO and ORPO (same contract as alignax.losses.dpo_family).

Peer: TRL 0.19.1 `CPOTrainer.cpo_loss` and `ORPOTrainer.odds_ratio_loss`; tests/test_losses_dpo.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.common import (
    PAIR_INPUTS,
    finish_pair,
    length_average,
    pair_inputs,
    response_lengths,
    smoothed_sigmoid_loss,
    weighted_mean,
)
from alignax.losses.registry import register
from alignax.ops import numerics

# --------------------------------------------------------------------------------------------
# Reference-free pairwise objectives: SimPO, CPO, ORPO
# --------------------------------------------------------------------------------------------


def _chosen_token_nll(chosen, len_w, weights):
    """Token-mean NLL over all chosen response tokens of the batch: −Σ log π_w / Σ |y_w|.

    Equals `CrossEntropyLoss` (mean over non-ignored tokens) on the chosen labels, as TRL's
    CPO/ORPO `policy_nll_loss` when only response tokens are labels.
    """
    return -jnp.sum(weights * chosen) / jnp.maximum(jnp.sum(weights * len_w), 1.0)


@register(
    "simpo",
    method="pairwise",
    inputs=(*PAIR_INPUTS,),
    hparams={"beta": 2.0, "gamma_beta_ratio": 0.25, "label_smoothing": 0.0, "loss_type": "sigmoid", "sft_weight": 0.0},
    config="configs/simpo.py",
)
def simpo(
    *,
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    example_mask=None,
    beta: float = 2.0,
    gamma_beta_ratio: float = 0.25,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
    sft_weight: float = 0.0,
):
    """SimPO (Meng, Xia & Chen, 2024): reference-free, length-normalized, with target margin γ.

    z = β (log π_w/|y_w| − log π_l/|y_l|) − γ, γ = β·gamma_beta_ratio;
    L = −(1−ε) log σ(z) − ε log σ(−z) (loss_type "sigmoid"), or max(0, 1 − z) ("hinge").
    This is the code form of princeton-nlp/SimPO, logits = (avg_w − avg_l) − γ/β and z = β·logits,
    identical to the paper's Eq. 6 with γ = β·gamma_beta_ratio. Defaults from scripts/simpo_config.py: β = 2.0, γ/β = 0.25, ε = 0,
    sft_weight = 0 (SFT term off, as in the released models). TRL's CPOTrainer(loss_type="simpo")
    takes γ itself as `simpo_gamma` (default 0.5 = 2.0·0.25, the same default).
    Reference log-probs are accepted for a uniform call signature and ignored.
    """
    chosen, rejected, _, _, w = pair_inputs(chosen_logps, rejected_logps, None, None, example_mask, needs_ref=False)
    len_w, len_r = response_lengths(chosen_lengths, rejected_lengths, chosen.shape[0], "simpo")
    avg_w, avg_l = length_average(chosen, len_w, w), length_average(rejected, len_r, w)
    logits = (avg_w - avg_l) - gamma_beta_ratio
    if loss_type == "sigmoid":
        per_example = smoothed_sigmoid_loss(beta * logits, label_smoothing)
    elif loss_type == "hinge":
        per_example = jax.nn.relu(1.0 - beta * logits)
    else:
        raise ValueError(f"simpo: loss_type must be 'sigmoid' or 'hinge', got {loss_type!r}")
    loss, metrics = finish_pair(
        per_example,
        w,
        chosen_rewards=beta * avg_w,
        rejected_rewards=beta * avg_l,
        chosen_logps=chosen,
        rejected_logps=rejected,
    )
    if sft_weight:
        nll = _chosen_token_nll(chosen, len_w, w)
        loss = loss + sft_weight * nll
        metrics["nll_loss"] = jax.lax.stop_gradient(nll)
    return loss, metrics


@register(
    "cpo",
    method="pairwise",
    inputs=(*PAIR_INPUTS,),
    hparams={"beta": 0.1, "label_smoothing": 0.0, "loss_type": "sigmoid", "simpo_gamma": 0.5, "cpo_alpha": 1.0},
    config="configs/simpo.py",
)
def cpo(
    *,
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
    simpo_gamma: float = 0.5,
    cpo_alpha: float = 1.0,
):
    """CPO (Xu et al., 2024, "Contrastive Preference Optimization") as TRL's CPOTrainer.

    Reference-free preference term on s = log π (summed) for "sigmoid"/"hinge" and on
    s = log π/|y| (averaged) for "ipo"/"simpo", as TRL (`average_log_prob = loss_type in
    [ipo, simpo]`); d = s_w − s_l:
      sigmoid: −(1−ε) log σ(βd) − ε log σ(−βd)   (CPO paper Eq. 3 at ε = 0)
      simpo:   same with d − γ/β (γ = simpo_gamma)
      hinge:   max(0, 1 − βd)
      ipo:     (d − 1/(2β))²
    plus cpo_alpha × NLL(chosen) (token mean, `_chosen_token_nll`). Defaults are TRL's
    (β = 0.1, ε = 0, γ = 0.5, α = 1). Rewards β·s.
    """
    chosen, rejected, _, _, w = pair_inputs(chosen_logps, rejected_logps, None, None, example_mask, needs_ref=False)
    len_w, len_r = response_lengths(chosen_lengths, rejected_lengths, chosen.shape[0], "cpo")
    if loss_type in ("ipo", "simpo"):
        s_w, s_l = length_average(chosen, len_w, w), length_average(rejected, len_r, w)
    else:
        s_w, s_l = chosen, rejected
    d = s_w - s_l
    if loss_type == "sigmoid":
        per_example = smoothed_sigmoid_loss(beta * d, label_smoothing)
    elif loss_type == "simpo":
        per_example = smoothed_sigmoid_loss(beta * (d - simpo_gamma / beta), label_smoothing)
    elif loss_type == "hinge":
        per_example = jax.nn.relu(1.0 - beta * d)
    elif loss_type == "ipo":
        per_example = jnp.square(d - 1.0 / (2.0 * beta))
    else:
        raise ValueError(f"cpo: loss_type must be one of sigmoid, simpo, hinge, ipo; got {loss_type!r}")
    nll = _chosen_token_nll(chosen, len_w, w)
    preference_loss, metrics = finish_pair(
        per_example, w, chosen_rewards=beta * s_w, rejected_rewards=beta * s_l, chosen_logps=s_w, rejected_logps=s_l
    )
    metrics["nll_loss"] = jax.lax.stop_gradient(nll)
    return preference_loss + cpo_alpha * nll, metrics


@register(
    "orpo",
    method="pairwise",
    inputs=(*PAIR_INPUTS,),
    hparams={"beta": 0.1},
    config="configs/orpo.py",
)
def orpo(
    *,
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    example_mask=None,
    beta: float = 0.1,
    chosen_nll=None,
):
    """ORPO (Hong, Lee & Thorne, 2024): L = NLL(y_w) − λ · mean log σ(log odds_w − log odds_l).

    With P(y|x) = exp(log π(y|x)/|y|) (length-averaged), log odds(y) = log P − log(1 − P), where
    log(1 − P) = log1mexp(log P) (stable two-branch form; TRL uses log1p(−exp(·)), same value).
    λ = `beta` = 0.1 (TRL's default and the paper's). NLL: `chosen_nll` if given (e.g. computed
    with prompt tokens included, TRL's behaviour when the prompt is not masked); by default the
    token-mean NLL of the chosen response tokens (METHODS.md Appendix A.3: response only).
    Rewards β·avg log π, as TRL.
    """
    chosen, rejected, _, _, w = pair_inputs(chosen_logps, rejected_logps, None, None, example_mask, needs_ref=False)
    len_w, len_r = response_lengths(chosen_lengths, rejected_lengths, chosen.shape[0], "orpo")
    avg_w, avg_l = length_average(chosen, len_w, w), length_average(rejected, len_r, w)
    log_odds = (avg_w - avg_l) - (numerics.log1mexp(avg_w) - numerics.log1mexp(avg_l))
    log_sigmoid_odds = numerics.log_sigmoid(log_odds)
    nll = _chosen_token_nll(chosen, len_w, w) if chosen_nll is None else jnp.asarray(chosen_nll, jnp.float32)
    odds_loss, metrics = finish_pair(
        -beta * log_sigmoid_odds,
        w,
        chosen_rewards=beta * avg_w,
        rejected_rewards=beta * avg_l,
        chosen_logps=avg_w,
        rejected_logps=avg_l,
        extra={"log_odds_ratio": weighted_mean(log_sigmoid_odds, w), "log_odds_chosen": weighted_mean(log_odds, w)},
    )
    metrics["nll_loss"] = jax.lax.stop_gradient(nll)
    return nll + odds_loss, metrics


__all__ = ["simpo", "cpo", "orpo"]
