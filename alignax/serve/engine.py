"""Step-level KV-cache decoding for continuous batching: a fixed set of slots, each its own sequence.

The offline sampler (`alignax.sample.sampler`) decodes a whole batch in lock step: one shared cache
write index, every row prefilled together. A server needs rows that start and end at different
times, so here every slot owns a one-row cache (`model.init_cache(1, max_context)`) with its OWN
write index, and the model runs on all slots at once under `jax.vmap` over the slot axis. No model
code changes: under vmap the per-row index just turns the cache's dynamic slices into gathers and
scatters.

    slots = init_slots(model, max_batch, max_context)
    slots = prefill_into_slots(graphdef, state, slots, ids[None, :P], prompt_len, targets, ...)
    slots, out = decode_step(graphdef, state, slots, active, top_n=K)   # one token for every slot

Prefill writes prompt[:-1] (right-padded to a length bucket, pads masked as segment 0) into a fresh
row cache, sets its index to the real length and copies it into the target slots (n > 1 choices
share one prefill). The last prompt token becomes the slot's `last_token`: the first decode step
feeds it and samples token 1, so sampling lives in one place (`decode_step`) and a slot's context
need only hold prompt + new tokens (no padding). A right-padded prefill leaves pad slots behind
the real tokens; decode overwrites them in order and the causal mask hides them until then.

Sampling per slot (dynamic arrays, so one compiled step serves any mix of requests):
temperature 0 -> argmax of the raw logits; otherwise logits / T, then top-p, then a categorical
draw with key fold_in(row_key, step) — the offline sampler's keys, so a seeded request draws what
`alignax.sample.generate` draws for that prompt (same seed, prompt key, sample index).
Log-probs are the raw model's (log softmax of the logits at T = 1), as OpenAI reports them.

Compiled programs: `decode_step` once (fixed slots x context), `prefill_into_slots` once per prompt
bucket used (powers of two from 16, capped at max_context).

From the sampler this module uses only `bucket_length` and `TOP_P_CANDIDATES`; the sampling rules
are the sampler's, restated here for per-row (dynamic) temperature and top-p.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from alignax.sample.sampler import TOP_P_CANDIDATES, bucket_length


class Slots(NamedTuple):
    """Device state of every slot (leading axis = slot)."""

    cache: Any  # the model's cache dict, each leaf stacked over slots: k [B, L, 1, S, KVH, hd], index [B]
    last_token: jax.Array  # [B] int32: the token fed at the next step
    step: jax.Array  # [B] int32: tokens sampled so far (the fold_in counter of the row key)
    row_keys: jax.Array  # [B, 2] uint32
    temperature: jax.Array  # [B] float32 (0 = greedy)
    top_p: jax.Array  # [B] float32 (1 = off)


class StepOutput(NamedTuple):
    tokens: jax.Array  # [B] int32
    logprobs: jax.Array  # [B] float32, raw model log-prob of each token
    top_ids: jax.Array  # [B, K] int32, the K most likely tokens, best first
    top_logprobs: jax.Array  # [B, K] float32


def prefill_bucket(num_prefill_tokens: int, max_context: int) -> int:
    """Padded prefill length for prompt[:-1]: a power of two >= 16, capped at the context."""
    return min(bucket_length(num_prefill_tokens), max_context)


def init_slots(model, max_batch: int, max_context: int) -> Slots:
    """Empty slots: zero caches, greedy, step 0."""
    row = model.init_cache(1, max_context)
    cache = jax.tree.map(lambda x: jnp.zeros((max_batch,) + x.shape, x.dtype), row)
    # Distinct buffers: the steps donate every leaf, and one buffer cannot be donated twice.
    return Slots(cache=cache, last_token=jnp.zeros((max_batch,), jnp.int32),
                 step=jnp.zeros((max_batch,), jnp.int32), row_keys=jnp.zeros((max_batch, 2), jnp.uint32),
                 temperature=jnp.zeros((max_batch,), jnp.float32), top_p=jnp.ones((max_batch,), jnp.float32))


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("slots",))
def prefill_into_slots(graphdef, model_state, slots: Slots, prompt_ids, prompt_len, targets, count, last_token,
                       row_keys, temperature, top_p) -> Slots:
    """Writes one prompt's cache into slots targets[:count] and resets their sampling state.

    prompt_ids [1, P]: prompt[:-1] right-padded (P a bucket); prompt_len: its real length (may be 0).
    targets [B] int32 (entries past `count` are ignored); row_keys [B, 2] aligned with targets.
    """
    model = nnx.merge(graphdef, model_state)
    max_context = slots.cache["segment_ids"].shape[-1]
    length = prompt_ids.shape[1]
    cache = model.init_cache(1, max_context)
    index = jnp.arange(length, dtype=jnp.int32)[None]
    segments = (index < prompt_len).astype(jnp.int32)
    _, cache = model(prompt_ids, positions=index, segment_ids=segments, cache=cache, last_only=True)
    cache = dict(cache, index=jnp.asarray(prompt_len, jnp.int32))

    def put(i, s: Slots) -> Slots:
        slot = targets[i]

        def write(stacked, value):
            value = jnp.asarray(value, stacked.dtype)[None]
            return jax.lax.dynamic_update_slice(stacked, value, (slot,) + (0,) * (stacked.ndim - 1))

        return Slots(
            cache=jax.tree.map(write, s.cache, cache),
            last_token=write(s.last_token, last_token),
            step=write(s.step, 0),
            row_keys=write(s.row_keys, row_keys[i]),
            temperature=write(s.temperature, temperature),
            top_p=write(s.top_p, top_p),
        )

    return jax.lax.fori_loop(0, count, put, slots)


def top_p_threshold(logits, top_p):
    """[B]: the smallest logit inside each row's nucleus (tokens whose higher-ranked mass < top_p[b]).

    As the sampler does it: exact from the top TOP_P_CANDIDATES logits (normalized by the full
    logsumexp) whenever their mass reaches p in every row, else from a full sort. A row with
    top_p 0 keeps nothing here (threshold +inf); callers use that for rows without top-p.
    """
    log_norm = jax.nn.logsumexp(logits, axis=-1, keepdims=True)

    def threshold_of(sorted_desc):
        probs = jnp.exp(sorted_desc - log_norm)
        keep = jnp.cumsum(probs, axis=-1) - probs < top_p[:, None]
        return jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1), jnp.sum(probs, axis=-1)

    full_sort = lambda: threshold_of(-jnp.sort(-logits, axis=-1))[0]
    if TOP_P_CANDIDATES >= logits.shape[-1]:
        return full_sort()
    threshold, candidate_mass = threshold_of(jax.lax.top_k(logits, TOP_P_CANDIDATES)[0])
    return jax.lax.cond(jnp.all(candidate_mass >= top_p), lambda: threshold, full_sort)


def sample_per_row(logits, row_keys, step, temperature, top_p):
    """Tokens [B] from logits [B, V] with per-row temperature / top-p (see the module docstring)."""
    logits = logits.astype(jnp.float32)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)[:, None]
    wants_top_p = top_p < 1.0

    def apply_top_p(x):
        threshold = top_p_threshold(x, jnp.where(wants_top_p, top_p, 0.0))
        keep = (x >= threshold[:, None]) | ~wants_top_p[:, None]
        return jnp.where(keep, x, -jnp.inf)

    filtered = jax.lax.cond(jnp.any(wants_top_p), apply_top_p, lambda x: x, scaled)

    def draw(key_data, row_step, row_logits):
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), row_step)
        return jax.random.categorical(key, row_logits)

    sampled = jax.vmap(draw)(row_keys, step, filtered).astype(jnp.int32)
    return jnp.where(temperature > 0, sampled, greedy)


@functools.partial(jax.jit, static_argnames=("graphdef", "top_n"), donate_argnames=("slots",))
def decode_step(graphdef, model_state, slots: Slots, active, *, top_n: int) -> tuple[Slots, StepOutput]:
    """One token for every slot; inactive slots compute too (static shapes) but do not advance."""

    def row_forward(row_cache, token):
        model = nnx.merge(graphdef, model_state)
        position = row_cache["index"].reshape(1, 1)
        logits, row_cache = model(token.reshape(1, 1), positions=position, segment_ids=jnp.ones((1, 1), jnp.int32),
                                  cache=row_cache)
        return logits[0, 0], row_cache

    logits, cache = jax.vmap(row_forward)(slots.cache, slots.last_token)
    cache = dict(cache, index=jnp.where(active, cache["index"], slots.cache["index"]))
    tokens = sample_per_row(logits, slots.row_keys, slots.step, slots.temperature, slots.top_p)
    logps = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_logps = jnp.take_along_axis(logps, tokens[:, None], axis=-1)[:, 0]
    top_logps, top_ids = jax.lax.top_k(logps, top_n)
    slots = slots._replace(
        cache=cache,
        last_token=jnp.where(active, tokens, slots.last_token),
        step=slots.step + active.astype(jnp.int32),
    )
    return slots, StepOutput(tokens, token_logps, top_ids.astype(jnp.int32), top_logps)
