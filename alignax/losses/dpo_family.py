"""The DPO family: DPO/cDPO and TRL's reference-based `loss_type`s built on the margin h.

AOT, APO, DiscoPOP and LN-DPO are in alignax.losses.dpo_variants.

Reference-free SimPO/CPO/ORPO live in alignax.losses.reference_free, KTO in alignax.losses.kto;
they share this module's plumbing (`pair_inputs`, `_finish`, ...).

Every function is pure, keyword-only, and maps per-example arrays `[B]` to `(loss, metrics)`
(contract in DESIGN.md): `chosen_logps, rejected_logps` are policy log-probs **summed** over the
response tokens, `ref_chosen_logps, ref_rejected_logps` the reference's, `chosen_lengths,
rejected_lengths` the response token counts (needed by the length-normalized objectives).
Inputs may be bf16; the loss and metrics are float32. `example_mask` ([B], optional) drops padded
examples from the batch mean and from the metrics; a masked row may have zero length and still gets
an exactly-zero, finite gradient (length averages go through `length_average`).

Notation (METHODS.md §0): ρ = log π_θ − log π_ref, h = ρ_w − ρ_l (the DPO margin), σ the
logistic function. Rewards in `metrics` are TRL's: β·ρ (β·log π for reference-free methods),
detached. Losses are the batch mean of the per-example losses unless stated.

Peer: TRL 0.19.1 (`DPOTrainer.dpo_loss`, `CPOTrainer.cpo_loss`, `ORPOTrainer.odds_ratio_loss`,
`KTOTrainer.kto_loss`); tests/test_losses_dpo.py checks each name against those functions.
Where TRL and the paper differ, the function's docstring says which one alignax follows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from alignax.losses.common import (
    PAIR_INPUTS,
    REF_INPUTS,
    finish_dpo_pair,
    finish_pair,
    length_average,
    pair_inputs,
    response_lengths,
    smoothed_sigmoid_loss,
)
from alignax.losses.registry import register
from alignax.ops import numerics

Array = jax.Array


# --------------------------------------------------------------------------------------------
# Reference-based pairwise objectives (TRL DPOTrainer loss types)
# --------------------------------------------------------------------------------------------


@register(
    "sigmoid",
    "dpo",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "label_smoothing": 0.0, "reference_free": False},
    reference=True,
    config="configs/dpo.py",
)
def dpo(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps=None,
    ref_rejected_logps=None,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    reference_free: bool = False,
):
    """DPO (Rafailov et al., 2023), with cDPO label smoothing ε (Mitchell, 2023).

    L = −(1−ε) log σ(β h) − ε log σ(−β h), h = (log π_w − log π_l) − (log π_ref,w − log π_ref,l).
    Defaults: β = 0.1 (the paper's main setting; TRL's default), ε = 0 (plain DPO).
    `reference_free=True` sets the reference log-probs to 0 (TRL's `reference_free`).
    TRL ≥ 0.29 dropped ε from "sigmoid"; alignax keeps it (as TRL 0.19 and the DPO repo do).
    Lengths are accepted for a uniform call signature and not used.
    """
    if reference_free:
        ref_chosen_logps = jnp.zeros_like(jnp.asarray(chosen_logps))
        ref_rejected_logps = jnp.zeros_like(jnp.asarray(rejected_logps))
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    margin = (chosen - rejected) - (ref_c - ref_r)
    per_example = smoothed_sigmoid_loss(beta * margin, label_smoothing)
    return finish_dpo_pair(per_example, w, beta=beta, pair=(chosen, rejected, ref_c, ref_r))


@register(
    "robust",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "label_smoothing": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def robust_dpo(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
):
    """Robust DPO (rDPO; Chowdhury, Kini & Natarajan, 2024), unbiased under label-flip rate ε.

    L = [−(1−ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε), 0 ≤ ε < 0.5. Note the plus sign on the
    flipped term (unlike cDPO). Default ε = 0.1 (TRL's recommended value; TRL's own default 0
    reduces rDPO to DPO).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust: label_smoothing (flip rate ε) must be in [0, 0.5), got {label_smoothing}")
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    z = beta * ((chosen - rejected) - (ref_c - ref_r))
    eps = label_smoothing
    per_example = (-(1.0 - eps) * numerics.log_sigmoid(z) + eps * numerics.log_sigmoid(-z)) / (1.0 - 2.0 * eps)
    return finish_dpo_pair(per_example, w, beta=beta, pair=(chosen, rejected, ref_c, ref_r))


@register(
    "ipo",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "length_normalize": True},
    reference=True,
    config="configs/ipo.py",
)
def ipo(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    length_normalize: bool = True,
):
    """IPO (Azar et al., 2023): L = (h − 1/(2τ))², with τ = `beta`.

    `length_normalize=True` (default, as TRL): h uses per-token average log-ratios,
    h = ρ_w/|y_w| − ρ_l/|y_l| (TRL 0.19 divides policy and reference log-probs by the completion
    length before `dpo_loss`; a TRL comment says the IPO authors confirmed they used this form).
    `length_normalize=False`: the paper's Eq. 17 on summed sequence log-ratios. Rewards are β·ρ
    on the same (normalized or summed) scale, as TRL reports them.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    rho_w, rho_l = chosen - ref_c, rejected - ref_r
    if length_normalize:
        len_w, len_r = response_lengths(chosen_lengths, rejected_lengths, chosen.shape[0], "ipo")
        rho_w, rho_l = length_average(rho_w, len_w, w), length_average(rho_l, len_r, w)
    per_example = jnp.square((rho_w - rho_l) - 1.0 / (2.0 * beta))
    return finish_pair(
        per_example,
        w,
        chosen_rewards=beta * rho_w,
        rejected_rewards=beta * rho_l,
        chosen_logps=chosen,
        rejected_logps=rejected,
    )


@register(
    "hinge",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def hinge(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
):
    """Hinge loss of RSO (Liu et al., 2023) / SLiC-HF (Zhao et al., 2023): L = max(0, 1 − β h).

    This is TRL's form (with the reference in h; β = 1/margin). The original SLiC-HF hinge has
    no reference and an extra SFT regularizer; it is not this function.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    per_example = jax.nn.relu(1.0 - beta * ((chosen - rejected) - (ref_c - ref_r)))
    return finish_dpo_pair(per_example, w, beta=beta, pair=(chosen, rejected, ref_c, ref_r))


@register(
    "exo_pair",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "label_smoothing": 0.001},
    reference=True,
    config="configs/dpo.py",
)
def exo_pair(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    label_smoothing: float = 1e-3,
):
    """EXO, pairwise form (Ji et al., 2024, Eq. 16): reverse KL from the smoothed label to σ(βh).

    L = q_w (log q_w − log(1−ε)) + q_l (log q_l − log ε), q_w = σ(βh), q_l = σ(−βh), with the
    log q computed as log σ. ε must be > 0; default 1e-3 (TRL substitutes 1e-3 when ε = 0).
    """
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(f"exo_pair: label_smoothing ε must be in (0, 1), got {label_smoothing}")
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    z = beta * ((chosen - rejected) - (ref_c - ref_r))
    eps = label_smoothing
    per_example = jax.nn.sigmoid(z) * (numerics.log_sigmoid(z) - jnp.log1p(-eps)) + jax.nn.sigmoid(-z) * (
        numerics.log_sigmoid(-z) - jnp.log(eps)
    )
    return finish_dpo_pair(per_example, w, beta=beta, pair=(chosen, rejected, ref_c, ref_r))


