"""The AlpacaFarm PPO set: KL-shaped rewards, whitening, GAE, clipped policy and value losses.

Checked against tatsu-lab/alpaca_farm src/alpaca_farm/rl/ppo_trainer.py and torch_ops.py (read
here) and TRL 0.19.1's PPOTrainer (in .venv):
- Reward shaping (AlpacaFarm `_shape_reward`): kl_t = max(0, log π(y_t) − log π_ref(y_t)) (note the
  clamp at 0; TRL does not clamp), r_t = −β_KL·kl_t, and the reward-model score is added at the
  last non-pad response token.
- Whitening: AlpacaFarm `whiten` = (x − μ)/(std + 1e-8) with the *biased* std over the whole
  rollout batch (no mask: its responses are padded to response_len and the pads are included);
  TRL `masked_whiten` = (x − μ)·rsqrt(var + 1e-8) with the *unbiased* masked variance. Both are
  `whiten(convention=...)`; rewards are whitened without shifting the mean, advantages with.
- GAE: δ_t = r_t + γ V_{t+1} − V_t, A_t = δ_t + γλ A_{t+1}, with V and A zero past the end;
  returns = A + V. γ = λ = 1 in AlpacaFarm.
- Policy loss: mean max(−A·ratio, −A·clip(ratio, 1 ± 0.2)); value loss:
  ½ mean max((V − R)², (clip(V, V_old ± 0.2) − R)²); total = pg + 0.1·vf. Means are over the
  response-token mask (AlpacaFarm's plain mean is the all-ones mask; TRL uses masked means).
- KL coefficient: 0.0067 for simulated PPO, 0.02 for human PPO (README); code default 0.2.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.losses.common import ROLLOUTS
from alignax.losses.registry import register
from alignax.ops import numerics


def _masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    return numerics.masked_mean(values, mask)  # 0 for an empty mask; masked NaN/inf ignored


def _f32(*arrays):
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def last_token_index(mask: chex.Array) -> jnp.ndarray:
    """[B] index of the last True position of each row of a [B, T] mask (0 for empty rows)."""
    chex.assert_rank(mask, 2)
    positions = jnp.arange(mask.shape[1])
    return jnp.max(jnp.where(jnp.asarray(mask, bool), positions, 0), axis=1)


def shape_rewards(
    *,
    scores: chex.Array,
    logps: chex.Array,
    ref_logps: chex.Array,
    mask: chex.Array,
    kl_coef: float = 0.0067,
    clamp_kl: bool = True,
) -> dict[str, jnp.ndarray]:
    """Per-token KL-penalized rewards with the score at the last response token.

    kl_t = max(0, log π − log π_ref) (clamp_kl, AlpacaFarm) or log π − log π_ref (TRL);
    non_score_t = −kl_coef·kl_t; shaped_t = non_score_t + score·1[t = last response token];
    all zero outside `mask`.

    Args: scores [B]; logps, ref_logps, mask [B, T] (response tokens of the rollout).
    Returns: dict(shaped_rewards, non_score_rewards, kl), each [B, T], float32.
    """
    chex.assert_rank([scores, logps], [1, 2])
    chex.assert_equal_shape([logps, ref_logps, mask])
    chex.assert_shape(scores, logps.shape[:1])
    lp, ref, m, s = _f32(logps, ref_logps, mask, scores)
    kl = lp - ref
    if clamp_kl:
        kl = jnp.maximum(kl, 0.0)
    kl = kl * m
    non_score = -kl_coef * kl
    terminal = jax.nn.one_hot(last_token_index(mask), lp.shape[1], dtype=jnp.float32) * m
    shaped = non_score + s[:, None] * terminal
    return {"shaped_rewards": shaped, "non_score_rewards": non_score, "kl": kl}


def whiten(
    values: chex.Array,
    mask: chex.Array | None = None,
    *,
    shift_mean: bool = True,
    convention: str = "alpaca_farm",
    eps: float = 1e-8,
) -> jnp.ndarray:
    """Whiten `values` over the masked entries of the whole batch.

    alpaca_farm: (x − μ)/(σ_biased + eps);  trl: (x − μ)·rsqrt(σ²_unbiased + eps).
    shift_mean=False adds μ back (reward whitening). Masked-out entries are returned as 0.
    """
    if convention not in ("alpaca_farm", "trl"):
        raise ValueError(f"convention={convention!r}; expected 'alpaca_farm' or 'trl'")
    (x,) = _f32(values)
    m = jnp.ones_like(x) if mask is None else jnp.asarray(mask, jnp.float32)
    chex.assert_equal_shape([x, m])
    count = jnp.sum(m)
    mean = _masked_mean(x, m)
    variance = _masked_mean((x - mean) ** 2, m)
    if convention == "alpaca_farm":
        whitened = (x - mean) / (jnp.sqrt(variance) + eps)
    else:
        variance = variance * count / jnp.maximum(count - 1.0, 1.0)
        whitened = (x - mean) * jax.lax.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * m


def gae(
    *,
    rewards: chex.Array,
    values: chex.Array,
    mask: chex.Array,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016) by a reverse `lax.scan` over time.

    δ_t = r_t + γ m_{t+1} V_{t+1} − V_t;  A_t = δ_t + γλ m_{t+1} A_{t+1};  R_t = A_t + V_t.
    Positions outside `mask` hold 0 and do not bootstrap, so a right-padded row equals the same
    row unpadded. Args: rewards, values, mask [B, T]. Returns (advantages, returns), [B, T] each.
    """
    chex.assert_rank(rewards, 2)
    chex.assert_equal_shape([rewards, values, mask])
    r, v, m = _f32(rewards, values, mask)
    r, v = r * m, v * m
    next_values = jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1)
    next_mask = jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    deltas = r + gamma * next_mask * next_values - v

    def step(next_advantage, inputs):
        delta_t, next_mask_t = inputs
        advantage_t = delta_t + gamma * lam * next_mask_t * next_advantage
        return advantage_t, advantage_t

    # Scan over time (axis 1) backwards: move time to the leading axis for lax.scan.
    _, advantages = jax.lax.scan(step, jnp.zeros_like(r[:, 0]), (deltas.T, next_mask.T), reverse=True)
    advantages = advantages.T * m
    return advantages, (advantages + v) * m


