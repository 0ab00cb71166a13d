"""Batch layouts: length-bucketed padding ("pad") and sequence packing ("pack").

A batch of B examples with K sides each (K = 2 for chosen/rejected) has K*B sequences, numbered
`s = side * B + b` (TRL's [chosen; rejected] concatenation). The layout places them in rows:

- "pad": one sequence per row, rows = K*B, row length = the smallest of `bucket_lengths` that
  holds the longest sequence (length bucketing; the iterator can also sort by length within a
  window so that batch mates have similar lengths).
- "pack": several sequences per row of length `row_length`, placed by first-fit decreasing; the
  row count is rounded up to a multiple of `row_multiple` (e.g. the data-parallel size), so
  shapes come from a small set of buckets.

Arrays (all [R, L]): `input_ids`, `labels` (the next token of the same sequence, 0 at its end),
`loss_mask` (1 where `labels` is a scored response token), `positions` (restart at 0 for each
sequence), `segment_ids` (1, 2, ... per sequence within a row; 0 = padding, the model's
attention contract), `sequence_ids` (s in [0, K*B) for every token of sequence s; -1 = padding).
Per example: `example_index` [B], `prompt_lengths` / `response_lengths` [K, B]; pairwise data
also gets `chosen_lengths` / `rejected_lengths` [B]. So with token log-probs
`lp[r, t] = log p(labels[r, t] | row r up to t)`, per-sequence sums are
`segment_sum(lp * loss_mask, sequence_ids, K*B)` reshaped to [K, B] (`sequence_sums`); or,
from per-row segment sums [R, S] (`alignax.ops.segment_sums`, column k-1 = segment k), via
`segment_sequence` [R, K*B] (the sequence number of segment k of row r; -1 = none) with
`sequences_from_segment_sums`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LAYOUT_MODES = ("pad", "pack")


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    mode: str = "pack"
    row_length: int = 512  # pack: the row length; pad: the largest bucket
    bucket_lengths: tuple | None = None  # pad: allowed row lengths (default: powers of 2 up to row_length)
    row_multiple: int = 1  # pack: row count rounded up to a multiple of this

    def __post_init__(self):
        if self.mode not in LAYOUT_MODES:
            raise ValueError(f"layout mode must be one of {LAYOUT_MODES}, got {self.mode!r}")
        if self.row_length < 2 or self.row_multiple < 1:
            raise ValueError(
                f"row_length must be >= 2 and row_multiple >= 1, got {self.row_length}, {self.row_multiple}"
            )

    def buckets(self) -> tuple:
        if self.bucket_lengths is not None:
            return tuple(sorted(self.bucket_lengths))
        out, n = [], 16
        while n < self.row_length:
            out.append(n)
            n *= 2
        return tuple(out) + (self.row_length,)


def first_fit_decreasing(lengths, capacity: int) -> list[list[int]]:
    """Bins (lists of item indices) of total length <= capacity; longest items first, ties by index."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[int] = []
    for i in order:
        if lengths[i] > capacity:
            raise ValueError(
                f"sequence {i} has {lengths[i]} tokens > row length {capacity}; set max_length <= row_length"
            )
        for b, room in enumerate(free):
            if lengths[i] <= room:
                bins[b].append(i)
                free[b] -= lengths[i]
                break
        else:
            bins.append([i])
            free.append(capacity - lengths[i])
    return bins


def plan_rows(examples, layout: BatchLayout) -> tuple[list[list[int]], int]:
    """(rows as lists of sequence numbers, row length) for these examples under `layout`."""
    num_examples = len(examples)
    num_sides = len(examples[0].sequences)
    lengths = [examples[b].sequences[k].length for k in range(num_sides) for b in range(num_examples)]
    if layout.mode == "pad":
        longest = max(lengths)
        fitting = [n for n in layout.buckets() if n >= longest]
        if not fitting:
            raise ValueError(
                f"sequence of {longest} tokens > largest bucket {layout.buckets()[-1]}; set max_length <= row_length"
            )
        return [[s] for s in range(len(lengths))], fitting[0]
    return first_fit_decreasing(lengths, layout.row_length), layout.row_length


