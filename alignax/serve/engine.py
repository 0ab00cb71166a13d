"""Step-level KV-cache decoding for continuous batching: a fixed set of slots, each its own sequence.

The offline sampler (`alignax.sample.sampler`) prefills a whole batch together and decodes it in
lock step. A server needs rows that start and end at different times. Here all slots share the
model's ordinary batched cache (`model.init_cache(max_batch, max_context)`, one write column `g`
for every row, so each step is the same in-place one-column update as the sampler's), and rows are
told apart by SEGMENT IDS: every occupant of a slot gets a fresh segment id, and the model's mask
lets a query see only cache columns of its own segment at or before its column. Rotary positions
are passed per row, so a row's tokens need not sit at any particular columns.

    slots = init_slots(model, max_batch, max_context)
    slots = prefill_into_slots(graphdef, state, slots, ids[None, :P], prompt_len, targets, segments, ...)
    slots, out = decode_step(graphdef, state, slots, active, want_top, top_n=K)  # one token per slot
    slots = compact(slots, active)                                      # when column g runs out

Prefill runs prompt[:-1] (right-padded to a length bucket, pads as segment 0) through a fresh
P-column cache and copies it into columns [0, P) of each target slot (n > 1 choices share one
prefill); stale columns of earlier occupants keep their old segment ids and stay invisible. The
shared column g is raised to at least prompt_len, so the prompt lies before every later write.
The last prompt token becomes the slot's `last_token`: the first decode step feeds it and samples
token 1, so sampling lives in one place (`decode_step`). Inactive slots ride along with segment
id 0 (masked everywhere). When g reaches the context, `compact` moves every active row's columns
to the front (a stable gather) and sets g to the longest row; the host (batcher.py) decides when,
and admits a request only if g + its tokens, and every running row's remaining tokens, fit.

Sampling per slot (dynamic arrays, so one compiled step serves any mix of requests):
temperature 0 -> argmax of the raw logits; otherwise logits / T, then top-p, then a categorical
draw with key fold_in(row_key, step) — the offline sampler's keys, so a seeded request draws what
`alignax.sample.generate` draws for that prompt (same seed, prompt key, sample index).
Log-probs are the raw model's (log softmax of the logits at T = 1), as OpenAI reports them.

Compiled programs: `decode_step` once (fixed slots x context), `compact` once, and
`prefill_into_slots` once per prompt bucket used (powers of two from 16, capped at max_context).

From the sampler this module uses only `bucket_length` and `TOP_P_CANDIDATES`; the sampling rules
are the sampler's, restated here for per-row (dynamic) temperature and top-p. From the model: its
public call with a cache, `init_cache` and the cache dict's keys (k, v, segment_ids, positions, index).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from alignax.sample.sampler import TOP_P_CANDIDATES, bucket_length


class Slots(NamedTuple):
    """Device state of every slot (axis 0 of each array = slot, except the cache's layout)."""

    # The model's batched cache: k/v one stacked [L, B, S, KVH, hd] array (scan_layers) or a tuple of
    # per-layer [B, S, KVH*hd] buffers; segment_ids/positions [B, S]; index [].
    cache: Any
    segment: jax.Array  # [B] int32: the current occupant's segment id (0 = free)
    position: jax.Array  # [B] int32: rotary position of last_token
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
    """Empty slots: zero cache, all segments 0 (free), greedy."""
    zeros = lambda dtype=jnp.int32: jnp.zeros((max_batch,), dtype)  # distinct buffers: each is donated
    return Slots(
        cache=model.init_cache(max_batch, max_context),
        segment=zeros(),
        position=zeros(),
        last_token=zeros(),
        step=zeros(),
        row_keys=jnp.zeros((max_batch, 2), jnp.uint32),
        temperature=zeros(jnp.float32),
        top_p=jnp.ones((max_batch,), jnp.float32),
    )


def _write_row(buffer, row, slot):
    """A one-row prefill cache (batch 1, columns [0, P)) written into row `slot` of the slots' cache."""
    if isinstance(buffer, tuple):  # per-layer [B, S, F] buffers, each written in place
        return tuple(jax.lax.dynamic_update_slice(b, r, (slot, 0, 0)) for b, r in zip(buffer, row))
    return jax.lax.dynamic_update_slice(buffer, row, (0, slot, 0, 0, 0))  # stacked [L, B, S, KVH, hd]


def _gather_columns(buffer, order):
    """Columns of every row reordered by order [B, S] (either cache layout)."""
    if isinstance(buffer, tuple):
        return tuple(jnp.take_along_axis(b, order[:, :, None], axis=1) for b in buffer)
    return jnp.take_along_axis(buffer, order[None, :, :, None, None], axis=2)


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("slots",))
def prefill_into_slots(
    graphdef,
    model_state,
    slots: Slots,
    prompt_ids,
    prompt_len,
    targets,
    segments,
    count,
    last_token,
    row_keys,
    temperature,
    top_p,
) -> Slots:
    """Writes one prompt's cache into slots targets[:count] and resets their sampling state.

    prompt_ids [1, P]: prompt[:-1] right-padded (P a bucket); prompt_len: its real length (may be 0).
    targets, segments [B] int32 and row_keys [B, 2]: per target (entries past `count` are ignored).
    """
    model = nnx.merge(graphdef, model_state)
    length = prompt_ids.shape[1]
    columns = jnp.arange(length, dtype=jnp.int32)[None]
    real = columns < prompt_len
    _, row = model(
        prompt_ids,
        positions=columns,
        segment_ids=real.astype(jnp.int32),
        cache=model.init_cache(1, length),
        last_only=True,
    )

    def put(i, s: Slots) -> Slots:
        slot, segment = targets[i], segments[i]
        cache = dict(s.cache)
        for name in ("k", "v"):  # columns [0, P) of row `slot`
            cache[name] = _write_row(cache[name], row[name], slot)
        cache["segment_ids"] = jax.lax.dynamic_update_slice(
            cache["segment_ids"], jnp.where(real, segment, 0).astype(jnp.int32), (slot, 0)
        )
        cache["positions"] = jax.lax.dynamic_update_slice(cache["positions"], columns, (slot, 0))
        put1 = lambda a, v: a.at[slot].set(jnp.asarray(v, a.dtype))
        return Slots(
            cache=cache,
            segment=put1(s.segment, segment),
            position=put1(s.position, prompt_len),
            last_token=put1(s.last_token, last_token),
            step=put1(s.step, 0),
            row_keys=put1(s.row_keys, row_keys[i]),
            temperature=put1(s.temperature, temperature),
            top_p=put1(s.top_p, top_p),
        )

    slots = jax.lax.fori_loop(0, count, put, slots)
    index = jnp.maximum(slots.cache["index"], prompt_len).astype(jnp.int32)
    return slots._replace(cache=dict(slots.cache, index=index))


