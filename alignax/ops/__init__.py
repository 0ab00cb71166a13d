"""Numerics shared by everything: stable elementwise functions, chunked per-token log-probs,
sequence statistics under masks and packed segments."""
from alignax.ops.numerics import (  # noqa: F401
    log1mexp,
    log_sigmoid,
    masked_count,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    softplus,
    to_float32,
)
