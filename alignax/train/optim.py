"""Optimizer and learning-rate schedule from config.

The recipes the papers use: AdamW with linear warmup + cosine decay (SimPO, DPO on Llama-3),
RMSprop with warmup + constant (the original DPO and SPPO recipes), and global-norm clipping.
"""

from __future__ import annotations

import ml_collections
import optax


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Warmup (linear from 0) then `cfg.schedule` in {"cosine", "linear", "constant"} to the end."""
    peak = cfg.learning_rate
    warmup_steps = int(round(cfg.warmup_ratio * total_steps)) if cfg.warmup_steps < 0 else cfg.warmup_steps
    warmup_steps = max(0, min(warmup_steps, total_steps))
    decay_steps = max(1, total_steps - warmup_steps)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.final_lr_fraction)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(peak, peak * cfg.final_lr_fraction, decay_steps)
    elif cfg.schedule == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(f"optimizer.schedule={cfg.schedule!r}; expected one of cosine, linear, constant")
    if warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


_OPTIMIZERS = {
    "adamw": lambda lr, c: optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay),
    "adam": lambda lr, c: optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps),
    "rmsprop": lambda lr, c: optax.rmsprop(lr, decay=c.b2, eps=c.eps),
    "sgd": lambda lr, c: optax.sgd(lr),
}


def make_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (optimizer, schedule). `cfg` is the `optimizer` block of an experiment config."""
    if cfg.name not in _OPTIMIZERS:
        raise ValueError(f"optimizer.name={cfg.name!r}; expected one of {sorted(_OPTIMIZERS)}")
    schedule = make_schedule(cfg, total_steps)
    parts = []
    if cfg.grad_clip_norm and cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
    parts.append(_OPTIMIZERS[cfg.name](schedule, cfg))
    return optax.chain(*parts), schedule
