"""The annotation job: N on-policy samples per prompt -> rewards -> chosen/rejected -> JSONL.

    annotate(policy, tokenizer, records, reward_fn, workdir, config=AnnotateConfig()) -> summary

Stages, each resumable (a killed job restarted with the same arguments redoes only what is
missing, and never duplicates or drops a record):
  1. workdir/samples.jsonl     one line per prompt: {"id", "prompt", "samples": [...]}, streamed by
                               `alignax.sample.generate_to_jsonl` (atomic appends; seeds keyed by id).
  2. workdir/scored.jsonl      one line per prompt: {"id", "prompt", "responses", "rewards",
                               "num_tokens", "finish_reasons", [+ "domain", "strong_logps", ...]}
                               (the data layer's "multi_sample" format), appended `score_chunk`
                               prompts at a time after `reward_fn` returns.
  3. workdir/preferences.jsonl {"id", "prompt", "chosen", "rejected", "chosen_reward",
                               "rejected_reward", "margin", "chosen_num_tokens", ...}, rebuilt
                               from scored.jsonl and replaced atomically (pairing is deterministic).
  4. workdir/summary.json      reward spread, ties, lengths, domains, finish reasons.
Defaults follow the CDR release (METHODS.md §3): N = 8, temperature 0.7, top_p 0.85,
rejected = random non-max.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from alignax import files as jsonl
from alignax.annotate.pairs import select_pair
from alignax.sample.sampler import stable_prompt_key
from alignax.sample.streaming import generate_to_jsonl


@dataclasses.dataclass(frozen=True)
class AnnotateConfig:
    num_samples: int = 8
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.85
    top_k: int = 0
    min_p: float = 0.0
    stop_strings: tuple[str, ...] = ()
    pair_strategy: str = "random_nonmax"  # or "worst"
    seed: int = 0
    batch_size: int = 16
    score_chunk: int = 8  # prompts per reward_fn call (and per append to scored.jsonl)


def _normalize_records(records: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(records):
        if isinstance(r, dict):
            if "prompt" not in r:
                raise ValueError(f"annotate: record {i} has no 'prompt' key (keys: {sorted(r)})")
            out.append({"id": r.get("id", i), "prompt": r["prompt"]})
        else:
            out.append({"id": i, "prompt": r})
    return out


def _to_list(x) -> list:
    return np.asarray(x).tolist()


def annotate(
    policy,
    tokenizer,
    records: Sequence[Any],
    reward_fn: Callable[[Sequence[Any], Sequence[str]], Any],
    workdir,
    *,
    config: AnnotateConfig = AnnotateConfig(),
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) the job; returns the summary (also written to workdir/summary.json).

    reward_fn(prompts, responses) returns [N] rewards, or an object with `.rewards` (e.g.
    `DensityRatioRewards`); its other per-item array fields and `.domains` are stored too.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    recs = _normalize_records(records)
    samples_path, scored_path = workdir / "samples.jsonl", workdir / "scored.jsonl"

    # 1. samples
    sampled = generate_to_jsonl(
        policy,
        tokenizer,
        recs,
        samples_path,
        num_samples=config.num_samples,
        batch_size=config.batch_size,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        min_p=config.min_p,
        stop_strings=config.stop_strings,
    )
    if progress:
        progress("sample", len(sampled), len(recs))

    # 2. rewards
    jsonl.repair_tail(scored_path)
    scored = {str(r["id"]): r for r in jsonl.read_jsonl(scored_path)}
    todo = [s for s in sampled if str(s["id"]) not in scored]
    for c0 in range(0, len(todo), config.score_chunk):
        chunk = todo[c0 : c0 + config.score_chunk]
        prompts = [s["prompt"] for s in chunk for _ in s["samples"]]
        responses = [g["text"] for s in chunk for g in s["samples"]]
        result = reward_fn(prompts, responses)
        rewards = np.asarray(getattr(result, "rewards", result), np.float64)
        if rewards.shape != (len(responses),):
            raise ValueError(f"annotate: reward_fn returned shape {rewards.shape} for {len(responses)} responses")
        extras = {}
        if dataclasses.is_dataclass(result):
            for f in dataclasses.fields(result):
                v = getattr(result, f.name)
                if f.name != "rewards" and len(v) == len(responses):
                    extras[f.name] = _to_list(v)
        out, k = [], 0
        for s in chunk:
            n = len(s["samples"])
            rec = {
                "id": s["id"],
                "prompt": s["prompt"],
                "responses": [g["text"] for g in s["samples"]],
                "rewards": rewards[k : k + n].tolist(),
                "num_tokens": [g["num_tokens"] for g in s["samples"]],
                "finish_reasons": [g["finish_reason"] for g in s["samples"]],
            }
            for name, values in extras.items():
                part = values[k : k + n]
                if name == "domains":  # one domain per prompt
                    rec["domain"] = part[0]
                else:
                    rec[name] = part
            out.append(rec)
            k += n
        jsonl.append_jsonl(scored_path, out)
        scored.update({str(o["id"]): o for o in out})
        if progress:
            progress("score", len(scored), len(recs))

    # 3. pairs (deterministic, rebuilt each run)
    ordered = [scored[str(r["id"])] for r in recs]
    prefs = []
    for rec in ordered:
        pair = select_pair(
            rec["rewards"], strategy=config.pair_strategy, seed=config.seed, key=stable_prompt_key(rec["id"])
        )
        if pair is None:
            continue
        c, r = pair
        prefs.append(
            {
                "id": rec["id"],
                "prompt": rec["prompt"],
                "chosen": rec["responses"][c],
                "rejected": rec["responses"][r],
                "chosen_reward": rec["rewards"][c],
                "rejected_reward": rec["rewards"][r],
                "margin": rec["rewards"][c] - rec["rewards"][r],
                "chosen_num_tokens": rec["num_tokens"][c],
                "rejected_num_tokens": rec["num_tokens"][r],
                **({"domain": rec["domain"]} if "domain" in rec else {}),
            }
        )
    jsonl.write_jsonl_atomic(workdir / "preferences.jsonl", prefs)

    # 4. summary
    summary = summarize(ordered, prefs, config=config)
    jsonl.write_atomic(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(
    scored: Sequence[dict[str, Any]], prefs: Sequence[dict[str, Any]], *, config: AnnotateConfig
) -> dict[str, Any]:
    """Reward spread, ties and lengths of a finished job."""
    all_rewards = np.concatenate([np.asarray(r["rewards"], np.float64) for r in scored]) if scored else np.zeros(0)
    spreads = np.array([max(r["rewards"]) - min(r["rewards"]) for r in scored]) if scored else np.zeros(0)
    lengths = np.concatenate([np.asarray(r["num_tokens"], np.float64) for r in scored]) if scored else np.zeros(0)
    ties_at_max = sum(int(np.sum(np.asarray(r["rewards"]) == max(r["rewards"])) > 1) for r in scored)
    finish: dict[str, int] = {}
    for r in scored:
        for f in r["finish_reasons"]:
            finish[f] = finish.get(f, 0) + 1
    domains: dict[str, int] = {}
    for r in scored:
        if "domain" in r:
            domains[r["domain"]] = domains.get(r["domain"], 0) + 1
    mean = lambda x: float(np.mean(x)) if len(x) else float("nan")
    margins = [p["margin"] for p in prefs]
    rewards_with = np.array([[p["chosen_num_tokens"], p["rejected_num_tokens"]] for p in prefs], np.float64).reshape(
        -1, 2
    )
    return {
        "num_prompts": len(scored),
        "num_samples": config.num_samples,
        "num_pairs": len(prefs),
        "skipped_all_tied": len(scored) - len(prefs),
        "prompts_with_tie_at_max": ties_at_max,
        "pair_strategy": config.pair_strategy,
        "reward_mean": mean(all_rewards),
        "reward_std": float(np.std(all_rewards)) if len(all_rewards) else float("nan"),
        "reward_spread_mean": mean(spreads),
        "reward_spread_min": float(spreads.min()) if len(spreads) else float("nan"),
        "margin_mean": mean(margins),
        "response_tokens_mean": mean(lengths),
        "chosen_tokens_mean": mean(rewards_with[:, 0]),
        "rejected_tokens_mean": mean(rewards_with[:, 1]),
        "chosen_longer_fraction": mean((rewards_with[:, 0] > rewards_with[:, 1]).astype(np.float64)),
        "finish_reasons": finish,
        "domains": domains,
    }
