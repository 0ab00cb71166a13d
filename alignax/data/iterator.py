"""Deterministic, resumable, per-host batch iteration over a `TokenizedDataset`.

The order of epoch e is a pure function of (seed, e): a permutation of the examples, cut into
global batches of `batch_size * process_count` (the remainder is dropped so every host has the
same number of fixed-shape batches), of which host p takes the p-th slice of `batch_size`.
With `sort_window=W`, each run of W global batches is sorted by length before cutting (length
bucketing) and the resulting batches are shuffled again, so batch mates have similar lengths.

Because the order is recomputed, the iterator state is tiny and JSON-able:
`{"epoch": e, "batch": k, ...}` (plus the settings it was made with, checked on restore); the
training checkpoint saves `get_state()` and a restored iterator yields exactly the batches an
uninterrupted one would.

Every host builds the shape of the whole global batch (the largest row count / length among the
hosts' slices), so a multi-host job assembles one global array.
"""

from __future__ import annotations

import numpy as np

from alignax.data.packing import BatchLayout, build_batch, padding_fraction, rows_needed


class BatchIterator:
    def __init__(
        self,
        dataset,
        *,
        batch_size: int,
        layout: BatchLayout = BatchLayout(),
        seed: int = 0,
        shuffle: bool = True,
        sort_window: int | None = None,
        num_epochs: int | None = None,
        process_index: int = 0,
        process_count: int = 1,
        reference_logps: np.ndarray | None = None,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.layout = layout
        self.seed = seed
        self.shuffle = shuffle
        self.sort_window = sort_window
        self.num_epochs = num_epochs
        self.process_index = process_index
        self.process_count = process_count
        self.num_examples = len(dataset.examples)
        self.batches_per_epoch = self.num_examples // (batch_size * process_count)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_examples} examples are fewer than one global batch ({batch_size} x {process_count} hosts)"
            )
        if reference_logps is not None and reference_logps.shape != (len(dataset.side_names), self.num_examples):
            raise ValueError(
                f"reference_logps has shape {reference_logps.shape}; expected [num_sides, num_examples] = "
                f"{(len(dataset.side_names), self.num_examples)}"
            )
        self.reference_logps = reference_logps
        self.epoch = 0
        self.batch = 0
        self._epoch_plan: tuple[int, list] | None = None
        self.padding_stats = {"pad_tokens": 0, "slots": 0}

    # -- order ---------------------------------------------------------------------------

    def _global_batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch_plan is not None and self._epoch_plan[0] == epoch:
            return self._epoch_plan[1]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_examples) if self.shuffle else np.arange(self.num_examples)
        global_size = self.batch_size * self.process_count
        order = order[: self.batches_per_epoch * global_size]
        batches = [order[i : i + global_size] for i in range(0, len(order), global_size)]
        if self.sort_window:
            lengths = np.asarray([max(e.lengths) for e in self.dataset.examples])
            regrouped = []
            for w in range(0, len(batches), self.sort_window):
                window = np.concatenate(batches[w : w + self.sort_window])
                window = window[np.argsort(lengths[window], kind="stable")]
                chunk = [window[i : i + global_size] for i in range(0, len(window), global_size)]
                regrouped += [chunk[j] for j in rng.permutation(len(chunk))]
            batches = regrouped
        self._epoch_plan = (epoch, batches)
        return batches

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        global_batch = self._global_batches(self.epoch)[self.batch]
        slices = [global_batch[p * self.batch_size : (p + 1) * self.batch_size] for p in range(self.process_count)]
        examples = [[self.dataset.examples[i] for i in s] for s in slices]
        shapes = [rows_needed(ex, self.layout) for ex in examples]
        batch = build_batch(
            examples[self.process_index],
            self.layout,
            side_names=self.dataset.side_names,
            min_rows=max(r for r, _ in shapes),
            min_length=max(n for _, n in shapes),
        )
        batch["dataset_position"] = slices[self.process_index].astype(np.int32)
        if self.reference_logps is not None:
            ref = self.reference_logps[:, slices[self.process_index]].astype(np.float32)
            batch["reference_logps"] = ref
            if tuple(self.dataset.side_names) == ("chosen", "rejected"):
                batch["ref_chosen_logps"], batch["ref_rejected_logps"] = ref[0], ref[1]
        self.padding_stats["pad_tokens"] += int((batch["segment_ids"] == 0).sum())
        self.padding_stats["slots"] += int(batch["segment_ids"].size)
        self.batch += 1
        return batch

    @property
    def padding_fraction(self) -> float:
        """Padding fraction over every batch produced so far."""
        return self.padding_stats["pad_tokens"] / max(1, self.padding_stats["slots"])

    # -- state ---------------------------------------------------------------------------

    def _settings(self) -> dict:
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_examples": self.num_examples,
            "process_count": self.process_count,
            "shuffle": self.shuffle,
            "sort_window": self.sort_window,
        }

    def get_state(self) -> dict:
        return {"epoch": int(self.epoch), "batch": int(self.batch), **self._settings()}

    def set_state(self, state: dict) -> None:
        mismatched = {k: (state.get(k), v) for k, v in self._settings().items() if state.get(k) != v}
        if mismatched:
            raise ValueError(f"iterator state was saved with different settings (saved, current): {mismatched}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


def epoch_padding_fraction(
    dataset, *, batch_size: int, layout: BatchLayout, sort_window: int | None = None, seed: int = 0
) -> float:
    """Padding fraction of one full epoch under `layout` (the report the brief asks for)."""
    it = BatchIterator(dataset, batch_size=batch_size, layout=layout, seed=seed, sort_window=sort_window, num_epochs=1)
    for _ in it:
        pass
    return it.padding_fraction


__all__ = ["BatchIterator", "epoch_padding_fraction", "padding_fraction"]
