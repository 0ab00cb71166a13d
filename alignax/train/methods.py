"""Methods: how an objective turns (model, batch) into (loss, metrics).

Every method reads the same packed batch layout (docs/batches.md):

  input_ids      [R, L] int32   packed rows of token ids
  segment_ids    [R, L] int32   1..S for the sequences packed in a row, 0 on padding
  positions      [R, L] int32   restart at 0 in every segment
  loss_mask      [R, L]         1 on tokens that are predicted (response tokens), else 0
  sequence_index [R, S] int32   which sequence of the batch segment s+1 of row r is (-1: none)

Pairwise methods number their sequences [0, B) chosen and [B, 2B) rejected; per-sequence summed
log-probs come from one forward pass over the packed rows (the chunked log-prob kernel never
materializes [R, L, V] logits). Objectives themselves are pure functions in `alignax.losses`;
a method only gathers their inputs. Methods are registered by name, like losses.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from alignax import losses
from alignax.ops import logprobs as logprobs_ops

Batch = dict[str, jax.Array]
_METHODS: dict[str, Callable] = {}

# The loss inputs each method computes from the model; a loss's other inputs are per-example data
# fields (`field/<name>` in the batch), which the records must carry (docs/batches.md).
_PAIR = (
    "chosen_logps",
    "rejected_logps",
    "chosen_lengths",
    "rejected_lengths",
    "ref_chosen_logps",
    "ref_rejected_logps",
)
MODEL_INPUTS = {
    "sft": ("token_logps", "loss_mask", "num_tokens"),
    "soft": ("exit_token_logps", "loss_mask", "num_tokens"),
    "pairwise": _PAIR + ("prev_chosen_logps", "prev_rejected_logps"),
    "kto": ("logps", "ref_logps", "desirable", "kl_baseline"),
    "multi_sample": ("logps", "lengths", "ref_logps"),
    "reward_model": ("chosen_rewards", "rejected_rewards"),
    "cut": ("aligned_logps", "aligned_mask", "unjudged_logps"),
}


def register_method(name: str):
    def decorator(fn):
        _METHODS[name] = fn
        return fn

    return decorator


def get_method(name: str) -> Callable:
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def method_names() -> list[str]:
    return sorted(_METHODS)


# ----------------------------------------------------------------------------- log-prob gathering


def _target_mask(batch: Batch) -> jax.Array:
    """Mask over label positions t (predicting token t+1): a response token in the same segment."""
    seg = batch["segment_ids"]
    same_segment = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    return batch["loss_mask"][:, 1:].astype(jnp.float32) * same_segment.astype(jnp.float32)


def token_logps_from_hidden(
    hidden: jax.Array, head_weight: jax.Array, batch: Batch, *, chunk_size: int, vocab_chunk_size: int | None = None
) -> jax.Array:
    """Per-token log p(next token) [R, L-1] under the packed layout, masked to response tokens."""
    token_logps = logprobs_ops.token_logprobs(
        hidden[:, :-1],
        head_weight,
        batch["input_ids"][:, 1:],
        chunk_size=chunk_size,
        vocab_chunk_size=vocab_chunk_size,
    )
    return token_logps * _target_mask(batch)


def per_sequence_sums(values: jax.Array, batch: Batch, num_sequences: int) -> jax.Array:
    """Sum per-label-position `values` [R, L-1] into per-sequence totals [num_sequences]."""
    seg = batch["segment_ids"][:, 1:]
    seq_of_token = jnp.take_along_axis(batch["sequence_index"], jnp.maximum(seg - 1, 0), axis=1)
    seq_of_token = jnp.where((seg > 0) & (seq_of_token >= 0), seq_of_token, num_sequences)
    sums = jax.ops.segment_sum(values.reshape(-1), seq_of_token.reshape(-1), num_segments=num_sequences + 1)
    return sums[:num_sequences]


def sequence_logps(
    model, batch: Batch, num_sequences: int, *, chunk_size: int, vocab_chunk_size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """(summed response log-probs [N], response token counts [N]) of every sequence in the batch."""
    hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    token_logps = token_logps_from_hidden(
        hidden, model.lm_head_weight(), batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )
    logps = per_sequence_sums(token_logps, batch, num_sequences)
    lengths = per_sequence_sums(_target_mask(batch), batch, num_sequences)
    return logps, lengths


def call_loss(loss_name: str, available: dict[str, Any], hparams: dict[str, Any]):
    """Call a loss with the keyword arrays it declares (`losses.info(name).inputs`) and the run's
    hyperparameters. The config was checked against the declaration before tracing
    (`alignax.train.validate`), so a missing input here is a bug in a method, not a user error."""
    entry = losses.info(loss_name)
    missing = [name for name in entry.inputs if name not in available]
    if missing:
        raise ValueError(f"method cannot provide {missing} for loss {loss_name!r} (it provides {sorted(available)})")
    return entry.fn(**{name: available[name] for name in entry.inputs}, **hparams)


def data_fields(batch: Batch, num_sequences: int) -> dict[str, jax.Array]:
    """The per-sequence data fields of a batch (`field/<name>` arrays [R, 1]) as [num_sequences] arrays."""
    return {
        key.split("/", 1)[1]: per_sequence_row_values(value, batch, num_sequences)
        for key, value in batch.items()
        if key.startswith("field/")
    }


# ----------------------------------------------------------------------------- methods


@register_method("sft")
def sft_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens,
    num_sides: int = 2,
):
    """Token-mean NLL over response tokens. `num_tokens` is the token count of the WHOLE (accumulated)
    batch, so that k micro-batches give exactly the large-batch loss with ragged lengths."""
    hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    token_logps = token_logps_from_hidden(
        hidden, model.lm_head_weight(), batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )
    mask = _target_mask(batch)
    return call_loss(loss_name, {"token_logps": token_logps, "loss_mask": mask, "num_tokens": num_tokens}, hparams)


sft_method.token_normalized = True


@register_method("soft")
def soft_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens,
    num_sides: int = 2,
):
    """Sorted fine-tuning: NLL at several exit layers through the shared final norm and head."""
    exit_layers = tuple(hparams["exit_layers"])
    hidden_by_layer = model.hidden_states(
        batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"], exit_layers=exit_layers
    )
    head = model.lm_head_weight()
    stacked = jnp.stack(
        [
            token_logps_from_hidden(
                hidden_by_layer[layer], head, batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
            )
            for layer in exit_layers
        ]
    )
    arrays = {"exit_token_logps": stacked, "loss_mask": _target_mask(batch), "num_tokens": num_tokens}
    return call_loss(loss_name, arrays, dict(hparams, exit_layers=exit_layers))


soft_method.token_normalized = True


@register_method("pairwise")
def pairwise_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens=None,
    num_sides: int = 2,
):
    """DPO family, SimPO, ORPO, IPO, SPPO, INPO, DNO, ...: chosen and rejected in one packed forward pass.

    The reference log-probs come from the data (`reference: precomputed`, or an iteration pipeline's
    stored values) when present, else from the frozen reference model, else are omitted
    (reference-free objectives)."""
    logps, lengths = sequence_logps(
        model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )
    arrays = {
        "chosen_logps": logps[:batch_size],
        "rejected_logps": logps[batch_size:],
        "chosen_lengths": lengths[:batch_size],
        "rejected_lengths": lengths[batch_size:],
    }
    model_ref = {}
    if ref_model is not None:
        ref_logps, _ = sequence_logps(
            ref_model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
        )
        ref_logps = jax.lax.stop_gradient(ref_logps)
        model_ref = {"chosen": ref_logps[:batch_size], "rejected": ref_logps[batch_size:]}
    # Per-example data fields (SPPO's win probabilities, precomputed reference log-probs, ...) ride on
    # the chosen sequence; a data field wins over the same input computed from a model.
    fields = {name: values[:batch_size] for name, values in data_fields(batch, 2 * batch_size).items()}
    for side in ("chosen", "rejected"):
        # ref: precomputed (data) or the frozen reference model. prev (INPO's previous iterate pi_t):
        # data, else the run's starting model (the on-the-fly reference), else the reference.
        ref = fields.get(f"ref_{side}_logps", model_ref.get(side))
        prev = fields.get(f"prev_{side}_logps", model_ref.get(side, ref))
        for name, value in ((f"ref_{side}_logps", ref), (f"prev_{side}_logps", prev)):
            if value is not None:
                arrays[name] = value
    arrays.update({name: value for name, value in fields.items() if name not in arrays})
    return call_loss(loss_name, arrays, hparams)


def per_sequence_row_values(row_values: jax.Array, batch: Batch, num_sequences: int) -> jax.Array:
    """Per-sequence values stored next to `sequence_index` ([R, S]) -> [num_sequences]."""
    index = batch["sequence_index"]
    index = jnp.where(index >= 0, index, num_sequences)
    out = jax.ops.segment_sum(
        row_values.reshape(-1).astype(jnp.float32), index.reshape(-1), num_segments=num_sequences + 1
    )
    return out[:num_sequences]


@register_method("kto")
def kto_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens=None,
    num_sides: int = 2,
):
    """KTO on unpaired completions with labels (the `label` field of each completion).

    Sequences [0, B) are the batch's (x_i, y_i); sequences [B, 2B) are the mismatched pairs
    (x_i, y_{i-1}) that the feed builds (`feed.mismatched_sequence`). The reference point
    z0 = max(0, mean_i [log pi(y_{i-1}|x_i) - log pi_ref(y_{i-1}|x_i)]), detached, as in KTO §4 and
    TRL's KTOTrainer; the mean runs over the global batch (all devices) because the arrays are global."""
    from alignax.losses.kto import kto_kl_baseline

    if ref_model is None:
        raise ValueError("kto needs a reference: set config.reference='on_the_fly'")
    logps, _ = sequence_logps(model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    ref_logps = jax.lax.stop_gradient(
        sequence_logps(ref_model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)[0]
    )
    fields = data_fields(batch, 2 * batch_size)
    arrays = {
        "logps": logps[:batch_size],
        "ref_logps": ref_logps[:batch_size],
        "desirable": fields["label"][:batch_size] > 0.5,
        "kl_baseline": kto_kl_baseline(logps[batch_size:], ref_logps[batch_size:]),
    }
    return call_loss(loss_name, arrays, hparams)


@register_method("multi_sample")
def multi_sample_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens=None,
    num_sides: int = 2,
):
    """K scored samples per prompt (SPPO's per-sample regression, CGPO's CRRAFT): every response is
    one sequence with its own fields (`win_probs`, `rewards`, ...); the loss sees [K * B] arrays."""
    num_sequences = num_sides * batch_size
    logps, lengths = sequence_logps(
        model, batch, num_sequences, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )
    arrays = {"logps": logps, "lengths": lengths, **data_fields(batch, num_sequences)}
    if ref_model is not None and "ref_logps" not in arrays:  # precomputed (a data field) wins
        arrays["ref_logps"] = jax.lax.stop_gradient(
            sequence_logps(ref_model, batch, num_sequences, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)[0]
        )
    return call_loss(loss_name, arrays, hparams)


@register_method("reward_model")
def reward_model_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens=None,
    num_sides: int = 2,
):
    """Bradley–Terry reward model: `model` is an `alignax.models.reward_head.RewardModel` whose
    head reads each sequence's last token; rows hold one sequence each (chosen, then rejected)."""
    row_rewards = model(batch["input_ids"], segment_ids=batch["segment_ids"], positions=batch["positions"])
    index = batch["sequence_index"][:, 0]
    rewards = jax.ops.segment_sum(
        row_rewards, jnp.where(index >= 0, index, 2 * batch_size), num_segments=2 * batch_size + 1
    )
    arrays = {"chosen_rewards": rewards[:batch_size], "rejected_rewards": rewards[batch_size : 2 * batch_size]}
    return call_loss(loss_name, arrays, hparams)


def response_token_table(values: jax.Array, batch: Batch, num_sequences: int) -> tuple[jax.Array, jax.Array]:
    """Per-label-position `values` [R, L-1] laid out per sequence and response token: ([N, L-1]
    values, [N, L-1] mask), entry [n, t] being the t-th response token of sequence n.

    The ordinal of a response token is the count of response tokens before it in its segment, so
    the same response under two prompts of different lengths lands at the same [., t] (CUT
    compares p(y_t | x, j, y_<t) with p(y_t | x, y_<t) token by token)."""
    mask = _target_mask(batch)
    seg = batch["segment_ids"][:, 1:]
    seq_of_token = jnp.take_along_axis(batch["sequence_index"], jnp.maximum(seg - 1, 0), axis=1)
    keep = (mask > 0) & (seg > 0) & (seq_of_token >= 0)
    before = jnp.cumsum(mask, axis=1) - mask  # response tokens earlier in the row
    starts = jnp.concatenate([jnp.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], axis=1)
    segment_offset = jax.lax.cummax(jnp.where(starts, before, 0.0), axis=1)
    ordinal = (before - segment_offset).astype(jnp.int32)
    width = values.shape[1]
    rows = jnp.where(keep, seq_of_token, num_sequences)  # masked tokens go to a dropped row
    table = jnp.zeros((num_sequences + 1, width), values.dtype).at[rows, ordinal].add(jnp.where(keep, values, 0.0))
    table_mask = jnp.zeros((num_sequences + 1, width), jnp.float32).at[rows, ordinal].add(keep.astype(jnp.float32))
    return table[:num_sequences], table_mask[:num_sequences]


@register_method("cut")
def cut_method(
    model,
    batch: Batch,
    *,
    ref_model=None,
    loss_name: str,
    hparams: dict,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
    batch_size: int,
    num_tokens=None,
    num_sides: int = 2,
):
    """CUT (Xu et al., 2024; METHODS.md section 7): every example is two sequences of the same
    response y, [0, B) under the plain prompt x and [B, 2B) under the judgment prompt (x, j)
    (`alignax.data.tokenize.cut_judgment_prompt`), in one forward pass of one model.

    aligned   = log p(y_t | x, y_<t) for positive examples (Align-P), log p(y_t | x, j, y_<t) for
                negative ones (Align-N);  unjudged = log p(y_t | x, y_<t) (Misalign);
    the loss (`alignax.losses.cut`) flags token t of a negative example when
    p(y_t | x, j, y_<t) / p(y_t | x, y_<t) > threshold and applies unlikelihood there. The feed
    trims both sequences to the same response tokens and sets `is_negative` from the score."""
    hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    token_logps = token_logps_from_hidden(
        hidden, model.lm_head_weight(), batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size
    )
    table, mask = response_token_table(token_logps, batch, 2 * batch_size)
    plain, judged = table[:batch_size], table[batch_size:]
    plain_mask, judged_mask = mask[:batch_size], mask[batch_size:]
    fields = data_fields(batch, 2 * batch_size)
    negative = fields["is_negative"][:batch_size] > 0.5
    arrays = {
        "aligned_logps": jnp.where(negative[:, None], judged, plain),
        "aligned_mask": jnp.where(negative[:, None], judged_mask * plain_mask, plain_mask),
        "unjudged_logps": plain,
        "is_negative": negative,
    }
    return call_loss(loss_name, arrays, hparams)