@register(
    "nca_pair",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def nca_pair(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
):
    """NCA, pairwise (Chen et al., 2024, "Noise Contrastive Alignment"), with r = βρ:

    L = −log σ(r_w) − ½ log σ(−r_w) − ½ log σ(−r_l).
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    r_w, r_l = beta * (chosen - ref_c), beta * (rejected - ref_r)
    per_example = -numerics.log_sigmoid(r_w) - 0.5 * numerics.log_sigmoid(-r_w) - 0.5 * numerics.log_sigmoid(-r_l)
    return finish_pair(
        per_example, w, chosen_rewards=r_w, rejected_rewards=r_l, chosen_logps=chosen, rejected_logps=rejected
    )


def bco_update_running_mean(running_mean, running_count, *, chosen_rewards, rejected_rewards):
    """BCO's reward baseline δ: running mean of β·ρ over all chosen and rejected rewards seen.

    Mirrors TRL 0.19 `RunningMoments.update` (mean part; initial count 1e-24, mean 0): with batch
    mean m and size n, δ ← δ + (m − δ)·n/(count + n), count ← count + n. Returns (δ, count); the
    caller keeps them in its train state (pure, jit-friendly) and passes δ to `bco_pair`.
    Single-process form: under data parallelism pass globally gathered rewards.
    """
    rewards = jax.lax.stop_gradient(
        jnp.concatenate([jnp.ravel(chosen_rewards), jnp.ravel(rejected_rewards)]).astype(jnp.float32)
    )
    n = rewards.shape[0]
    total = running_count + n
    new_mean = running_mean + (jnp.mean(rewards) - running_mean) * n / total
    return new_mean, total


@register(
    "bco_pair",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1, "delta": 0.0},
    reference=True,
    config="configs/dpo.py",
)
def bco_pair(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
    delta=0.0,
):
    """BCO, pairwise (Jung et al., 2024, "Binary Classifier Optimization"), with r = βρ:

    L = −log σ(r_w − δ) − log σ(−(r_l − δ)); δ is the running mean of past rewards, an explicit
    input here (see `bco_update_running_mean`; TRL 0.19 updates it inside the loss with the
    current batch first). δ = 0 gives current TRL's `bco_pair`, which dropped the baseline.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    delta = jax.lax.stop_gradient(jnp.asarray(delta, jnp.float32))
    r_w, r_l = beta * (chosen - ref_c), beta * (rejected - ref_r)
    per_example = -numerics.log_sigmoid(r_w - delta) - numerics.log_sigmoid(-(r_l - delta))
    return finish_pair(
        per_example,
        w,
        chosen_rewards=r_w,
        rejected_rewards=r_l,
        chosen_logps=chosen,
        rejected_logps=rejected,
        extra={"bco/delta": delta},
    )


@register(
    "sppo_hard",
    method="pairwise",
    inputs=(*PAIR_INPUTS, *REF_INPUTS),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def sppo_hard(
    *,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths=None,
    rejected_lengths=None,
    example_mask=None,
    beta: float = 0.1,
):
    """SPPO with hard win probabilities (Wu et al., 2024; P = 1 for the winner, 0 for the loser):

    L = (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))². SPPO proper (soft P̂ from a preference model) is
    `sppo` in alignax.losses.nash.
    """
    chosen, rejected, ref_c, ref_r, w = pair_inputs(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, example_mask
    )
    rho_w, rho_l = chosen - ref_c, rejected - ref_r
    per_example = jnp.square(rho_w - 0.5 / beta) + jnp.square(rho_l + 0.5 / beta)
    return finish_pair(
        per_example,
        w,
        chosen_rewards=beta * rho_w,
        rejected_rewards=beta * rho_l,
        chosen_logps=chosen,
        rejected_logps=rejected,
    )


__all__ = [
    "dpo",
    "robust_dpo",
    "ipo",
    "hinge",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "bco_update_running_mean",
    "sppo_hard",
]
