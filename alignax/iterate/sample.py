"""The sample stage: K responses per prompt from the current iterate, with the KV-cache sampler.

DIR/iter_<k>/sample/samples.jsonl holds one line per prompt, {"id", "prompt", "samples": [K
generations]} (`alignax.sample.streaming.generate_to_jsonl`: atomic appends, per-row seeds keyed by
the prompt id). Chunks have fixed boundaries (`stages.chunks`), so a resumed stage samples the same
batches. The sampler's jitted prefill/decode are module-level and keyed by the model's graph, the
sampling parameters and the bucketed shapes, so iterations after the first reuse their compilations.
"""

from __future__ import annotations

import os

from alignax import files
from alignax.iterate import stages
from alignax.sample.streaming import generate_to_jsonl

FILE = "samples.jsonl"


def sample_stage(policy, tokenizer, prompts: list[dict], directory: str, *, options, seed: int, iteration: int) -> dict:
    path = os.path.join(directory, FILE)
    bar = stages.progress(iteration, "sample", len(prompts), "prompt")
    for chunk in stages.chunks(prompts, options.prompts_per_chunk):
        generate_to_jsonl(
            policy,
            tokenizer,
            [{"id": p["id"], "prompt": p["prompt"]} for p in chunk],
            path,
            num_samples=options.num_samples,
            batch_size=options.batch_size,
            prompts_per_write=len(chunk),
            seed=seed,
            max_new_tokens=options.max_new_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
        )
        bar.update(len(chunk))
    bar.close()
    records = read_samples(directory, prompts)
    return {
        "num_prompts": len(records),
        "num_samples": sum(len(r["samples"]) for r in records),
        "tokens_sampled": sum(s["num_tokens"] for r in records for s in r["samples"]),
    }


def read_samples(directory: str, prompts: list[dict]) -> list[dict]:
    """The stage's records in prompt order; an error if one is missing or duplicated."""
    records = files.read_jsonl(os.path.join(directory, FILE))
    by_id = {}
    for r in records:
        if str(r["id"]) in by_id:
            raise ValueError(f"{directory}/{FILE}: duplicated prompt id {r['id']!r}")
        by_id[str(r["id"])] = r
    missing = [p["id"] for p in prompts if str(p["id"]) not in by_id]
    if missing:
        raise ValueError(f"{directory}/{FILE}: {len(missing)} prompts have no samples (first {missing[0]!r})")
    return [by_id[str(p["id"])] for p in prompts]
