"""Feeding a run: records -> tokenized sequences (alignax.data) -> fixed-shape batches, deterministic and resumable.

The feed shuffles by (seed, epoch), takes this process's share of every global batch (multi-host),
and exposes `get_state()`/`set_state()` (epoch, position) that the checkpoint stores, so a resumed
run sees exactly the batches an uninterrupted one would.

Batches use the layout of `alignax.train.methods` (input_ids, segment_ids, positions, loss_mask,
sequence_index), one sequence per row, rows bucketed in length to limit recompilation.
Pairwise batches hold sequences [chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}] per micro-batch.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from alignax.data import readers
from alignax.data.tokenize import TruncationConfig, tokenize_dataset
from alignax.models.tokenizer import Tokenizer

_TASK_OF_METHOD = {"sft": "sft", "soft": "sft", "pairwise": "preference", "reward_model": "preference",
                   "kto": "unpaired"}


@dataclasses.dataclass
class TokenizedSequence:
    input_ids: np.ndarray  # [n] int32
    loss_mask: np.ndarray  # [n] int32, 1 on response tokens
    desirable: float = 0.0  # KTO's label, carried per sequence


def bucketed_length(longest: int, length_multiple: int) -> int:
    return int(np.ceil(longest / length_multiple) * length_multiple)


def collate(sequences: list[TokenizedSequence], sequence_ids: list[int], *, rows_multiple: int,
            length_multiple: int, pad_id: int, length: int | None = None) -> dict[str, np.ndarray]:
    """One sequence per row; the length bucketed up to a multiple of `length_multiple` (or `length`).

    `sequence_ids` are the sequences' numbers in the GLOBAL micro-batch (all processes), which is
    what the per-sequence sums are indexed by. Padding rows (to a multiple of `rows_multiple`, the
    batch shards this process holds) have segment 0 and sequence_index -1: they add nothing."""
    longest = max(len(s.input_ids) for s in sequences)
    if length is None:
        length = bucketed_length(longest, length_multiple)
    elif length < longest:
        raise ValueError(f"collate: length={length} is shorter than the longest sequence ({longest})")
    rows = int(np.ceil(len(sequences) / rows_multiple) * rows_multiple)
    batch = {
        "input_ids": np.full((rows, length), pad_id, np.int32),
        "segment_ids": np.zeros((rows, length), np.int32),
        "positions": np.zeros((rows, length), np.int32),
        "loss_mask": np.zeros((rows, length), np.int32),
        "sequence_index": np.full((rows, 1), -1, np.int32),
        "desirable": np.zeros((rows, 1), np.float32),
    }
    for row, seq in enumerate(sequences):
        n = len(seq.input_ids)
        batch["input_ids"][row, :n] = seq.input_ids
        batch["segment_ids"][row, :n] = 1
        batch["positions"][row, :n] = np.arange(n)
        batch["loss_mask"][row, :n] = seq.loss_mask
        batch["sequence_index"][row, 0] = sequence_ids[row]
        batch["desirable"][row, 0] = seq.desirable
    return batch


TOKEN_KEYS = ("input_ids", "segment_ids", "positions", "loss_mask")  # [rows, L]; the rest are [rows, S]


def stack_micro_batches(micro_batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate k micro-batches along rows, padding them to one shape first."""
    length = max(b["input_ids"].shape[1] for b in micro_batches)
    out = {}
    for key in micro_batches[0]:
        parts = []
        for b in micro_batches:
            a = b[key]
            if key in TOKEN_KEYS and a.shape[1] < length:
                a = np.pad(a, ((0, 0), (0, length - a.shape[1])))
            parts.append(a)
        out[key] = np.concatenate(parts, axis=0)
    return out