def rows_needed(examples, layout: BatchLayout) -> tuple[int, int]:
    rows, length = plan_rows(examples, layout)
    if layout.mode == "pack":
        return -(-len(rows) // layout.row_multiple) * layout.row_multiple, length
    return len(rows), length


def build_batch(examples, layout: BatchLayout, *, side_names=None, min_rows: int = 0, min_length: int = 0) -> dict:
    """Lay out `examples` (TokenizedExample list) as one batch dict of numpy arrays.

    `min_rows` / `min_length` force a bigger shape (the iterator uses them so that every host of a
    multi-host job builds the same shape).
    """
    num_examples = len(examples)
    num_sides = len(examples[0].sequences)
    rows, length = plan_rows(examples, layout)
    num_rows = len(rows)
    if layout.mode == "pack":
        num_rows = -(-num_rows // layout.row_multiple) * layout.row_multiple
    num_rows, length = max(num_rows, min_rows), max(length, min_length)

    input_ids = np.zeros((num_rows, length), np.int32)
    labels = np.zeros((num_rows, length), np.int32)
    loss_mask = np.zeros((num_rows, length), np.int32)
    positions = np.zeros((num_rows, length), np.int32)
    segment_ids = np.zeros((num_rows, length), np.int32)
    sequence_ids = np.full((num_rows, length), -1, np.int32)
    segment_sequence = np.full((num_rows, num_sides * num_examples), -1, np.int32)
    for r, row in enumerate(rows):
        offset = 0
        # Within a row, sequences go in sequence-number order so the layout is easy to read.
        for segment, s in enumerate(sorted(row), start=1):
            seq = examples[s % num_examples].sequences[s // num_examples]
            n = seq.length
            span = slice(offset, offset + n)
            input_ids[r, span] = seq.input_ids
            labels[r, offset : offset + n - 1] = seq.input_ids[1:]
            loss_mask[r, offset : offset + n - 1] = seq.loss_mask[1:]
            positions[r, span] = np.arange(n)
            segment_ids[r, span] = segment
            sequence_ids[r, span] = s
            segment_sequence[r, segment - 1] = s
            offset += n

    batch = {
        "input_ids": input_ids,
        "labels": labels,
        "loss_mask": loss_mask,
        "positions": positions,
        "segment_ids": segment_ids,
        "sequence_ids": sequence_ids,
        "segment_sequence": segment_sequence,
        "example_index": np.asarray([e.index for e in examples], np.int32),
        "prompt_lengths": np.asarray(
            [[e.sequences[k].prompt_length for e in examples] for k in range(num_sides)], np.int32
        ),
        "response_lengths": np.asarray(
            [[e.sequences[k].response_length for e in examples] for k in range(num_sides)], np.int32
        ),
    }
    if side_names is not None and tuple(side_names) == ("chosen", "rejected"):
        batch["chosen_lengths"] = batch["response_lengths"][0]
        batch["rejected_lengths"] = batch["response_lengths"][1]
    for key in examples[0].scalars:
        batch[key] = np.stack([np.asarray(e.scalars[key]) for e in examples]).astype(np.float32)
    assert batch["input_ids"].shape == (num_rows, length) and batch["response_lengths"].shape == (
        num_sides,
        num_examples,
    )
    return batch


def padding_fraction(batch: dict) -> float:
    """Fraction of the [R, L] token slots that hold no token."""
    return float((batch["segment_ids"] == 0).mean())


def sequence_sums(token_values, batch: dict, num_sides: int):
    """Per-sequence sums of `token_values * loss_mask` -> [K, B] (jax; differentiable).

    token_values: [R, L], aligned with `batch["labels"]` (e.g. per-token log-probs of the labels).
    """
    import jax
    import jax.numpy as jnp

    num_examples = batch["example_index"].shape[0]
    values = jnp.asarray(token_values) * jnp.asarray(batch["loss_mask"], token_values.dtype)
    sums = jax.ops.segment_sum(
        values.reshape(-1), jnp.asarray(batch["sequence_ids"]).reshape(-1), num_segments=num_sides * num_examples
    )
    return sums.reshape(num_sides, num_examples)


def sequences_from_segment_sums(segment_values, batch: dict, num_sides: int):
    """[R, S] per-row segment sums (S <= K*B; column k-1 = segment k) -> [K, B] per sequence (jax)."""
    import jax
    import jax.numpy as jnp

    num_examples = batch["example_index"].shape[0]
    width = segment_values.shape[1]
    seq = jnp.asarray(batch["segment_sequence"])[:, :width]
    out = jax.ops.segment_sum(segment_values.reshape(-1), seq.reshape(-1), num_segments=num_sides * num_examples)
    return out.reshape(num_sides, num_examples)


def sequence_sums_np(token_values, batch: dict, num_sides: int) -> np.ndarray:
    """numpy twin of `sequence_sums` for host-side bookkeeping."""
    num_examples = batch["example_index"].shape[0]
    ids = batch["sequence_ids"].reshape(-1)
    keep = ids >= 0
    values = (np.asarray(token_values, np.float64) * batch["loss_mask"]).reshape(-1)
    return np.bincount(ids[keep], weights=values[keep], minlength=num_sides * num_examples).reshape(
        num_sides, num_examples
    )
