"""Batched autoregressive sampling with the model's KV cache.

    generate(model, tokenizer, prompts, *, max_new_tokens, temperature, top_k, top_p, min_p,
             stop_strings, seed, batch_size, num_samples=1) -> list[Generation]

How a batch runs (all device work jitted; the host only re-batches and checks stop strings):
  1. Prompts are tokenized (chat template for strings/messages), sorted by length and cut into
     batches; each batch is LEFT-padded to a length bucket (a power of two >= 16), so only a
     few prompt shapes ever compile. Pads get segment_id 0 and position 0; real tokens get
     positions 0..len-1 counted from the first real token (cumsum of the mask).
  2. `_prefill`: one forward of the padded prompts that writes the cache and samples token 1
     from the last position's logits.
  3. `_decode`: a `lax.while_loop` of one-token steps (write one cache slot, sample) until every
     row is done or a step limit is reached. Without stop strings the limit is max_new_tokens
     (one call); with stop strings the host calls it in chunks of `stop_check_interval` steps and
     decodes the unfinished rows in between. A row that samples an EOS id (or whose text
     contains a stop string) is done: it keeps riding along in the batch (static shapes) but
     writes only padding and contributes nothing to log-probs.

Sampling distribution (the order of transformers' logits warpers, generation/utils.py
`_get_logits_processor`): logits / temperature -> top-k -> top-p -> min-p, then a categorical
draw (Gumbel-max via `jax.random.categorical`). temperature == 0 means greedy (argmax of the raw
logits). Filters keep ties at the threshold, as transformers does.

Log-probs, two kinds per sampled token (both float32):
  * `logprobs` / `logprob`: under the RAW model, log softmax(logits)[token] at temperature 1,
    unfiltered — what density-ratio rewards and policy-gradient methods need.
  * `sampling_logprobs` / `sampling_logprob`: under the distribution actually sampled from,
    log softmax(filter(logits / T))[token] (0 for greedy, which is deterministic).
The sums run over the returned `token_ids` (the EOS token included when it ended the row; for a
stop string, through the token that completed it).

Reproducibility: every row has its own key, fold_in(fold_in(PRNGKey(seed), prompt_key),
sample_index), and step t uses fold_in(row_key, t). prompt_key defaults to the prompt's index in
`prompts` (streaming jobs use a hash of the record id), so a row's random draws do not depend on
which other prompts share its batch, the batch size or the order. (Logits themselves can differ
in the last ulp between paddings, which could flip a near-tie.)

Stop strings end that row only; `text` excludes the stop string (vLLM's default
`include_stop_str_in_output=False`) and the EOS token.

With a `mesh`, the batch is sharded over `data_axis` (params replicated unless already on the
mesh); GSPMD propagates the batch sharding through the cache.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# finish codes on device
_RUNNING, _EOS = 0, 1
FINISH_REASONS = {_EOS: "eos"}


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Sampling distribution; hashable (a static argument of the jitted steps).

    temperature: 0 -> greedy argmax; otherwise logits are divided by it.
    top_k: keep the k largest logits (0 = off). top_p: keep the smallest head of the sorted
    distribution whose mass reaches p (1.0 = off). min_p: keep tokens whose probability is at
    least min_p times the top token's (0 = off).
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclasses.dataclass
class Generation:
    """One sampled continuation. `logprob`: raw-model sum; `sampling_logprob`: sampled-distribution sum."""

    prompt_index: int
    sample_index: int
    text: str
    token_ids: list[int]
    logprobs: list[float]
    sampling_logprobs: list[float]
    finish_reason: str  # "eos" | "stop" | "length"
    prompt_num_tokens: int

    @property
    def logprob(self) -> float:
        return float(np.sum(self.logprobs, dtype=np.float64))

    @property
    def sampling_logprob(self) -> float:
        return float(np.sum(self.sampling_logprobs, dtype=np.float64))

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(logprob=self.logprob, sampling_logprob=self.sampling_logprob, num_tokens=self.num_tokens)
        return d


# ----------------------------------------------------------------------------------------------
# The sampling distribution (pure, jittable)


TOP_P_CANDIDATES = 1024  # top-p looks at this many best tokens first (a full sort is ~50x slower)
# ... and before that at this many: on CPU `lax.top_k` of 64 over 49,152 logits costs ~1/30 of a
# top-1024 (1.6 ms vs 49 ms at batch 16, under load), and a peaked nucleus is usually inside it.
TOP_P_FIRST_CANDIDATES = 64


def _top_p_threshold(logits: jax.Array, top_p: float) -> jax.Array:
    """[B, 1]: the smallest logit in each row's nucleus (the tokens whose higher-ranked mass < p).

    Exact, without sorting the vocabulary in the common case: the probabilities of the top k
    candidates are normalized by the FULL logsumexp; a token outside them has at least their
    total mass ranked above it, so when that total reaches p in every row the nucleus lies inside
    the candidates. Tried with k = TOP_P_FIRST_CANDIDATES, then TOP_P_CANDIDATES (each only when
    the smaller set fell short in some row), then the whole vocabulary sorted (a very flat
    distribution).
    """
    log_total = jax.nn.logsumexp(logits, axis=-1, keepdims=True)

    def threshold_of(sorted_desc):
        probs = jnp.exp(sorted_desc - log_total)
        mass_above = jnp.cumsum(probs, axis=-1) - probs
        keep = mass_above < top_p
        return jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True), jnp.sum(probs, axis=-1)

    def full_sort():
        return threshold_of(-jnp.sort(-logits, axis=-1))[0]

    def candidates_first(k, otherwise):
        def attempt():
            threshold, candidate_mass = threshold_of(jax.lax.top_k(logits, k)[0])
            return jax.lax.cond(jnp.all(candidate_mass >= top_p), lambda: threshold, otherwise)

        return attempt

    attempt = full_sort
    for k in sorted({TOP_P_FIRST_CANDIDATES, TOP_P_CANDIDATES}, reverse=True):
        if k < logits.shape[-1]:
            attempt = candidates_first(k, attempt)
    return attempt()


def filter_logits(logits: jax.Array, params: SamplingParams) -> jax.Array:
    """logits [B, V] -> logits / T with tokens outside the top-k / top-p / min-p set at -inf.

    Same rules and order as transformers' TemperatureLogitsWarper -> TopKLogitsWarper ->
    TopPLogitsWarper -> MinPLogitsWarper (with min_tokens_to_keep = 1).
    """
    chex.assert_rank(logits, 2)
    logits = logits.astype(jnp.float32)
    if params.greedy:
        return logits
    neg_inf = jnp.array(-jnp.inf, jnp.float32)
    if params.temperature != 1.0:
        logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, params.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg_inf, logits)
    if params.top_p < 1.0:
        # A token survives if the mass ranked strictly above it is < p (transformers removes
        # tokens whose ascending cumulative mass is <= 1 - p: the same set). The top token
        # always survives (its mass above is 0).
        logits = jnp.where(logits < _top_p_threshold(logits, params.top_p), neg_inf, logits)
    if params.min_p > 0.0:
        probs = jax.nn.softmax(logits, axis=-1)
        keep = probs >= params.min_p * jnp.max(probs, axis=-1, keepdims=True)
        logits = jnp.where(keep, logits, neg_inf)
    return logits


def _token_logps(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log softmax(logits)[b, tokens[b]] = logits[b, token] - logsumexp(logits[b]), without the
    [B, V] log-softmax a take_along_axis would read back (one pass over the logits per step)."""
    chosen = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
    return chosen - jax.nn.logsumexp(logits, axis=-1)


def sample_tokens(row_keys: jax.Array, step: jax.Array, logits: jax.Array, params: SamplingParams):
    """Draws one token per row. Returns (tokens [B] int32, sampling_logps [B], model_logps [B]).

    row_keys: [B, 2] uint32 raw threefry key data; row b at step t uses fold_in(row_key_b, t).
    """
    chex.assert_rank(logits, 2)
    logits = logits.astype(jnp.float32)
    if params.greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        sampling_logps = jnp.zeros(tokens.shape, jnp.float32)
    else:
        filtered = filter_logits(logits, params)

        def draw(key_data, row_logits):
            key = jax.random.fold_in(jax.random.wrap_key_data(key_data), step)
            return jax.random.categorical(key, row_logits)

        tokens = jax.vmap(draw)(row_keys, filtered).astype(jnp.int32)
        sampling_logps = _token_logps(filtered, tokens)
    model_logps = _token_logps(logits, tokens)
    return tokens, sampling_logps, model_logps


def row_keys_for(seed: int, prompt_keys: Sequence[int], sample_indices: Sequence[int]) -> np.ndarray:
    """[B, 2] uint32 key data: fold_in(fold_in(PRNGKey(seed), prompt_key), sample_index)."""
    p = jnp.asarray(np.asarray(prompt_keys, np.uint32))
    s = jnp.asarray(np.asarray(sample_indices, np.uint32))
    return np.asarray(_derive_row_keys(jnp.uint32(seed), p, s))


@jax.jit
def _derive_row_keys(seed, prompt_keys, sample_indices):
    base = jax.random.PRNGKey(seed)
    return jax.vmap(lambda a, b: jax.random.fold_in(jax.random.fold_in(base, a), b))(prompt_keys, sample_indices)


def stable_prompt_key(record_id: Any) -> int:
    """A 31-bit key from a record id that is the same in every process (unlike hash())."""
    return zlib.crc32(str(record_id).encode("utf-8")) & 0x7FFFFFFF


# ----------------------------------------------------------------------------------------------
# Jitted prefill / decode


class DecodeState(NamedTuple):
    cache: Any
    last_token: jax.Array  # [B] int32, the token to feed next
    next_position: jax.Array  # [B] int32, its position
    done: jax.Array  # [B] bool
    finish: jax.Array  # [B] int32 (0 running, 1 eos)
    step: jax.Array  # [] int32, tokens generated so far
    tokens: jax.Array  # [B, N] int32
    model_logps: jax.Array  # [B, N] float32
    sampling_logps: jax.Array  # [B, N] float32
    row_keys: jax.Array  # [B, 2] uint32


def _record(state: DecodeState, tokens, sampling_logps, model_logps, *, eos_ids, pad_id) -> DecodeState:
    """Writes step `state.step`'s draws for the rows still running and updates done/finish."""
    active = ~state.done
    tokens = jnp.where(active, tokens, pad_id).astype(jnp.int32)
    sampling_logps = jnp.where(active, sampling_logps, 0.0)
    model_logps = jnp.where(active, model_logps, 0.0)
    col = state.step
    put = lambda buf, v: jax.lax.dynamic_update_slice(buf, v[:, None].astype(buf.dtype), (0, col))
    is_eos = active & jnp.isin(tokens, jnp.asarray(eos_ids, jnp.int32)) if eos_ids else jnp.zeros_like(active)
    return state._replace(
        last_token=tokens,
        done=state.done | is_eos,
        finish=jnp.where(is_eos, _EOS, state.finish),
        step=state.step + 1,
        tokens=put(state.tokens, tokens),
        model_logps=put(state.model_logps, model_logps),
        sampling_logps=put(state.sampling_logps, sampling_logps),
    )


@functools.partial(jax.jit, static_argnames=("graphdef", "params", "max_new_tokens", "eos_ids", "pad_id"))
def _prefill(
    graphdef, model_state, prompt_ids, prompt_mask, row_keys, done, *, params, max_new_tokens, eos_ids, pad_id
):
    model = nnx.merge(graphdef, model_state)
    batch, prompt_len = prompt_ids.shape
    chex.assert_shape(prompt_mask, (batch, prompt_len))
    cache = model.init_cache(batch, prompt_len + max_new_tokens)
    mask = prompt_mask.astype(jnp.int32)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    logits, cache = model(prompt_ids, positions=positions, segment_ids=mask, cache=cache, last_only=True)
    chex.assert_shape(logits, (batch, 1, None))
    state = DecodeState(
        cache=cache,
        last_token=jnp.zeros((batch,), jnp.int32),
        next_position=jnp.sum(mask, axis=1).astype(jnp.int32),
        done=done,
        finish=jnp.zeros((batch,), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        tokens=jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
        model_logps=jnp.zeros((batch, max_new_tokens), jnp.float32),
        sampling_logps=jnp.zeros((batch, max_new_tokens), jnp.float32),
        row_keys=row_keys,
    )
    tokens, slp, mlp = sample_tokens(row_keys, state.step, logits[:, -1], params)
    return _record(state, tokens, slp, mlp, eos_ids=eos_ids, pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=("graphdef", "params", "eos_ids", "pad_id"), donate_argnames=("state",))
def _decode(graphdef, model_state, state: DecodeState, limit, *, params, eos_ids, pad_id):
    model = nnx.merge(graphdef, model_state)
    max_new_tokens = state.tokens.shape[1]
    ones = jnp.ones((state.last_token.shape[0], 1), jnp.int32)

    def cond(s):
        return (s.step < jnp.minimum(limit, max_new_tokens)) & ~jnp.all(s.done)

    def body(s):
        logits, cache = model(
            s.last_token[:, None], positions=s.next_position[:, None], segment_ids=ones, cache=s.cache
        )
        s = s._replace(cache=cache, next_position=s.next_position + 1)
        tokens, slp, mlp = sample_tokens(s.row_keys, s.step, logits[:, -1], params)
        return _record(s, tokens, slp, mlp, eos_ids=eos_ids, pad_id=pad_id)

    return jax.lax.while_loop(cond, body, state)


# ----------------------------------------------------------------------------------------------
# Host driver


def bucket_length(n: int, *, minimum: int = 16) -> int:
    """Padded prompt length: the next power of two >= max(n, minimum)."""
    return max(minimum, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def encode_prompt(tokenizer, prompt, *, chat_template: bool = True) -> list[int]:
    """str -> chat template of one user turn (or plain encode); messages -> chat template; ids -> ids."""
    if isinstance(prompt, (list, tuple)) and (len(prompt) == 0 or isinstance(prompt[0], (int, np.integer))):
        ids = [int(t) for t in prompt]
    elif isinstance(prompt, str):
        if chat_template:
            ids = list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True))
        else:
            ids = list(tokenizer.encode(prompt))
    elif isinstance(prompt, (list, tuple)) and isinstance(prompt[0], dict):
        ids = list(tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True))
    else:
        raise TypeError(f"prompt must be a string, a list of chat messages or a list of token ids, got {type(prompt)}")
    if not ids:
        raise ValueError(f"prompt {prompt!r} encodes to zero tokens")
    return ids


def _eos_ids(tokenizer, eos_token_ids) -> tuple[int, ...]:
    if eos_token_ids is None:
        eos = getattr(tokenizer, "eos_token_id", None)
        eos_token_ids = [] if eos is None else eos
    if isinstance(eos_token_ids, (int, np.integer)):
        eos_token_ids = [eos_token_ids]
    return tuple(sorted({int(e) for e in eos_token_ids}))


def _place(model_state, mesh, data_axis):
    """Replicates params over `mesh` unless already laid out on it; returns (state, batch sharding)."""
    if mesh is None:
        return model_state, None
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    replicated = NamedSharding(mesh, P())

    def put(x):
        s = getattr(x, "sharding", None)
        if isinstance(s, NamedSharding) and s.mesh == mesh:
            return x
        return jax.device_put(x, replicated)

    return jax.tree.map(put, model_state), NamedSharding(mesh, P(data_axis))


def _find_stop(text: str, stop_strings: Sequence[str]) -> int:
    """Character index of the earliest stop string in text, or -1."""
    hits = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
    return min(hits) if hits else -1