@functools.partial(jax.jit, donate_argnames=("slots",))
def compact(slots: Slots, active) -> Slots:
    """Moves each active row's columns to the front, in order; the shared column becomes the longest row."""
    cache = slots.cache
    valid = (cache["segment_ids"] == slots.segment[:, None]) & (slots.segment[:, None] != 0) & active[:, None]
    order = jnp.argsort(~valid, axis=1, stable=True)  # valid columns first, each group in column order
    counts = jnp.sum(valid, axis=1)
    kept = jnp.arange(valid.shape[1])[None] < counts[:, None]
    cache = dict(
        cache,
        k=_gather_columns(cache["k"], order),
        v=_gather_columns(cache["v"], order),
        segment_ids=jnp.where(kept, jnp.take_along_axis(cache["segment_ids"], order, axis=1), 0),
        positions=jnp.take_along_axis(cache["positions"], order, axis=1),
        index=jnp.max(counts).astype(jnp.int32),
    )
    return slots._replace(cache=cache)


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
def decode_step(graphdef, model_state, slots: Slots, active, want_top, *, top_n: int) -> tuple[Slots, StepOutput]:
    """One token for every slot, written at the shared column; inactive slots ride along as segment 0.

    want_top (a bool array, dynamic): whether any row asked for top log-probs; without it top_ids /
    top_logprobs are zeros and the top-k over the vocabulary is skipped. Likewise the categorical
    draw runs only when some active slot has temperature > 0 (an all-greedy batch takes the argmax only).
    """
    model = nnx.merge(graphdef, model_state)
    segments = jnp.where(active, slots.segment, 0)[:, None]
    logits, cache = model(
        slots.last_token[:, None], positions=slots.position[:, None], segment_ids=segments, cache=slots.cache
    )
    logits = logits[:, 0].astype(jnp.float32)
    tokens = jax.lax.cond(
        jnp.any(active & (slots.temperature > 0)),
        lambda: sample_per_row(logits, slots.row_keys, slots.step, slots.temperature, slots.top_p),
        lambda: jnp.argmax(logits, axis=-1).astype(jnp.int32),
    )
    log_norm = jax.nn.logsumexp(logits, axis=-1)
    token_logps = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0] - log_norm
    batch = logits.shape[0]
    top_logps, top_ids = jax.lax.cond(
        want_top,
        lambda: tuple(jax.lax.top_k(logits, top_n)),
        lambda: (jnp.zeros((batch, top_n), jnp.float32), jnp.zeros((batch, top_n), jnp.int32)),
    )
    top_logps = top_logps - log_norm[:, None]
    advance = active.astype(jnp.int32)
    slots = slots._replace(
        cache=cache,
        last_token=jnp.where(active, tokens, slots.last_token),
        position=slots.position + advance,
        step=slots.step + advance,
    )
    return slots, StepOutput(tokens, token_logps, top_ids.astype(jnp.int32), top_logps)
