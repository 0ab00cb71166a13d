"""Rotary position embeddings (RoPE; Su et al., 2021, "RoFormer") in transformers' layout.

Angles are positions * inv_freq, duplicated over both halves of the head dimension; a vector is
rotated as x * cos + rotate_half(x) * sin with rotate_half(x) = concat(-x2, x1), as
transformers 4.53 `modeling_llama.py` does. `rope_inv_freq` carries HF's rope scalings (linear,
dynamic NTK, llama3) from `modeling_rope_utils.py`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from alignax.models.config import LlamaConfig


def rope_inv_freq(cfg: LlamaConfig, max_position: jax.Array | None = None) -> jax.Array:
    """Inverse frequencies theta^(-2i/d), i < d/2, with HF's rope scalings (modeling_rope_utils.py).

    linear:  inv_freq / factor.
    dynamic: base' = base * (factor * L / max_pos - (factor - 1)) ** (d / (d - 2)) with
             L = max(max_position + 1, max_pos) (NTK-aware; transformers recomputes it per call).
    llama3:  wavelengths 2*pi/inv_freq longer than original_max_pos / low_freq_factor are divided
             by factor, shorter than original_max_pos / high_freq_factor kept, and the band between
             interpolated smoothly (Llama 3.1 report; `_compute_llama3_parameters`).
    """
    dim = cfg.head_dim
    exponents = jnp.arange(0, dim, 2, dtype=jnp.float32) / dim
    base = jnp.float32(cfg.rope_theta)
    scaling = cfg.rope_scaling or {}
    rope_type = cfg.rope_type
    if rope_type == "dynamic":
        factor = float(scaling["factor"])
        max_pos = cfg.max_position_embeddings
        seq_len = (
            jnp.float32(max_pos)
            if max_position is None
            else jnp.maximum(jnp.asarray(max_position, jnp.float32) + 1.0, max_pos)
        )
        base = base * (factor * seq_len / max_pos - (factor - 1.0)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base**exponents)
    if rope_type == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif rope_type == "llama3":
        factor = float(scaling["factor"])
        low_freq_factor = float(scaling["low_freq_factor"])
        high_freq_factor = float(scaling["high_freq_factor"])
        old_context_len = float(scaling["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = jnp.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        inv_freq = jnp.where(is_medium, smoothed, scaled)
    return inv_freq


def rope_cos_sin(cfg: LlamaConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos/sin [B, T, head_dim] of angles positions * inv_freq, duplicated over both halves (HF)."""
    max_position = jnp.max(positions) if cfg.rope_type == "dynamic" else None
    inv_freq = rope_inv_freq(cfg, max_position)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, d/2]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x * cos + rotate_half(x) * sin on [B, T, N, d]; rotate_half(x) = concat(-x2, x1) (HF layout)."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin
