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
from alignax.data.errors import DataError, SkipReport, handle
from alignax.data.packing import first_fit_decreasing
from alignax.data.tokenize import TokenizedSequence, TruncationConfig, tokenize_dataset
from alignax.models.tokenizer import Tokenizer

_TASK_OF_METHOD = {
    "sft": "sft",
    "soft": "sft",
    "pairwise": "preference",
    "reward_model": "preference",
    "kto": "unpaired",
    "multi_sample": "multi_sample",
    "cut": "judgment",
}
# CUT (METHODS.md section 7): a judged example with score >= 7 is positive (its judgment is dropped:
# plain MLE); one below 7, or without a score, is negative (its judgment names a fault).
CUT_POSITIVE_SCORE = 7.0


@dataclasses.dataclass(frozen=True)
class FeedSequence:
    """One sequence of an example (alignax.data's TokenizedSequence) and its per-sequence fields.

    `fields` are the numbers a loss declares as data inputs (`losses.info(name).inputs`): KTO's
    `label`, SPPO's `chosen_win_probs`, a multi-sample response's `rewards`. A pair's per-example
    fields ride on its chosen sequence; a multi-sample example's per-response fields on each response."""

    tokens: TokenizedSequence
    fields: dict


def bucketed_length(longest: int, length_multiple: int) -> int:
    return int(np.ceil(longest / length_multiple) * length_multiple)


def plan_rows(sequences: list[FeedSequence], *, pack: bool, row_length: int) -> list[list[int]]:
    """Rows as lists of sequence positions: one per row, or packed by first-fit decreasing
    (`alignax.data.packing.first_fit_decreasing`) into rows of `row_length` tokens."""
    if not pack:
        return [[i] for i in range(len(sequences))]
    return first_fit_decreasing([seq.tokens.length for seq in sequences], row_length)


