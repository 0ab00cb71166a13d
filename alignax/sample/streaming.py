"""Crash-safe sampling to JSONL: one line per prompt, appended atomically, resumed by id.

Used by every pipeline that samples many prompts (annotation, on-policy iteration, the evaluation
runner): a killed job rerun with the same arguments skips the ids already written and draws what an
uninterrupted run would have drawn (per-row seeds keyed by a hash of the id, alignax/sample/sampler.py).
"""

from __future__ import annotations

from typing import Any, Sequence

from alignax import files as jsonl
from alignax.sample.sampler import generate, stable_prompt_key


def generate_to_jsonl(
    model,
    tokenizer,
    records: Sequence[dict[str, Any]],
    path,
    *,
    num_samples: int = 1,
    batch_size: int = 16,
    prompts_per_write: int | None = None,
    seed: int = 0,
    **generate_kwargs,
) -> list[dict[str, Any]]:
    """Generates for records {"id", "prompt"} and appends one line per prompt to `path`.

    Each line: {"id", "prompt", "samples": [Generation.to_json(), ...]}. Lines are written
    atomically (`alignax.files.append_jsonl`) after every `prompts_per_write` prompts
    (default: one batch worth); on restart, ids already in the file are skipped and a partial
    last line from a crash is cut off. The per-row seed uses a hash of the id, so a resumed run
    draws what an uninterrupted run would have drawn. Returns all records of the file, in the
    order of `records`.
    """
    ids = [r["id"] for r in records]
    if len(set(map(str, ids))) != len(ids):
        raise ValueError(f"generate_to_jsonl: duplicate ids in records for {path}")
    jsonl.repair_tail(path)
    done = {str(r["id"]): r for r in jsonl.read_jsonl(path)}
    todo = [r for r in records if str(r["id"]) not in done]
    per_write = prompts_per_write or max(1, batch_size // num_samples)
    for start in range(0, len(todo), per_write):
        chunk = todo[start : start + per_write]
        gens = generate(
            model,
            tokenizer,
            [r["prompt"] for r in chunk],
            num_samples=num_samples,
            batch_size=batch_size,
            seed=seed,
            prompt_keys=[stable_prompt_key(r["id"]) for r in chunk],
            **generate_kwargs,
        )
        out = []
        for k, r in enumerate(chunk):
            samples = [g.to_json() for g in gens[k * num_samples : (k + 1) * num_samples]]
            for s in samples:
                s.pop("prompt_index")
            out.append({"id": r["id"], "prompt": r["prompt"], "samples": samples})
        jsonl.append_jsonl(path, out)
        done.update({str(o["id"]): o for o in out})
    return [done[str(i)] for i in ids]
