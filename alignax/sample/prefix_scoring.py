"""Teacher-forced log-probabilities of continuations that share contexts, each context run once.

    continuation_logprobs(model, contexts, continuations, context_of)[k]
        = Σ_t log p(continuations[k][t] | contexts[context_of[k]], continuations[k][:t])

Scoring K responses to the same prompt with K full forward passes runs the prompt K times. Here
each context is prefilled once into a KV cache (left-padded, like the sampler's prefill); the
continuations then run against copies of their context's cache rows, and the first token of each
is scored by its context's last-position logits. The result is the same sum a full forward pass
over context + continuation gives (tests/test_prefix_scoring.py checks it against one), with the
context's tokens computed once instead of K times and no vocabulary head over context positions.

Users: CDR density-ratio rewards (alignax/annotate/density_ratio.py: the k samples of a prompt
share x̃) and verdict forcing of local judges (alignax/evaluate/judges/local.py: one judge context,
the K allowed verdicts as continuations).

Shapes are bucketed (contexts: 2^k or 1.5 * 2^k; continuations: multiples of 8 up to 128) so a
call compiles one prefill and one scoring program per (context bucket, continuation bucket).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignax.ops.logprobs import logprobs_from_logits


def context_bucket(n: int, *, minimum: int = 64) -> int:
    """Padded length: the next of 2^k or 1.5 * 2^k >= n, from `minimum` (a power of two): a few
    compiled shapes, at most 50% padding instead of power-of-two buckets' 100%."""
    size = minimum
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else (size // 3) * 4
    return size


def continuation_bucket(n: int, *, minimum: int = 8) -> int:
    """Padded continuation length: a multiple of 8 up to 128 (a continuation is often a response cut
    at max_new_tokens plus an end-of-turn token: 66 pads to 72, not 96), then `context_bucket`."""
    return max(minimum, -(-n // 8) * 8) if n <= 128 else context_bucket(n, minimum=128)


def _prefill_contexts(graphdef, state, ids, segments, *, cache_length: int):
    """Left-padded contexts [B, L] -> (last-position logits [B, V] float32, their KV cache with
    `cache_length` slots)."""
    model = nnx.merge(graphdef, state)
    cache = model.init_cache(ids.shape[0], cache_length)
    logits, cache = model(ids, segment_ids=segments, cache=cache, last_only=True)
    return logits[:, -1].astype(jnp.float32), cache


def take_cache_rows(cache: dict, rows: jax.Array) -> dict:
    """The cache rows `rows` [K] (repeats allowed). k/v are one stacked [L, B, S, KVH, hd] array
    (batch axis 1) or a tuple of per-layer [B, S, KVH*hd] buffers (`Llama.init_cache`, batch axis
    0); segment ids and positions are [B, S]; the write index [] stays as is."""

    def take(value):
        if value.ndim == 0:
            return value
        return jnp.take(value, rows, axis=1 if value.ndim == 5 else 0)

    return jax.tree.map(take, cache)


def _continuation_sums(graphdef, state, last_logits, cache, context_rows, tokens, labels):
    """[K] Σ_t log p(labels[k, t]) for continuations tokens [K, M] (labels = tokens, -1 on padding)
    after the cached context row `context_rows[k]`; the first token is scored by that context's
    last logits, token t > 0 by the continuation's own position t - 1."""
    model = nnx.merge(graphdef, state)
    segments = (labels >= 0).astype(jnp.int32)
    logits, _ = model(tokens, segment_ids=segments, cache=take_cache_rows(cache, context_rows))
    first = jnp.take(last_logits, context_rows, axis=0)[:, None, :]
    scored = jnp.concatenate([first, logits[:, :-1].astype(jnp.float32)], axis=1)
    return jnp.sum(logprobs_from_logits(scored, labels), axis=1)


_prefill_contexts_jit = jax.jit(_prefill_contexts, static_argnames=("graphdef", "cache_length"))
_continuation_sums_jit = jax.jit(_continuation_sums, static_argnames=("graphdef",))


def _left_padded(rows: Sequence[Sequence[int]], length: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """[count, length] ids and segment ids (1 on tokens), rows right-aligned; filler rows repeat row 0."""
    ids, segments = np.zeros((count, length), np.int32), np.zeros((count, length), np.int32)
    for r in range(count):
        row = rows[r] if r < len(rows) else rows[0]
        ids[r, length - len(row) :], segments[r, length - len(row) :] = row, 1
    return ids, segments


def continuation_logprobs(
    model,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    context_of: Sequence[int],
    *,
    contexts_per_batch: int = 8,
    rows_per_batch: int = 8,
    min_context_bucket: int = 64,
    min_continuation_bucket: int = 8,
) -> np.ndarray:
    """[K] float64 log p(continuations[k] | contexts[context_of[k]]); 0 for an empty continuation.

    Contexts are prefilled `contexts_per_batch` at a time (longest first), and the continuations of
    those contexts scored `rows_per_batch` at a time against their context's cache rows.
    """
    if len(context_of) != len(continuations):
        raise ValueError(
            f"continuation_logprobs: {len(context_of)} context indices for {len(continuations)} continuations"
        )
    if any(len(c) == 0 for c in contexts):
        raise ValueError("continuation_logprobs: every context needs at least one token")
    if any(not 0 <= int(i) < len(contexts) for i in context_of):
        raise ValueError(f"continuation_logprobs: a context index is outside 0..{len(contexts) - 1}")
    graphdef, state = nnx.split(model)
    rows_of: dict[int, list[int]] = {}
    for k, i in enumerate(context_of):
        if len(continuations[k]):
            rows_of.setdefault(int(i), []).append(k)
    order = sorted(rows_of, key=lambda i: -len(contexts[i]))
    sums = np.zeros(len(continuations), np.float64)
    for start in range(0, len(order), contexts_per_batch):
        chunk = order[start : start + contexts_per_batch]
        rows = [(slot, k) for slot, i in enumerate(chunk) for k in rows_of[i]]
        length = context_bucket(max(len(contexts[i]) for i in chunk), minimum=min_context_bucket)
        width = continuation_bucket(max(len(continuations[k]) for _, k in rows), minimum=min_continuation_bucket)
        ids, segments = _left_padded([contexts[i] for i in chunk], length, contexts_per_batch)
        last_logits, cache = _prefill_contexts_jit(graphdef, state, ids, segments, cache_length=length + width)
        for r0 in range(0, len(rows), rows_per_batch):
            batch = rows[r0 : r0 + rows_per_batch]
            batch = batch + [batch[0]] * (rows_per_batch - len(batch))  # filler rows, discarded
            tokens, labels = np.zeros((rows_per_batch, width), np.int32), np.full((rows_per_batch, width), -1, np.int32)
            for r, (_, k) in enumerate(batch):
                tokens[r, : len(continuations[k])] = labels[r, : len(continuations[k])] = continuations[k]
            context_rows = np.asarray([slot for slot, _ in batch], np.int32)
            out = np.asarray(
                _continuation_sums_jit(graphdef, state, last_logits, cache, context_rows, tokens, labels), np.float64
            )
            real = min(rows_per_batch, len(rows) - r0)
            sums[[k for _, k in batch[:real]]] = out[:real]
    if not np.all(np.isfinite(sums)):
        raise ValueError(f"continuation_logprobs: non-finite log-probabilities at {np.flatnonzero(~np.isfinite(sums))}")
    return sums