def generate(
    model,
    tokenizer,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    stop_strings: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 16,
    num_samples: int = 1,
    eos_token_ids: int | Sequence[int] | None = None,
    chat_template: bool = True,
    prompt_keys: Sequence[int] | None = None,
    mesh=None,
    data_axis: str = "data",
    stop_check_interval: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[Generation]:
    """Samples `num_samples` continuations of every prompt; results prompt-major (i * n + j).

    prompts: strings (rendered as one user turn with the chat template when `chat_template`,
    else encoded as is), chat message lists, or token-id lists. eos_token_ids: defaults to the
    tokenizer's EOS; pass [] to never stop on EOS. See the module docstring for the semantics of
    seeds, log-probs and stop strings.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1 or num_samples < 1:
        raise ValueError(f"batch_size and num_samples must be >= 1, got {batch_size}, {num_samples}")
    params = SamplingParams(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p))
    stop_strings = tuple(s for s in (stop_strings or ()) if s)
    eos_ids = _eos_ids(tokenizer, eos_token_ids)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = int(pad_id if pad_id is not None else (eos_ids[0] if eos_ids else 0))
    if prompt_keys is None:
        prompt_keys = list(range(len(prompts)))
    if len(prompt_keys) != len(prompts):
        raise ValueError(f"prompt_keys has {len(prompt_keys)} entries for {len(prompts)} prompts")

    encoded = [encode_prompt(tokenizer, p, chat_template=chat_template) for p in prompts]
    rows = [(i, j) for i in range(len(prompts)) for j in range(num_samples)]
    # Longest first: similar lengths share a bucket; the order does not affect any row's draws.
    rows.sort(key=lambda r: -len(encoded[r[0]]))

    # A model with unscanned layers decodes from per-layer cache buffers, updated in place (no
    # copy of the weights or the cache inside a step: benchmarks/README.md, "sample — profile").
    graphdef, model_state = nnx.split(model)
    model_state, batch_sharding = _place(model_state, mesh, data_axis)
    if batch_sharding is not None:
        n_data = mesh.shape[data_axis]
        batch_size = -(-batch_size // n_data) * n_data

    results: dict[tuple[int, int], Generation] = {}
    decode = functools.partial(_decode, graphdef, model_state, params=params, eos_ids=eos_ids, pad_id=pad_id)
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start : start + batch_size]
        real = len(batch_rows)
        # Pad the batch with copies of its first row (fully masked rows could yield NaNs).
        batch_rows = batch_rows + [batch_rows[0]] * (batch_size - real)
        arrays = _prompt_arrays(encoded, batch_rows, real, pad_id=pad_id, seed=seed, prompt_keys=prompt_keys)
        if batch_sharding is not None:
            arrays = tuple(jax.device_put(a, batch_sharding) for a in arrays)
        state = _prefill(
            graphdef, model_state, *arrays, params=params, max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=pad_id
        )
        if stop_strings:
            state, stop_at = _decode_with_stop_strings(
                decode, state, tokenizer, real, stop_strings, eos_ids, stop_check_interval, batch_sharding
            )
        else:
            state, stop_at = decode(state, jnp.int32(max_new_tokens)), np.full((batch_size,), -1, np.int64)
        for generation in _to_generations(state, tokenizer, batch_rows[:real], encoded, stop_at, stop_strings, eos_ids):
            results[(generation.prompt_index, generation.sample_index)] = generation
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    return [results[(i, j)] for i in range(len(prompts)) for j in range(num_samples)]


def _prompt_arrays(encoded, batch_rows, real, *, pad_id, seed, prompt_keys):
    """One batch's host arrays: left-padded prompt ids to their bucket, the mask, each row's key
    and `done` (filler rows past `real` stop at once)."""
    lengths = [len(encoded[i]) for i, _ in batch_rows]
    prompt_len = bucket_length(max(lengths))
    ids = np.full((len(batch_rows), prompt_len), pad_id, np.int32)
    mask = np.zeros((len(batch_rows), prompt_len), np.int32)
    for b, (i, _) in enumerate(batch_rows):
        ids[b, prompt_len - lengths[b] :] = encoded[i]
        mask[b, prompt_len - lengths[b] :] = 1
    keys = row_keys_for(seed, [prompt_keys[i] for i, _ in batch_rows], [j for _, j in batch_rows])
    done = np.zeros((len(batch_rows),), bool)
    done[real:] = True
    return ids, mask, keys, done


def _decode_with_stop_strings(decode, state, tokenizer, real, stop_strings, eos_ids, interval, batch_sharding):
    """Decodes `interval` tokens at a time and checks the new text of each running row for a stop
    string on the host; a row that hits one is marked done on the device. Returns the state and,
    per row, how many tokens to keep (-1: no stop string hit)."""
    batch_size, max_new_tokens = state.tokens.shape
    host_final = np.zeros((batch_size,), bool)
    host_final[real:] = True
    stop_at = np.full((batch_size,), -1, np.int64)  # number of tokens kept when a stop string hit
    checked = np.zeros((batch_size,), np.int64)
    while True:
        state = decode(state, jnp.int32(int(state.step) + interval))
        step = int(state.step)
        tokens, finished = jax.device_get((state.tokens, state.done))
        newly_done = np.zeros((batch_size,), bool)
        for b in np.flatnonzero(~host_final):
            row = tokens[b, :step]
            # Tokens generated so far, the EOS excluded (it is not text).
            n_valid = int(np.argmax(np.isin(row, eos_ids))) if finished[b] and eos_ids else step
            k = _first_stop_prefix(tokenizer, row[:n_valid], stop_strings, start=int(checked[b]))
            checked[b] = n_valid
            if k >= 0:
                stop_at[b], host_final[b], newly_done[b] = k, True, True
            elif finished[b]:
                host_final[b] = True
        if newly_done.any():
            done = np.asarray(jax.device_get(state.done)) | newly_done
            done = jax.device_put(done, batch_sharding) if batch_sharding is not None else jnp.asarray(done)
            state = state._replace(done=done)
        if step >= max_new_tokens or host_final.all():
            return state, stop_at


def _to_generations(state, tokenizer, rows, encoded, stop_at, stop_strings, eos_ids) -> list[Generation]:
    """A finished batch's real rows (`rows`: their (prompt index, sample index), in batch order) as
    Generations: the text cut at a stop string, before an EOS, or at the token limit."""
    tokens, finish, model_logps, sampling_logps = jax.device_get(
        (state.tokens, state.finish, state.model_logps, state.sampling_logps)
    )
    max_new_tokens = tokens.shape[1]
    generations = []
    for b, (prompt_index, sample_index) in enumerate(rows):
        row = tokens[b]
        if stop_at[b] >= 0:
            n, reason = int(stop_at[b]), "stop"
            text = tokenizer.decode([int(t) for t in row[:n]])
            text = text[: _find_stop(text, stop_strings)]
        elif finish[b] == _EOS:
            n, reason = int(np.argmax(np.isin(row, eos_ids))) + 1, "eos"
            text = tokenizer.decode([int(t) for t in row[: n - 1]])
        else:
            n, reason = max_new_tokens, "length"
            text = tokenizer.decode([int(t) for t in row[:n]])
        generations.append(
            Generation(
                prompt_index=prompt_index,
                sample_index=sample_index,
                text=text,
                token_ids=[int(t) for t in row[:n]],
                logprobs=[float(x) for x in model_logps[b, :n]],
                sampling_logprobs=[float(x) for x in sampling_logps[b, :n]],
                finish_reason=reason,
                prompt_num_tokens=len(encoded[prompt_index]),
            )
        )
    return generations


def _first_stop_prefix(tokenizer, tokens: np.ndarray, stop_strings: Sequence[str], *, start: int) -> int:
    """Smallest k > start with a stop string in decode(tokens[:k]) (-1 if none up to len(tokens)).

    Earlier prefixes (<= start) were checked before, so the scan covers the new tokens only.
    """
    if len(tokens) == 0 or _find_stop(tokenizer.decode([int(t) for t in tokens]), stop_strings) < 0:
        return -1
    for k in range(max(start, 0) + 1, len(tokens) + 1):
        if _find_stop(tokenizer.decode([int(t) for t in tokens[:k]]), stop_strings) >= 0:
            return k
    return len(tokens)
