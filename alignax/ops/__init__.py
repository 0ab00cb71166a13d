"""Numerics shared by everything: stable elementwise functions, chunked per-token log-probs,
sequence statistics under masks and packed segments."""

from alignax.ops.logprobs import logprobs_from_logits, token_logprobs, token_logprobs_naive  # noqa: F401
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
from alignax.ops.stats import (  # noqa: F401
    segment_counts,
    segment_means,
    segment_sums,
    sequence_mean,
    sequence_stats,
    sequence_sum,
    token_count,
)
