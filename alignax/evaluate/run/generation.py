"""Generating a model's answers with a benchmark's own settings: KV-cache sampler, batched, resumable.

Every answer goes through `alignax.sample.streaming.generate_to_jsonl` (one JSONL line per prompt,
appended per batch; ids already in the file are skipped on a rerun, and a torn last line from a
killed process is cut off), so an interrupted generation loses and duplicates nothing. The
per-prompt seed is a hash of the prompt id, so a resumed run samples what an uninterrupted one
would have sampled.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """A benchmark's decoding settings; `source` names where they are defined upstream."""

    max_new_tokens: int
    temperature: float
    top_p: float = 1.0
    source: str = ""
    decoding: str = ""  # a description that replaces "greedy" / "temperature T" (per-prompt settings)

    def describe(self) -> str:
        decoding = "greedy" if self.temperature == 0 else f"temperature {self.temperature}, top_p {self.top_p}"
        decoding = self.decoding or decoding
        return f"chat template of the model, {decoding}, max {self.max_new_tokens} new tokens"


def with_overrides(settings: GenerationSettings, *, max_new_tokens: int | None) -> GenerationSettings:
    """`settings` with a user's `--max-new-tokens` (a deviation the report names)."""
    if max_new_tokens is None:
        return settings
    return dataclasses.replace(settings, max_new_tokens=int(max_new_tokens))


def generate_answers(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    path: os.PathLike | str,
    settings: GenerationSettings,
    *,
    batch_size: int,
    seed: int = 0,
    label: str = "generate",
) -> dict[str, str]:
    """{id: answer text} for records {"id", "prompt" (chat messages)}, generated into `path`."""
    if not records:
        return {}

    def progress(done: int, total: int) -> None:
        print(f"{label}: batch {done}/{total}", file=sys.stderr, flush=True)

    from alignax.sample.streaming import generate_to_jsonl

    # No batch wider than the prompts: filler rows would be decoded (and their cache read) every step.
    lines = generate_to_jsonl(
        model,
        tokenizer,
        list(records),
        path,
        batch_size=max(1, min(batch_size, len(records))),
        seed=seed,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        progress=progress,
    )
    return {str(line["id"]): line["samples"][0]["text"] for line in lines}


def generate_grouped(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    path: os.PathLike | str,
    settings_of: Any,
    *,
    batch_size: int,
    seed: int = 0,
    label: str = "generate",
) -> dict[str, str]:
    """As `generate_answers`, with per-record settings (`settings_of(record)`), one group at a time.

    All groups append to the same file (ids are unique across groups), so resuming works as for
    one group (MT-Bench's temperature per category).
    """
    groups: dict[GenerationSettings, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(settings_of(record), []).append(record)
    answers: dict[str, str] = {}
    for settings, group in groups.items():
        answers.update(
            generate_answers(model, tokenizer, group, path, settings, batch_size=batch_size, seed=seed, label=label)
        )
    return answers
