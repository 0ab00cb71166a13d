"""On-policy sampling: the KV-cache sampler, best-of-n, crash-safe JSONL streaming."""

from alignax.sample.best_of_n import BestOfN, best_of_n  # noqa: F401
from alignax.sample.sampler import (  # noqa: F401
    Generation,
    SamplingParams,
    filter_logits,
    generate,
    sample_tokens,
)
from alignax.sample.streaming import generate_to_jsonl  # noqa: F401
