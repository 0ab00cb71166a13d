"""`reference: precomputed`: the reference model's log-probs in one pass, cached, then no reference in memory.

TRL calls this `precompute_ref_log_probs`. Before training, one jitted forward pass of the starting
model over the split computes every sequence's summed response log-prob. The values go to the
reference cache (`alignax.data.refcache`: keyed by the model's parameters, the data, the tokenizer
and the truncation; sharded and resumable), so a second epoch or a second run with the same model
and data reads them instead of recomputing. They are attached to the examples as the data fields
the losses read (`ref_chosen_logps`/`ref_rejected_logps` for pairs, `ref_logps` per sample), and
training then holds no reference weights: it removes a forward pass per step and a model copy.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx

from alignax.data import refcache
from alignax.data.packing import BatchLayout
from alignax.train import methods

# The data field each side's reference log-prob is stored under, per method.
PAIR_FIELDS = ("ref_chosen_logps", "ref_rejected_logps")


def methods_layout(batch: dict) -> dict:
    """An `alignax.data.packing` batch in the layout of `alignax.train.methods` (docs/batches.md).

    packing marks the LABEL position (`loss_mask[t]` = token t+1 is scored); methods mark the token
    itself and read `loss_mask[:, 1:]` at label positions, so the mask moves one step right."""
    loss_mask = np.zeros_like(batch["loss_mask"])
    loss_mask[:, 1:] = batch["loss_mask"][:, :-1]
    return {
        "input_ids": batch["input_ids"],
        "segment_ids": batch["segment_ids"],
        "positions": batch["positions"],
        "loss_mask": loss_mask,
        "sequence_index": batch["segment_sequence"],
    }


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "alignax", "reference_logps")


def reference_logps(
    model,
    tokenized,
    *,
    batch_size: int,
    max_length: int,
    length_multiple: int,
    chunk_size: int,
    vocab_chunk_size: int | None,
    cache_dir: str,
) -> np.ndarray:
    """[K, N] summed response log-probs of every sequence of `tokenized` under `model`, cached."""
    graphdef, state = nnx.split(model)
    num_sides = len(tokenized.side_names)

    @jax.jit
    def logps_of(state, batch):
        return methods.sequence_logps(
            nnx.merge(graphdef, state),
            batch,
            num_sides * batch_size,
            chunk_size=chunk_size,
            vocab_chunk_size=vocab_chunk_size,
        )[0]

    def logps_fn(batch):
        values = np.asarray(logps_of(state, methods_layout(batch))).reshape(num_sides, batch_size)
        return {f"{side}_logps": values[k] for k, side in enumerate(tokenized.side_names)}

    # One sequence per row in a few length buckets: a handful of compiled shapes for the whole pass.
    top = -(-max_length // length_multiple) * length_multiple
    layout = BatchLayout(
        mode="pad", row_length=top, bucket_lengths=tuple(range(length_multiple, top + 1, length_multiple))
    )
    model_id = refcache.params_fingerprint(state)
    stats = refcache.CacheStats()
    values = refcache.compute_reference_logps(
        tokenized, logps_fn, cache_dir=cache_dir, model_id=model_id, batch_size=batch_size, layout=layout, stats=stats
    )
    print(
        f"reference log-probs: {stats.shards_loaded} cached shards read, {stats.examples_computed} examples computed "
        f"({cache_dir})"
    )
    return values


def attach(tokenized, values: np.ndarray, method: str) -> None:
    """Store `values` [K, N] on the examples as the data fields the losses of `method` read."""
    for i, example in enumerate(tokenized.examples):
        if method == "pairwise":
            for k, name in enumerate(PAIR_FIELDS):
                example.scalars[name] = np.float32(values[k, i])
        elif method == "multi_sample":
            example.scalars["ref_logps"] = values[:, i].astype(np.float32)
        else:
            raise ValueError(f"reference: precomputed is not available for method {method!r}")
