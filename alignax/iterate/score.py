"""The score stage: a preference oracle judges each prompt's K samples (alignax/annotate/oracles.py).

DIR/iter_<k>/score/scored.jsonl, one line per prompt in the oracles' one format:
  {"id", "prompt", "responses": [K], "scores": [K], "win_matrix": [K][K], "win_probs": [K],
   "num_tokens": [K], "finish_reasons": [K]}
win_matrix[i][j] = P(y_i ≻ y_j | x); win_probs[i] = (1/K) Σ_j P(y_i ≻ y_j), j = i included: SPPO's
estimate of P(y_i ≻ π_t) (METHODS.md §4). Chunks of `score_chunk` prompts are appended atomically
with fixed boundaries; a resumed stage judges only the chunks that are not in the file.
"""

from __future__ import annotations

import os

from alignax import files
from alignax.annotate import oracles
from alignax.iterate import stages

FILE = "scored.jsonl"


def score_stage(
    oracle, prompts: list[dict], samples: list[dict], directory: str, *, chunk_size: int, iteration: int
) -> dict:
    path = os.path.join(directory, FILE)
    files.repair_tail(path)
    done = {str(r["id"]) for r in files.read_jsonl(path)}
    bar = stages.progress(iteration, "score", len(samples), "prompt")
    for chunk in stages.chunks(list(zip(prompts, samples)), chunk_size):
        if all(str(s["id"]) in done for _, s in chunk):
            bar.update(len(chunk))
            continue
        groups = [[g["text"] for g in s["samples"]] for _, s in chunk]
        judgements = oracle.judge([p for p, _ in chunk], groups)
        files.append_jsonl(path, [_record(s, j) for (_, s), j in zip(chunk, judgements)])
        bar.update(len(chunk))
    bar.close()
    scored = read_scored(directory, prompts)
    spread = [max(r["scores"]) - min(r["scores"]) for r in scored]
    return {
        "num_prompts": len(scored),
        "ties": sum(s == 0 for s in spread),
        "mean_score": sum(sum(r["scores"]) / len(r["scores"]) for r in scored) / max(1, len(scored)),
    }


def _record(sample: dict, judgement: dict) -> dict:
    gens = sample["samples"]
    return {
        "id": sample["id"],
        "prompt": sample["prompt"],
        "responses": [g["text"] for g in gens],
        "scores": judgement["scores"],
        "win_matrix": judgement["win_matrix"],
        "win_probs": oracles.win_probs(judgement["win_matrix"]),
        "num_tokens": [g["num_tokens"] for g in gens],
        "finish_reasons": [g["finish_reason"] for g in gens],
    }


def read_scored(directory: str, prompts: list[dict]) -> list[dict]:
    records = files.read_jsonl(os.path.join(directory, FILE))
    by_id = {str(r["id"]): r for r in records}
    if len(by_id) != len(records):
        raise ValueError(f"{directory}/{FILE}: duplicated prompt ids")
    missing = [p["id"] for p in prompts if str(p["id"]) not in by_id]
    if missing:
        raise ValueError(f"{directory}/{FILE}: {len(missing)} prompts not scored (first {missing[0]!r})")
    return [by_id[str(p["id"])] for p in prompts]