class Feed:
    """Deterministic, resumable iterator of batches for one split."""

    def __init__(self, examples: list, make_sequences, *, batch_size: int, grad_accum_steps: int, seed: int,
                 shuffle: bool, rows_multiple: int, length_multiple: int, pad_id: int,
                 process_index: int = 0, process_count: int = 1, extra_fn=None):
        if batch_size % (grad_accum_steps * process_count):
            raise ValueError(f"batch_size={batch_size} must be divisible by grad_accum_steps x processes "
                             f"= {grad_accum_steps} x {process_count}")
        if not examples:
            raise ValueError("the dataset is empty (after skipping bad records)")
        self.examples = examples
        self.make_sequences = make_sequences
        self.extra_fn = extra_fn
        self.batch_size, self.grad_accum_steps = batch_size, grad_accum_steps
        self.seed, self.shuffle = seed, shuffle
        self.rows_multiple, self.length_multiple, self.pad_id = rows_multiple, length_multiple, pad_id
        self.process_index, self.process_count = process_index, process_count
        self.epoch, self.position = 0, 0
        self._cache: dict[int, list[TokenizedSequence]] = {}

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def set_state(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def reset(self) -> None:
        self.epoch, self.position = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.examples))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    def _next_indices(self, count: int) -> list[int]:
        indices = []
        while len(indices) < count:
            order = self._order(self.epoch)
            take = min(count - len(indices), len(order) - self.position)
            indices.extend(int(i) for i in order[self.position: self.position + take])
            self.position += take
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
        return indices

    def _sequences(self, index: int) -> list[TokenizedSequence]:
        if index not in self._cache:
            self._cache[index] = self.make_sequences(self.examples[index])
        return self._cache[index]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        global_indices = self._next_indices(self.batch_size)
        # One length for the whole global batch: every process must build arrays of the same shape
        # (jax.make_array_from_process_local_data), so the length comes from all processes' examples,
        # not only this process's share (each host tokenizes the global batch; tokenization is cached).
        longest = max(len(seq.input_ids) for i in global_indices for seq in self._sequences(i))
        length = bucketed_length(longest, self.length_multiple)
        share = self.batch_size // self.process_count
        local = global_indices[self.process_index * share: (self.process_index + 1) * share]
        micro_size = share // self.grad_accum_steps
        micro_batches = []
        for k in range(self.grad_accum_steps):
            micro = local[k * micro_size: (k + 1) * micro_size]
            per_example = [self._sequences(i) for i in micro]
            # Pairwise: all first sequences (chosen), then all second ones (rejected); globally the
            # chosen of every process come before any rejected.
            sides = len(per_example[0])
            sequences = [seqs[side] for side in range(sides) for seqs in per_example]
            global_micro = micro_size * self.process_count
            sequence_ids = [side * global_micro + self.process_index * micro_size + j
                            for side in range(sides) for j in range(len(per_example))]
            batch = collate(sequences, sequence_ids, rows_multiple=self.rows_multiple,
                            length_multiple=self.length_multiple, pad_id=self.pad_id, length=length)
            micro_batches.append(batch)
        return stack_micro_batches(micro_batches)


def make_feed(config, tokenizer: Tokenizer, *, split: str, rows_multiple: int) -> Feed:
    """The feed of `config.data.train` or `config.data.eval` for the run's method.

    `rows_multiple`: rows of every local micro-batch are padded to a multiple of it (the number of
    batch shards, data x fsdp, that this process's devices hold)."""
    import jax

    task = _TASK_OF_METHOD.get(config.method)
    if task is None:
        raise ValueError(f"no data feed for method {config.method!r}")
    source = config.data.train if split == "train" else config.data.eval
    loaded = readers.load_dataset(source, task=task, on_error=config.data.on_error)
    if loaded.report.total:
        print(f"data {source}: skipped {loaded.report.summary()}")
    data = config.data
    # One tokenization path for the whole codebase: alignax.data (chat template split as TRL,
    # assistant-only masks, truncation counted and reported).
    truncation = TruncationConfig(max_length=data.max_length, max_prompt_length=data.max_prompt_length)
    tokenized = tokenize_dataset(loaded.examples, task=task, tokenizer=tokenizer, truncation=truncation,
                                 on_error=data.on_error)
    if tokenized.report.total:
        print(f"data {source}: skipped at tokenization {tokenized.report.summary()}")
    truncated = {k: v for k, v in tokenized.stats.items() if k != "examples" and v}
    if truncated:
        print(f"data {source}: truncation {truncated}")

    def make_sequences(example):
        desirable = float(bool(example.scalars.get("label", False)))
        return [TokenizedSequence(np.asarray(seq.input_ids, np.int32), np.asarray(seq.loss_mask, np.int32), desirable)
                for seq in example.sequences]

    is_train = split == "train"
    # Both sizes are global (all processes), so a run's batches do not depend on the host count.
    batch_size = config.batch_size if is_train else config.eval_batch_size
    return Feed(
        list(tokenized.examples),
        make_sequences,
        batch_size=batch_size,
        grad_accum_steps=config.grad_accum_steps if is_train else 1,
        seed=config.seed,
        shuffle=is_train and data.shuffle,
        rows_multiple=rows_multiple,
        length_multiple=data.length_multiple,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
