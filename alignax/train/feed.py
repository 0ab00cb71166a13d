"""Feeding a run: records -> tokenized sequences -> fixed-shape batches, deterministic and resumable.

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
from alignax.models.tokenizer import Tokenizer

_TASK_OF_METHOD = {"sft": "sft", "soft": "sft", "pairwise": "preference", "reward_model": "preference",
                   "kto": "unpaired"}


@dataclasses.dataclass
class TokenizedSequence:
    input_ids: np.ndarray  # [n] int32
    loss_mask: np.ndarray  # [n] int32, 1 on response tokens
    desirable: float = 0.0  # KTO's label, carried per sequence


def _as_messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def tokenize_prompt_response(tokenizer: Tokenizer, prompt, response: str, *, max_length: int,
                             max_prompt_length: int) -> TokenizedSequence:
    """Chat-template the prompt (with the generation prompt) and the response; mask = response tokens.

    The response ids are the template's rendering of the full conversation minus the prompt's
    rendering (so the end-of-turn token the template puts after the answer is included). Over-long
    prompts keep their end; then the response is cut to fit `max_length`."""
    messages = _as_messages(prompt)
    prompt_ids = list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    full_ids = list(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}]))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("chat template does not render the prompt as a prefix of the conversation")
    response_ids = full_ids[len(prompt_ids):]
    # Templates often end with a newline after the end-of-turn token; it is not predicted.
    while response_ids and response_ids[-1] != tokenizer.eos_token_id and len(response_ids) > 1 \
            and tokenizer.decode([response_ids[-1]]).strip() == "":
        response_ids = response_ids[:-1]
    if len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
    response_ids = response_ids[: max(1, max_length - len(prompt_ids))]
    ids = np.asarray(prompt_ids + response_ids, np.int32)
    mask = np.concatenate([np.zeros(len(prompt_ids), np.int32), np.ones(len(response_ids), np.int32)])
    return TokenizedSequence(ids, mask)


def tokenize_conversation(tokenizer: Tokenizer, messages, *, max_length: int) -> TokenizedSequence:
    ids, mask = tokenizer.apply_chat_template_with_mask([dict(m) for m in messages])
    ids = np.asarray(ids, np.int32)[:max_length]
    mask = np.asarray(mask, np.int32)[:max_length]
    return TokenizedSequence(ids, mask)


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
    if task == "preference":
        def make_sequences(example):
            return [
                tokenize_prompt_response(tokenizer, example.prompt, answer, max_length=data.max_length,
                                         max_prompt_length=data.max_prompt_length)
                for answer in (example.chosen, example.rejected)
            ]
    elif task == "unpaired":
        def make_sequences(example):
            seq = tokenize_prompt_response(tokenizer, example.prompt, example.completion, max_length=data.max_length,
                                           max_prompt_length=data.max_prompt_length)
            seq.desirable = float(bool(example.label))
            return [seq]
    else:
        def make_sequences(example):
            return [tokenize_conversation(tokenizer, example.messages, max_length=data.max_length)]

    is_train = split == "train"
    # Both sizes are global (all processes), so a run's batches do not depend on the host count.
    batch_size = config.batch_size if is_train else config.eval_batch_size
    return Feed(
        list(loaded.examples),
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
