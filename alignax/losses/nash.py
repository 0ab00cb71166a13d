"""Iterative / Nash-equilibrium preference objectives: SPPO, INPO, DNO.

All three are trained iteration by iteration: the "reference" of iteration t is (or includes) the
policy π_t that generated the iteration's data, passed in as precomputed summed log-probs. The
arguments follow the alignax pairwise contract (DESIGN.md): summed response log-probs of shape [B].

Checks against official code (METHODS.md §4–6, Appendix B):
- SPPO: uclaml/SPPO sppo/trainer.py loss types "sppo" and "sppo_single" read again here (a copy of
  the trainer in the code index has the same lines): the pair loss is ½ of the sum of the two
  squares and the target is (1/β)(P̂ − ½), with β = 0.001 in the run scripts. The per-sample form
  is the paper's regression of every sample's log-ratio onto η(P̂(y ≻ π_t) − ½), η = 1/β.
- INPO: the third-party copy (XuHuang441/Multi-player-Nash-Policy-Optimization,
  inpo_original/inpo/trainer.py) read here: logits = (π_w−π_l) − ratio·(ref_w−ref_l)
  − (1−ratio)·(last_w−last_l); loss = (logits − 1/(2·eta))²; rewards logged as eta·(π − ref).
  Script values eta = 0.005, ratio = 1/3 (trainer defaults 0.0075 and 0). Paper mapping [MEM]:
  ratio = τ/η. Not the authors' own repository.
- DNO: no official code; the paper body could not be retrieved here. DNO-Prct's update is a DPO
  loss whose reference is the previous iterate π_t [PAPER-ABS + third-party summaries]; β = 0.1 and
  the margin threshold are unverified, so `dno_margin_filter` takes the threshold explicitly.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.common import REF_INPUTS
from alignax.losses.common import f32 as _f32
from alignax.losses.common import pair_metrics as _pair_metrics
from alignax.losses.registry import Unset, register
from alignax.ops import numerics


def _check_pair(*arrays) -> None:
    chex.assert_rank(arrays, 1)
    chex.assert_equal_shape(arrays)


@register(
    "sppo",
    method="pairwise",
    inputs=(*REF_INPUTS, "chosen_logps", "rejected_logps", "chosen_win_probs", "rejected_win_probs"),
    hparams={"beta": 0.001},
    reference=True,
    config="configs/dpo.py",
)
def sppo(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    chosen_win_probs: chex.Array,
    rejected_win_probs: chex.Array,
    beta: float = 0.001,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """SPPO pair loss (uclaml/SPPO loss_type "sppo").

    ρ = log π_θ(y|x) − log π_t(y|x);  P̂_w = P̂(y_w ≻ π_t | x), P̂_l = P̂(y_l ≻ π_t | x)
    L = ½ [ (ρ_w − (P̂_w − ½)/β)² + (ρ_l − (P̂_l − ½)/β)² ],  averaged over the batch.

    `ref_*_logps` are the log-probs of π_t, the policy at the start of the iteration (not the SFT
    model). The win probabilities are the PairRM estimates averaged over the K samples, the
    self-comparison (0.5) included. β = 1/η = 0.001 (run scripts). TRL's `sppo_hard` is the special
    case P̂_w = 1, P̂_l = 0 without the ½.
    """
    _check_pair(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_win_probs, rejected_win_probs
    )
    pw, pl, rw, rl, qw, ql = _f32(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_win_probs, rejected_win_probs
    )
    rho_w, rho_l = pw - rw, pl - rl
    losses = 0.5 * ((rho_w - (qw - 0.5) / beta) ** 2 + (rho_l - (ql - 0.5) / beta) ** 2)
    metrics = _pair_metrics(
        chosen_rewards=beta * rho_w, rejected_rewards=beta * rho_l, chosen_logps=pw, rejected_logps=pl
    )
    return jnp.mean(losses), metrics


@register(
    "sppo_single",
    method="pairwise",
    inputs=(*REF_INPUTS, "chosen_logps", "rejected_logps", "chosen_pref_probs"),
    hparams={"beta": 0.001},
    reference=True,
    config="configs/dpo.py",
)
def sppo_single(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    chosen_pref_probs: chex.Array,
    beta: float = 0.001,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """SPPO with the single pairwise probability P_wl = P(y_w ≻ y_l) (uclaml/SPPO "sppo_single").

    L = ½ [ (ρ_w − (P_wl − ½)/β)² + (ρ_l + (P_wl − ½)/β)² ].
    """
    _check_pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_pref_probs)
    pw, pl, rw, rl, q = _f32(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_pref_probs)
    rho_w, rho_l = pw - rw, pl - rl
    target = (q - 0.5) / beta
    losses = 0.5 * ((rho_w - target) ** 2 + (rho_l + target) ** 2)
    metrics = _pair_metrics(
        chosen_rewards=beta * rho_w, rejected_rewards=beta * rho_l, chosen_logps=pw, rejected_logps=pl
    )
    return jnp.mean(losses), metrics


@register(
    "sppo_sample",
    method="multi_sample",
    inputs=("logps", "ref_logps", "win_probs"),
    hparams={"beta": 0.001},
    reference=True,
    config="configs/scored_samples.py",
)
def sppo_sample(
    *,
    logps: chex.Array,
    ref_logps: chex.Array,
    win_probs: chex.Array,
    beta: float = 0.001,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """SPPO per-sample form (the paper's regression, every sample y ∼ π_t on its own).

    L = mean_y ( log π_θ(y|x)/π_t(y|x) − (P̂(y ≻ π_t|x) − ½)/β )²,  with η = 1/β.

    On the two samples (y_w, y_l) of a pair it equals the pair loss `sppo`.
    Args are [N] arrays over samples (flatten prompts × K samples).
    """
    _check_pair(logps, ref_logps, win_probs)
    p, r, q = _f32(logps, ref_logps, win_probs)
    rho = p - r
    losses = (rho - (q - 0.5) / beta) ** 2
    metrics = {
        "rewards/mean": jnp.mean(jax.lax.stop_gradient(beta * rho)),
        "logps/mean": jnp.mean(jax.lax.stop_gradient(p)),
        "win_probs/mean": jnp.mean(q),
    }
    return jnp.mean(losses), metrics


def _inpo_ref_weight(*, eta: float, tau: float | None, ref_weight: float | None) -> float:
    if tau is not None and ref_weight is not None:
        raise ValueError("give either tau or ref_weight (= tau/eta) to inpo, not both")
    if tau is not None:
        return tau / eta
    return 1.0 / 3.0 if ref_weight is None else ref_weight


@register(
    "inpo",
    method="pairwise",
    inputs=(*REF_INPUTS, "chosen_logps", "rejected_logps", "prev_chosen_logps", "prev_rejected_logps"),
    hparams={"eta": 0.005, "tau": Unset(float), "ref_weight": Unset(float)},
    reference=True,
    config="configs/dpo.py",
)
def inpo(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    prev_chosen_logps: chex.Array,
    prev_rejected_logps: chex.Array,
    eta: float = 0.005,
    tau: float | None = None,
    ref_weight: float | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """INPO loss (online mirror descent on the KL-regularized preference game).

    h = log π(y_w)/π(y_l) − c·log π_ref(y_w)/π_ref(y_l) − (1−c)·log π_t(y_w)/π_t(y_l)
    L = mean ( h − 1/(2η) )²,   c = τ/η  (the code's `ratio`).

    Args:
      ref_*_logps: the fixed initial (SFT) reference π_ref.
      prev_*_logps: the previous iterate π_t (the model this iteration starts from).
      eta: η, the inverse OMD step size; target margin 1/(2η). Default 0.005 (run_inpo_fixed.sh).
      tau / ref_weight: KL-to-reference strength, either as τ (c = τ/η) or directly as c.
        Default c = 1/3 (run_inpo_fixed.sh). c = 0 is online IPO against π_t.
    """
    _check_pair(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, prev_chosen_logps, prev_rejected_logps
    )
    c = _inpo_ref_weight(eta=eta, tau=tau, ref_weight=ref_weight)
    pw, pl, rw, rl, tw, tl = _f32(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, prev_chosen_logps, prev_rejected_logps
    )
    h = (pw - pl) - c * (rw - rl) - (1.0 - c) * (tw - tl)
    losses = (h - 1.0 / (2.0 * eta)) ** 2
    metrics = _pair_metrics(
        chosen_rewards=eta * (pw - rw), rejected_rewards=eta * (pl - rl), chosen_logps=pw, rejected_logps=pl
    )
    metrics["inpo/h"] = jnp.mean(jax.lax.stop_gradient(h))
    return jnp.mean(losses), metrics


@register(
    "dno",
    method="pairwise",
    inputs=(*REF_INPUTS, "chosen_logps", "rejected_logps"),
    hparams={"beta": 0.1},
    reference=True,
    config="configs/dpo.py",
)
def dno(
    *,
    chosen_logps: chex.Array,
    rejected_logps: chex.Array,
    ref_chosen_logps: chex.Array,
    ref_rejected_logps: chex.Array,
    beta: float = 0.1,
    pair_mask: chex.Array | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """DNO-Prct pair loss: a DPO loss whose reference is the previous iterate π_t.

    L = − Σ_i m_i log σ( β[ log π(y⁺|x)/π_t(y⁺|x) − log π(y⁻|x)/π_t(y⁻|x) ] ) / Σ_i m_i

    `ref_*_logps` are π_t's log-probs. `pair_mask` ([B], optional) keeps a static batch shape when
    pairs are dropped by `dno_margin_filter` (masked pairs contribute nothing). β = 0.1 is a
    placeholder: the paper's value is unverified (METHODS.md §6).
    """
    _check_pair(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    pw, pl, rw, rl = _f32(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    mask = jnp.ones_like(pw) if pair_mask is None else jnp.asarray(pair_mask, jnp.float32)
    chex.assert_equal_shape([pw, mask])
    margin = (pw - rw) - (pl - rl)
    losses = -numerics.log_sigmoid(beta * margin)
    loss = jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    metrics = _pair_metrics(
        chosen_rewards=beta * (pw - rw), rejected_rewards=beta * (pl - rl), chosen_logps=pw, rejected_logps=pl
    )
    metrics["pairs_kept"] = jnp.sum(mask)
    return loss, metrics


def dno_margin_filter(*, chosen_scores: chex.Array, rejected_scores: chex.Array, min_margin: float) -> jnp.ndarray:
    """DNO-Prct large-margin filter: keep a pair iff score(y⁺) − score(y⁻) > min_margin.

    Returns a bool [B] keep-mask (feed it to `dno(pair_mask=...)` or drop the pairs on the host).
    The paper's threshold is unverified, so it has no default.
    """
    chex.assert_rank([chosen_scores, rejected_scores], 1)
    chex.assert_equal_shape([chosen_scores, rejected_scores])
    sw, sl = _f32(chosen_scores, rejected_scores)
    return (sw - sl) > min_margin