def round_rows(rows: int, rows_multiple: int, *, pack: bool, num_sequences: int) -> int:
    """Row count of a micro-batch: a multiple of the batch shards (`rows_multiple`). Packed, also a
    multiple of an eighth of the unpacked row count (one sequence per row), so a run compiles at
    most eight row counts per row length, not one per batch, and never more rows than unpacked."""
    granule = rows_multiple
    if pack:
        eighth = -(-num_sequences // 8)
        granule = -(-eighth // rows_multiple) * rows_multiple
    return -(-rows // granule) * granule


def candidate_lengths(longest: int, *, pack: bool, max_length: int | None, length_multiple: int) -> list[int]:
    """Row lengths a micro-batch may use. Unpacked: the longest sequence's bucket. Packed: that
    bucket, the `max_length` bucket and twice it -- few distinct values (few compiled shapes), of
    which the feed takes the one with the fewest padded tokens (`choose_layout`)."""
    shortest = bucketed_length(longest, length_multiple)
    if not pack:
        return [shortest]
    cap = bucketed_length(max(longest, max_length or 0), length_multiple)
    return sorted({shortest, cap, 2 * cap})


def collate(
    sequences: list[FeedSequence],
    sequence_ids: list[int],
    *,
    rows: list[list[int]],
    num_rows: int,
    length: int,
    segments: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Lay out `sequences` in `num_rows` rows of `length` tokens, `rows[r]` being row r's sequences.

    Each sequence is one segment (ids 1..S in its row, positions restarting at 0), so attention and
    the per-sequence sums keep packed sequences apart (docs/batches.md). `sequence_ids` are the
    sequences' numbers in the GLOBAL micro-batch (all processes), which the per-sequence sums are
    indexed by. Padding rows and slots have segment 0 and sequence_index -1: they add nothing.
    Per-sequence fields become `field/<name>` arrays [rows, S] (0 where a sequence has none)."""
    field_names = sorted({name for seq in sequences for name in seq.fields})
    batch = {
        "input_ids": np.full((num_rows, length), pad_id, np.int32),
        "segment_ids": np.zeros((num_rows, length), np.int32),
        "positions": np.zeros((num_rows, length), np.int32),
        "loss_mask": np.zeros((num_rows, length), np.int32),
        "sequence_index": np.full((num_rows, segments), -1, np.int32),
        **{f"field/{name}": np.zeros((num_rows, segments), np.float32) for name in field_names},
    }
    for row, members in enumerate(rows):
        offset = 0
        for slot, i in enumerate(members):
            seq, n = sequences[i], sequences[i].tokens.length
            span = slice(offset, offset + n)
            batch["input_ids"][row, span] = seq.tokens.input_ids
            batch["segment_ids"][row, span] = slot + 1
            batch["positions"][row, span] = np.arange(n)
            batch["loss_mask"][row, span] = seq.tokens.loss_mask
            batch["sequence_index"][row, slot] = sequence_ids[i]
            for name, value in seq.fields.items():
                batch[f"field/{name}"][row, slot] = value
            offset += n
    return batch


def stack_micro_batches(micro_batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate k micro-batches (of one shape) along rows."""
    return {key: np.concatenate([b[key] for b in micro_batches], axis=0) for key in micro_batches[0]}


def mismatched_sequence(prompt_of: FeedSequence, completion_of: FeedSequence, max_length: int | None) -> FeedSequence:
    """KTO's KL sequence: the prompt of one example followed by the completion of another.

    KTO (Ethayarajh et al., 2024, §4) and TRL's KTOTrainer estimate the reference point z0 from such
    mismatched pairs (x_i, y_j), i != j, so the baseline does not move with the rewards being
    optimised. Truncated at `max_length` from the end of the completion."""
    prompt, completion = prompt_of.tokens, completion_of.tokens
    ids = np.concatenate([prompt.input_ids[: prompt.prompt_length], completion.input_ids[completion.prompt_length :]])
    mask = np.concatenate([np.zeros(prompt.prompt_length, np.int32), completion.loss_mask[completion.prompt_length :]])
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    tokens = TokenizedSequence(
        input_ids=ids.astype(np.int32), loss_mask=mask.astype(np.int32), prompt_length=prompt.prompt_length
    )
    return FeedSequence(tokens, {})


class Feed:
    """Deterministic, resumable iterator of batches for one split.

    Every example gives the same number of sequences (its sides: 1 for SFT/KTO, 2 for a pair, K for
    K samples). A micro-batch of B examples holds B * sides sequences, numbered side-major: all first
    sides (e.g. chosen) of the global micro-batch, then all second sides, and so on. With
    `kl_pairs` (KTO) a last side of mismatched sequences is added (`mismatched_sequence`)."""

    def __init__(
        self,
        examples: list,
        make_sequences,
        *,
        batch_size: int,
        grad_accum_steps: int,
        seed: int,
        shuffle: bool,
        rows_multiple: int,
        length_multiple: int,
        pad_id: int,
        process_index: int = 0,
        process_count: int = 1,
        kl_pairs: bool = False,
        max_length: int | None = None,
        pack: bool = False,
    ):
        if batch_size % (grad_accum_steps * process_count):
            raise ValueError(
                f"batch_size={batch_size} must be divisible by grad_accum_steps x processes "
                f"= {grad_accum_steps} x {process_count}"
            )
        if not examples:
            raise ValueError("the dataset is empty (after skipping bad records)")
        self.examples = examples
        self.make_sequences = make_sequences
        self.batch_size, self.grad_accum_steps = batch_size, grad_accum_steps
        self.seed, self.shuffle = seed, shuffle
        self.rows_multiple, self.length_multiple, self.pad_id = rows_multiple, length_multiple, pad_id
        self.process_index, self.process_count = process_index, process_count
        self.kl_pairs, self.max_length, self.pack = kl_pairs, max_length, pack
        self.epoch, self.position = 0, 0
        self._cache: dict[int, list[FeedSequence]] = {}

    @property
    def num_sides(self) -> int:
        """Sequences per example in a batch (the KL sequence of KTO included)."""
        return len(self._sequences(0)) + int(self.kl_pairs)

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
            indices.extend(int(i) for i in order[self.position : self.position + take])
            self.position += take
            if self.position == len(order):
                self.epoch, self.position = self.epoch + 1, 0
        return indices

    def _sequences(self, index: int) -> list[FeedSequence]:
        if index not in self._cache:
            self._cache[index] = self.make_sequences(self.examples[index])
        return self._cache[index]

    def _global_micro_batch(self, indices: list[int]) -> list[list[FeedSequence]]:
        """Each example's sequences, plus its KL sequence (prompt i, completion i-1) for KTO. The
        rotation runs over the GLOBAL micro-batch, so every process builds the same sequences."""
        per_example = [list(self._sequences(i)) for i in indices]
        if self.kl_pairs:
            firsts = [seqs[0] for seqs in per_example]
            for j, seqs in enumerate(per_example):
                seqs.append(mismatched_sequence(firsts[j], firsts[j - 1], self.max_length))
        return per_example

    def __iter__(self):
        return self

    def _local_sequences(self, per_example: list[list[FeedSequence]], process: int, global_micro: int):
        """Process `process`'s sequences of one global micro-batch and their global numbers.

        Side-major: all first sequences (chosen), then all second ones (rejected); globally the
        chosen of every process come before any rejected."""
        local_size = global_micro // self.process_count
        local = per_example[process * local_size : (process + 1) * local_size]
        sides = len(local[0])
        sequences = [seqs[side] for side in range(sides) for seqs in local]
        sequence_ids = [
            side * global_micro + process * local_size + j for side in range(sides) for j in range(len(local))
        ]
        return sequences, sequence_ids

    def _choose_layout(self, plans, longest: int):
        """(row length, rows per micro-batch and process, row count) with the fewest padded tokens
        over `candidate_lengths`; ties go to the shorter rows (less attention work)."""
        num_sequences = max(len(seqs) for micro in plans for seqs, _ in micro)
        best = None
        for length in candidate_lengths(
            longest, pack=self.pack, max_length=self.max_length, length_multiple=self.length_multiple
        ):
            rows = [[plan_rows(seqs, pack=self.pack, row_length=length) for seqs, _ in micro] for micro in plans]
            num_rows = round_rows(
                max(len(r) for micro in rows for r in micro),
                self.rows_multiple,
                pack=self.pack,
                num_sequences=num_sequences,
            )
            if best is None or num_rows * length < best[0] * best[2]:
                best = (length, rows, num_rows)
        return best

    def __next__(self) -> dict[str, np.ndarray]:
        global_indices = self._next_indices(self.batch_size)
        global_micro = self.batch_size // self.grad_accum_steps
        micro_examples = [
            self._global_micro_batch(global_indices[k * global_micro : (k + 1) * global_micro])
            for k in range(self.grad_accum_steps)
        ]
        # One shape for the whole global batch: every process must build arrays of the same shape
        # (jax.make_array_from_process_local_data), so rows, length and segments come from all
        # processes' micro-batches (each host tokenizes the global batch; tokenization is cached).
        longest = max(seq.tokens.length for micro in micro_examples for seqs in micro for seq in seqs)
        plans = [
            [self._local_sequences(per_example, p, global_micro) for p in range(self.process_count)]
            for per_example in micro_examples
        ]
        length, rows, num_rows = self._choose_layout(plans, longest)
        segments = max(len(row) for micro in rows for r in micro for row in r)
        micro_batches = []
        for micro, micro_rows in zip(plans, rows):
            sequences, sequence_ids = micro[self.process_index]
            micro_batches.append(
                collate(
                    sequences,
                    sequence_ids,
                    rows=micro_rows[self.process_index],
                    num_rows=num_rows,
                    length=length,
                    segments=segments,
                    pad_id=self.pad_id,
                )
            )
        return stack_micro_batches(micro_batches)


def example_fields(example, num_sides: int) -> list[dict]:
    """Per-sequence fields of a tokenized example from its per-example numbers (`scalars`).

    A scalar belongs to the first sequence (a pair's chosen: `chosen_win_probs`, KTO's `label`); a
    vector with one value per side (a multi-sample example's `rewards`) is spread over the sides."""
    fields = [{} for _ in range(num_sides)]
    for name, value in example.scalars.items():
        values = np.asarray(value, np.float32)
        if values.ndim == 0:
            fields[0][name] = float(values)
        elif values.shape == (num_sides,):
            for side in range(num_sides):
                fields[side][name] = float(values[side])
    return fields


def load_split(config, tokenizer: Tokenizer, *, split: str):
    """`config.data.train` or `config.data.eval`, read, validated and tokenized for the run's method
    (an `alignax.data.tokenize.TokenizedDataset`); skipped and truncated counts are reported."""
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
    tokenized = tokenize_dataset(
        loaded.examples, task=task, tokenizer=tokenizer, truncation=truncation, on_error=data.on_error
    )
    if tokenized.report.total:
        print(f"data {source}: skipped at tokenization {tokenized.report.summary()}")
    truncated = {k: v for k, v in tokenized.stats.items() if k != "examples" and v}
    if truncated:
        print(f"data {source}: truncation {truncated}")
    if task == "judgment":
        judgment = config.get("judgment")
        positive_score = CUT_POSITIVE_SCORE if judgment is None else float(judgment.positive_score)
        tokenized = prepare_judgments(tokenized, positive_score=positive_score, on_error=data.on_error, source=source)
    return tokenized


def _common_response(plain: TokenizedSequence, judged: TokenizedSequence, where: str):
    """Both sequences cut to the response tokens they share (the judgment prompt is longer, so
    max_length may cut its response sooner); a response tokenized differently is bad input."""
    n = min(plain.response_length, judged.response_length)
    plain_response = plain.input_ids[plain.prompt_length : plain.prompt_length + n]
    judged_response = judged.input_ids[judged.prompt_length : judged.prompt_length + n]
    if not np.array_equal(plain_response, judged_response):
        raise DataError(
            "judgment_response_mismatch",
            "the response tokenizes differently under the plain and "
            "the judgment prompt (the chat template merges it with the prompt)",
            where,
        )

    def cut(seq):
        end = seq.prompt_length + n
        return TokenizedSequence(
            input_ids=seq.input_ids[:end], loss_mask=seq.loss_mask[:end], prompt_length=seq.prompt_length
        )

    return cut(plain), cut(judged)


def prepare_judgments(tokenized, *, positive_score: float, on_error: str, source: str):
    """CUT's judgment examples for the feed: the two sequences (plain prompt, judgment prompt) share
    their response tokens exactly (`_common_response`), and the per-example field `is_negative` is
    1 unless the score is >= `positive_score` (no score: negative). Bad rows follow `on_error`."""
    report = SkipReport()
    examples = []
    for example in tokenized.examples:
        where = f"{source} record {example.index}"
        try:
            sequences = _common_response(*example.sequences, where)
        except DataError as error:
            handle(error, on_error=on_error, report=report)
            continue
        score = float(example.scalars.get("score", np.nan))
        is_negative = not (np.isfinite(score) and score >= positive_score)
        examples.append(
            dataclasses.replace(example, sequences=sequences, scalars={"is_negative": np.float32(is_negative)})
        )
    if report.total:
        print(f"data {source}: skipped at judgment preparation {report.summary()}")
    if not examples:
        raise DataError("no_examples", "no judgment example left", source)
    tokenized.examples = examples
    return tokenized


def check_fields(tokenized, required_fields, *, source: str, loss_name: str) -> None:
    """Every example carries the data inputs its loss declares; else an error naming field and file."""
    for example in tokenized.examples:
        missing = [name for name in required_fields if name not in example.scalars]
        if missing:
            hint = (
                " (or set --config.reference=on_the_fly or precomputed to compute reference log-probs)"
                if missing[0].startswith("ref_")
                else ""
            )
            raise ValueError(
                f"{source}: record {example.index} has no field {missing[0]!r}, which loss "
                f"{loss_name!r} needs (its data inputs: {', '.join(required_fields)}){hint}"
            )


def make_feed(
    config, tokenizer: Tokenizer, *, split: str, rows_multiple: int, required_fields=(), tokenized=None
) -> Feed:
    """The feed of `config.data.train` or `config.data.eval` for the run's method.

    `rows_multiple`: rows of every local micro-batch are padded to a multiple of it (the number of
    batch shards, data x fsdp, that this process's devices hold). `required_fields`: the data inputs
    the loss declares; an example without one is an error naming the field and the file.
    `tokenized`: the split from `load_split` when the caller already has it (e.g. with precomputed
    reference log-probs attached)."""
    import jax

    data = config.data
    source = data.train if split == "train" else data.eval
    if tokenized is None:
        tokenized = load_split(config, tokenizer, split=split)
    check_fields(tokenized, required_fields, source=source, loss_name=config.loss.name)

    def make_sequences(example):
        fields = example_fields(example, len(example.sequences))
        return [FeedSequence(seq, seq_fields) for seq, seq_fields in zip(example.sequences, fields)]

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
        kl_pairs=config.method == "kto",
        max_length=data.max_length,
        # The reward model reads each row's last token, so its sequences keep one row each.
        pack=data.packing and config.method != "reward_model",
    )
