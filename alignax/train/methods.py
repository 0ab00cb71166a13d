"""Methods: how an objective turns (model, batch) into (loss, metrics).

Every method reads the same packed batch layout (see `alignax.data` / `docs/batches.md`):

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

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from alignax import losses
from alignax.ops import logprobs as logprobs_ops

Batch = dict[str, jax.Array]
_METHODS: dict[str, Callable] = {}


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


def token_logps_from_hidden(hidden: jax.Array, head_weight: jax.Array, batch: Batch, *, chunk_size: int, vocab_chunk_size: int | None = None) -> jax.Array:
    """Per-token log p(next token) [R, L-1] under the packed layout, masked to response tokens."""
    token_logps = logprobs_ops.token_logprobs(
        hidden[:, :-1], head_weight, batch["input_ids"][:, 1:], chunk_size=chunk_size,
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


def sequence_logps(model, batch: Batch, num_sequences: int, *, chunk_size: int, vocab_chunk_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """(summed response log-probs [N], response token counts [N]) of every sequence in the batch."""
    hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    token_logps = token_logps_from_hidden(hidden, model.lm_head_weight(), batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    logps = per_sequence_sums(token_logps, batch, num_sequences)
    lengths = per_sequence_sums(_target_mask(batch), batch, num_sequences)
    return logps, lengths


def _call_with_accepted(loss_fn: Callable, arrays: dict[str, Any], hparams: dict[str, Any]):
    """Call a loss with the arrays it declares (SimPO takes no reference) plus its hyperparameters."""
    params = inspect.signature(loss_fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {k: v for k, v in arrays.items() if takes_any or k in params}
    unknown = [k for k in hparams if not takes_any and k not in params]
    if unknown:
        raise ValueError(f"loss {loss_fn.__name__} has no hyperparameter(s) {unknown}; it accepts {sorted(params)}")
    return loss_fn(**accepted, **hparams)


# ----------------------------------------------------------------------------- methods


@register_method("sft")
def sft_method(model, batch: Batch, *, ref_model=None, loss_name: str, hparams: dict, chunk_size: int, vocab_chunk_size: int | None = None, batch_size: int, num_tokens):
    """Token-mean NLL over response tokens. `num_tokens` is the token count of the WHOLE (accumulated)
    batch, so that k micro-batches give exactly the large-batch loss with ragged lengths."""
    hidden = model.hidden_states(batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"])
    token_logps = token_logps_from_hidden(hidden, model.lm_head_weight(), batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    mask = _target_mask(batch)
    loss_fn = losses.get(loss_name)
    return _call_with_accepted(loss_fn, {"token_logps": token_logps, "loss_mask": mask, "num_tokens": num_tokens}, hparams)


sft_method.token_normalized = True


@register_method("soft")
def soft_method(model, batch: Batch, *, ref_model=None, loss_name: str, hparams: dict, chunk_size: int, vocab_chunk_size: int | None = None, batch_size: int,
                num_tokens):
    """Sorted fine-tuning: NLL at several exit layers through the shared final norm and head."""
    exit_layers = tuple(hparams["exit_layers"])
    hidden_by_layer = model.hidden_states(
        batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"], exit_layers=exit_layers
    )
    head = model.lm_head_weight()
    stacked = jnp.stack(
        [token_logps_from_hidden(hidden_by_layer[layer], head, batch, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size) for layer in exit_layers]
    )
    arrays = {"exit_token_logps": stacked, "loss_mask": _target_mask(batch), "num_tokens": num_tokens}
    return _call_with_accepted(losses.get(loss_name), arrays, dict(hparams, exit_layers=exit_layers))


soft_method.token_normalized = True


@register_method("pairwise")
def pairwise_method(
    model, batch: Batch, *, ref_model=None, loss_name: str, hparams: dict, chunk_size: int, vocab_chunk_size: int | None = None, batch_size: int, num_tokens=None
):
    """DPO family, SimPO, ORPO, IPO, ...: chosen and rejected in one packed forward pass.

    The reference log-probs come from the batch (precomputed cache) when present, else from the
    frozen reference model, else are omitted (reference-free objectives)."""
    logps, lengths = sequence_logps(model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    arrays = {
        "chosen_logps": logps[:batch_size],
        "rejected_logps": logps[batch_size:],
        "chosen_lengths": lengths[:batch_size],
        "rejected_lengths": lengths[batch_size:],
    }
    if "ref_chosen_logps" in batch:
        arrays["ref_chosen_logps"] = batch["ref_chosen_logps"]
        arrays["ref_rejected_logps"] = batch["ref_rejected_logps"]
    elif ref_model is not None:
        ref_logps, _ = sequence_logps(ref_model, batch, 2 * batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
        ref_logps = jax.lax.stop_gradient(ref_logps)
        arrays["ref_chosen_logps"] = ref_logps[:batch_size]
        arrays["ref_rejected_logps"] = ref_logps[batch_size:]
    return _call_with_accepted(losses.get(loss_name), arrays, hparams)


def per_sequence_row_values(row_values: jax.Array, batch: Batch, num_sequences: int) -> jax.Array:
    """Per-sequence values stored next to `sequence_index` ([R, S]) -> [num_sequences]."""
    index = batch["sequence_index"]
    index = jnp.where(index >= 0, index, num_sequences)
    out = jax.ops.segment_sum(row_values.reshape(-1).astype(jnp.float32), index.reshape(-1), num_segments=num_sequences + 1)
    return out[:num_sequences]


@register_method("kto")
def kto_method(model, batch: Batch, *, ref_model=None, loss_name: str, hparams: dict, chunk_size: int, vocab_chunk_size: int | None = None, batch_size: int,
               num_tokens=None):
    """KTO on unpaired completions with labels (`desirable` stored per sequence in the batch).

    The reference point z0: TRL estimates it from mismatched (prompt, other completion) pairs; here
    it is the detached batch mean of the matched log-ratios, clipped at 0 (`kto_kl_baseline` on the
    same completions) — cheaper, one forward pass, and an upper bound of the mismatched estimate in
    expectation early in training. Pass precomputed mismatched log-probs to `losses.kto` directly
    for the exact TRL estimator."""
    from alignax.losses.kto import kto_kl_baseline

    logps, _ = sequence_logps(model, batch, batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)
    if ref_model is None:
        raise ValueError("kto needs a reference: set config.reference='on_the_fly'")
    ref_logps = jax.lax.stop_gradient(sequence_logps(ref_model, batch, batch_size, chunk_size=chunk_size, vocab_chunk_size=vocab_chunk_size)[0])
    desirable = per_sequence_row_values(batch["desirable"], batch, batch_size) > 0.5
    arrays = {"logps": logps, "ref_logps": ref_logps, "desirable": desirable,
              "kl_baseline": kto_kl_baseline(logps, ref_logps)}
    return _call_with_accepted(losses.get(loss_name), arrays, hparams)


@register_method("reward_model")
def reward_model_method(model, batch: Batch, *, ref_model=None, loss_name: str, hparams: dict, chunk_size: int, vocab_chunk_size: int | None = None,
                        batch_size: int, num_tokens=None):
    """Bradley–Terry reward model: `model` is an `alignax.annotate.reward_model.RewardModel` whose
    head reads each sequence's last token; rows hold one sequence each (chosen, then rejected)."""
    row_rewards = model(batch["input_ids"], segment_ids=batch["segment_ids"], positions=batch["positions"])
    index = batch["sequence_index"][:, 0]
    rewards = jax.ops.segment_sum(row_rewards, jnp.where(index >= 0, index, 2 * batch_size), num_segments=2 * batch_size + 1)
    arrays = {"chosen_rewards": rewards[:batch_size], "rejected_rewards": rewards[batch_size:2 * batch_size]}
    return _call_with_accepted(losses.get(loss_name), arrays, hparams)