@register(
    "ppo_policy",
    method=None,
    inputs=("logps", "old_logps", "advantages", "mask"),
    hparams={"clip_range": 0.2},
    pending=ROLLOUTS,
)
def ppo_policy_loss(
    *,
    logps: chex.Array,
    old_logps: chex.Array,
    advantages: chex.Array,
    mask: chex.Array,
    clip_range: float = 0.2,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Clipped surrogate: L = masked_mean max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(log π − log π_old)."""
    chex.assert_rank(logps, 2)
    chex.assert_equal_shape([logps, old_logps, advantages, mask])
    lp, old, adv, m = _f32(logps, old_logps, advantages, mask)
    old, adv = jax.lax.stop_gradient(old), jax.lax.stop_gradient(adv)
    log_ratio = lp - old
    ratio = jnp.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = _masked_mean(jnp.maximum(unclipped, clipped), m)
    metrics = {
        "policy/clipfrac": _masked_mean((clipped > unclipped).astype(jnp.float32), m),
        "policy/approxkl": 0.5 * _masked_mean(jax.lax.stop_gradient(log_ratio) ** 2, m),
        "policy/ratio": _masked_mean(jax.lax.stop_gradient(ratio), m),
    }
    return loss, metrics


@register(
    "ppo_value",
    method=None,
    inputs=("values", "old_values", "returns", "mask"),
    hparams={"clip_range_value": 0.2},
    pending=ROLLOUTS,
)
def ppo_value_loss(
    *,
    values: chex.Array,
    old_values: chex.Array,
    returns: chex.Array,
    mask: chex.Array,
    clip_range_value: float = 0.2,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Clipped value loss: L = ½ masked_mean max((V − R)², (clip(V, V_old ± ε_v) − R)²)."""
    chex.assert_rank(values, 2)
    chex.assert_equal_shape([values, old_values, returns, mask])
    v, old, ret, m = _f32(values, old_values, returns, mask)
    old, ret = jax.lax.stop_gradient(old), jax.lax.stop_gradient(ret)
    clipped_values = jnp.clip(v, old - clip_range_value, old + clip_range_value)
    unclipped_loss = (v - ret) ** 2
    clipped_loss = (clipped_values - ret) ** 2
    loss = 0.5 * _masked_mean(jnp.maximum(unclipped_loss, clipped_loss), m)
    metrics = {
        "val/clipfrac": _masked_mean((clipped_loss > unclipped_loss).astype(jnp.float32), m),
        "val/error": _masked_mean(jax.lax.stop_gradient(unclipped_loss), m),
        "val/vpred": _masked_mean(jax.lax.stop_gradient(v), m),
    }
    return loss, metrics


@register(
    "ppo",
    method=None,
    inputs=("logps", "old_logps", "advantages", "values", "old_values", "returns", "mask"),
    hparams={"clip_range": 0.2, "clip_range_value": 0.2, "vf_coef": 0.1},
    pending=ROLLOUTS,
)
def ppo(
    *,
    logps: chex.Array,
    old_logps: chex.Array,
    advantages: chex.Array,
    values: chex.Array,
    old_values: chex.Array,
    returns: chex.Array,
    mask: chex.Array,
    clip_range: float = 0.2,
    clip_range_value: float = 0.2,
    vf_coef: float = 0.1,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """AlpacaFarm PPO loss: L = L_policy + vf_coef·L_value (ε = ε_v = 0.2, vf_coef = 0.1)."""
    pg_loss, pg_metrics = ppo_policy_loss(
        logps=logps, old_logps=old_logps, advantages=advantages, mask=mask, clip_range=clip_range
    )
    vf_loss, vf_metrics = ppo_value_loss(
        values=values, old_values=old_values, returns=returns, mask=mask, clip_range_value=clip_range_value
    )
    loss = pg_loss + vf_coef * vf_loss
    metrics = {"loss/policy": pg_loss, "loss/value": vf_loss, **pg_metrics, **vf_metrics}
    return loss, metrics
