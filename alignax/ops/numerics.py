"""Stable elementwise numerics shared by every objective.

All functions are pure, dtype-preserving unless stated, and safe under `jax.grad` at the
extremes (no NaN gradients from `where` branches: each branch's input is clamped so the
unused branch stays finite).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_LOG_HALF = -0.6931471805599453  # log(1/2): switch point of the two-branch log1mexp.


def log_sigmoid(x: jax.Array) -> jax.Array:
    """log σ(x) = -softplus(-x) = -logaddexp(0, -x), stable for |x| large.

    Same value as torch's `F.logsigmoid`. Written with `logaddexp` (whose derivative is defined
    by a stable custom rule) rather than min(x, 0) - log1p(exp(-|x|)): the latter's gradient at
    exactly x = 0 is wrong in JAX (|x|' and min' at the kink), and x = 0 is exactly where every DPO
    run starts (policy == reference), giving a double-size first step.
    """
    x = jnp.asarray(x)
    return -jnp.logaddexp(jnp.zeros((), x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else 0.0, -x)


def softplus(x: jax.Array) -> jax.Array:
    """softplus(x) = log(1 + e^x) = logaddexp(x, 0) (correct gradient 1/2 at x = 0, see log_sigmoid)."""
    x = jnp.asarray(x)
    return jnp.logaddexp(x, jnp.zeros((), x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else 0.0)


def log1mexp(a: jax.Array) -> jax.Array:
    """log(1 - e^a) for a < 0 (a = 0 gives -inf), accurate everywhere.

    Two-branch form from Mächler (2012), "Accurately computing log(1 - exp(-|a|))":
        a > -log 2:  log(-expm1(a))      (1 - e^a is small; expm1 keeps its digits)
        a <= -log 2: log1p(-exp(a))      (e^a is small; log1p keeps its digits)
    Used e.g. by ORPO's log-odds: log(p/(1-p)) = log p - log1mexp(log p).
    Both branches see clamped inputs so the discarded one never produces NaN gradients.
    """
    a = jnp.asarray(a)
    near_zero = a > _LOG_HALF
    a_near = jnp.where(near_zero, a, _LOG_HALF)  # in (-log2, 0]
    a_far = jnp.where(near_zero, _LOG_HALF, a)  # <= -log2
    return jnp.where(near_zero, jnp.log(-jnp.expm1(a_near)), jnp.log1p(-jnp.exp(a_far)))


def masked_sum(x: jax.Array, mask: jax.Array, *, axis=None) -> jax.Array:
    """Σ x·mask over `axis` (mask broadcast to x; masked entries contribute exactly 0, even if NaN/inf)."""
    mask = jnp.broadcast_to(jnp.asarray(mask), jnp.shape(x))
    return jnp.sum(jnp.where(mask != 0, x * mask.astype(jnp.result_type(x)), 0), axis=axis)


def masked_count(mask: jax.Array, *, axis=None, dtype=jnp.float32) -> jax.Array:
    """Σ mask over `axis`, in `dtype` (the number of valid entries when the mask is 0/1)."""
    return jnp.sum(jnp.asarray(mask).astype(dtype), axis=axis)


def masked_mean(x: jax.Array, mask: jax.Array, *, axis=None, eps: float = 0.0) -> jax.Array:
    """Σ x·mask / Σ mask over `axis`; 0 where the mask is empty (never NaN).

    `eps` is added to the denominator only when > 0 (for callers that want TRL-style smoothing).
    """
    x = jnp.asarray(x)
    mask = jnp.broadcast_to(jnp.asarray(mask), jnp.shape(x))
    total = masked_sum(x, mask, axis=axis)
    count = masked_count(mask, axis=axis, dtype=total.dtype)
    denom = count + eps if eps > 0 else jnp.where(count == 0, 1, count)
    return total / denom


def masked_var(x: jax.Array, mask: jax.Array, *, axis=None, unbiased: bool = True) -> jax.Array:
    """Masked variance (Bessel-corrected when `unbiased`, as AlpacaFarm/TRL's `masked_var`)."""
    x = jnp.asarray(x)
    mask = jnp.broadcast_to(jnp.asarray(mask), jnp.shape(x))
    mean = masked_mean(x, mask, axis=axis)
    if axis is not None:
        mean = jnp.expand_dims(mean, axis)
    centered_sq = jnp.square(x - mean)
    var = masked_mean(centered_sq, mask, axis=axis)
    if unbiased:
        count = masked_count(mask, axis=axis, dtype=var.dtype)
        var = var * count / jnp.maximum(count - 1, 1)
    return var


def masked_whiten(x: jax.Array, mask: jax.Array, *, shift_mean: bool = True, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over all masked entries (AlpacaFarm/TRL advantage whitening)."""
    x = jnp.asarray(x)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * jax.lax.rsqrt(var + eps)
    return whitened if shift_mean else whitened + mean


def to_float32(*arrays: jax.Array):
    """Upcast inputs to float32 (losses are computed in fp32 even for bf16 inputs)."""
    out = tuple(None if a is None else jnp.asarray(a).astype(jnp.float32) for a in arrays)
    return out[0] if len(out) == 1 else out


__all__ = [
    "log_sigmoid",
    "softplus",
    "log1mexp",
    "masked_sum",
    "masked_count",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "to_float32",
]
