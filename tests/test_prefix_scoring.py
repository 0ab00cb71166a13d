"""Shared-context scoring (alignax/sample/prefix_scoring.py) against one full forward pass per
(context, continuation): Llama with per-layer and stacked (scanned) caches, and Gemma-2 (sliding
window and final logit soft-capping), with several contexts per batch, several continuations per
context, filler rows, an empty continuation and contexts in no particular order."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alignax.models.config import LlamaConfig
from alignax.models.gemma2 import Gemma2, Gemma2Config
from alignax.models.llama import Llama
from alignax.ops.logprobs import logprobs_from_logits
from alignax.sample.prefix_scoring import context_bucket, continuation_bucket, continuation_logprobs

RNG = np.random.default_rng(0)
CONTEXTS = [list(RNG.integers(3, 250, size=n)) for n in (5, 70, 1, 33, 12)]
# (context index, continuation): 3 on context 1, 2 on context 3, one empty, one 1-token.
ROWS = [(1, 9), (0, 3), (3, 20), (1, 1), (4, 0), (3, 17), (2, 6), (1, 40), (4, 2)]
CONTINUATIONS = [list(RNG.integers(3, 250, size=n)) for _, n in ROWS]
CONTEXT_OF = [i for i, _ in ROWS]


def full_forward_logprob(model, context, continuation) -> float:
    """Independent: log p(continuation | context) from one uncached forward over both."""
    if not continuation:
        return 0.0
    ids = np.asarray(list(context) + list(continuation), np.int32)[None]
    labels = np.full(ids.shape, -1, np.int32)
    labels[0, len(context) - 1 : -1] = continuation
    return float(jnp.sum(logprobs_from_logits(model(jnp.asarray(ids)), jnp.asarray(labels))))


MODELS = {
    "llama": lambda: Llama(LlamaConfig.tiny(max_position_embeddings=512), rngs=nnx.Rngs(0)),
    "llama_scanned": lambda: Llama(LlamaConfig.tiny(max_position_embeddings=512, scan_layers=True), rngs=nnx.Rngs(0)),
    "gemma2": lambda: Gemma2(Gemma2Config.tiny(max_position_embeddings=512), rngs=nnx.Rngs(1)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_context_sums_equal_full_forward_passes(name):
    model = MODELS[name]()
    got = continuation_logprobs(
        model, CONTEXTS, CONTINUATIONS, CONTEXT_OF, contexts_per_batch=2, rows_per_batch=3, min_context_bucket=16
    )
    want = [full_forward_logprob(model, CONTEXTS[i], c) for i, c in zip(CONTEXT_OF, CONTINUATIONS)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-4)
    assert got[ROWS.index((4, 0))] == 0.0
    assert len(set(np.round(want, 2))) == len(want)  # distinct rows: a mix-up of rows would show


def test_batching_does_not_change_the_sums():
    model = MODELS["llama"]()
    one = continuation_logprobs(model, CONTEXTS, CONTINUATIONS, CONTEXT_OF, contexts_per_batch=1, rows_per_batch=1)
    many = continuation_logprobs(model, CONTEXTS, CONTINUATIONS, CONTEXT_OF, contexts_per_batch=8, rows_per_batch=16)
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-4)


def test_bad_inputs_name_the_problem():
    model = MODELS["llama"]()
    with pytest.raises(ValueError, match="context indices"):
        continuation_logprobs(model, CONTEXTS, CONTINUATIONS, CONTEXT_OF[:-1])
    with pytest.raises(ValueError, match="outside 0..4"):
        continuation_logprobs(model, CONTEXTS, CONTINUATIONS[:1], [5])
    with pytest.raises(ValueError, match="at least one token"):
        continuation_logprobs(model, [[]], [[3]], [0])


def test_buckets():
    assert [context_bucket(n, minimum=16) for n in (1, 16, 17, 24, 25, 33, 49, 97)] == [16, 16, 24, 24, 32, 48, 64, 128]
    assert [continuation_bucket(n, minimum=16) for n in (1, 16, 17, 66, 128, 129, 200)] == [
        16,
        16,
        24,
        72,
        128,
        192,
        256,
    ]
