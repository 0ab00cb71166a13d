"""The evaluate stage: the iterate's greedy responses to held-out prompts, scored by metrics the
training oracle did not produce, plus the oracle's win rate against iteration 0.

DIR/iter_<k>/evaluate/responses.jsonl (greedy, resumable like the sample stage) and DONE.json
with {metric: [mean, standard error]} over prompts. Metrics, by name:
  ifeval           per prompt, the fraction of its instructions followed (strict; IFEval's
                   instruction-level accuracy, alignax/evaluate/ifeval/scoring.py), on ifeval:SEED:N
                   prompts; `ifeval_prompt` the fraction of prompts whose instructions all hold.
  heldout_density_ratio  the CDR density ratio of the STARTING model under a contrast the training
                   never used (no customization, a rambling weak persona; experiments/cdr_simpo.py).
Always reported: `length` (response tokens) and `oracle_winrate_vs_iter0`, P(y_k ≻ y_0 | x) by
the training oracle, y_0 the starting model's response (½ at iteration 0 by definition).
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from alignax.iterate import stages
from alignax.sample.streaming import generate_to_jsonl

FILE = "responses.jsonl"
EVAL_WEAK_INSTRUCTION = (
    "You are a distracted assistant. Ramble, repeat yourself, drift off-topic and never give a "
    "direct, well-organized answer to what was asked."
)
_METRICS: dict[str, Callable] = {}


def register(name: str):
    def decorator(fn):
        _METRICS[name] = fn
        return fn

    return decorator


def mean_se(values) -> list[float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return [float(values.mean()) if values.size else float("nan"), float("nan")]
    return [float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))]


@register("ifeval")
def _ifeval(prompts, responses, context):
    from alignax.evaluate.ifeval.scoring import follow_list

    verdicts = [follow_list(p, r) for p, r in zip(prompts, responses)]
    return {"ifeval": mean_se([np.mean(v) for v in verdicts]), "ifeval_prompt": mean_se([all(v) for v in verdicts])}


@register("heldout_density_ratio")
def _heldout_density_ratio(prompts, responses, context):
    from alignax.annotate.density_ratio import Customization, density_ratio_rewards

    model = context["initial_model"]()
    result = density_ratio_rewards(
        model,
        model,
        context["tokenizer"],
        [p["prompt"] for p in prompts],
        list(responses),
        domain="chat",
        customization=Customization(mode="none"),
        weak_instruction=EVAL_WEAK_INSTRUCTION,
    )
    return {"heldout_density_ratio": mean_se(result.rewards)}


def generate_heldout(policy, tokenizer, prompts, directory, *, options, iteration) -> list[dict]:
    path = os.path.join(directory, FILE)
    bar = stages.progress(iteration, "evaluate", len(prompts), "prompt")
    out = []
    for chunk in stages.chunks(prompts, options.batch_size):
        out += generate_to_jsonl(
            policy,
            tokenizer,
            [{"id": p["id"], "prompt": p["prompt"]} for p in chunk],
            path,
            num_samples=1,
            batch_size=options.batch_size,
            prompts_per_write=len(chunk),
            seed=0,
            max_new_tokens=options.max_new_tokens,
            temperature=0.0,
        )
        bar.update(len(chunk))
    bar.close()
    return out


def evaluate_stage(policy, tokenizer, prompts, directory, *, options, iteration, oracle, baseline, context) -> dict:
    """Metrics of `policy` on the held-out prompts; `baseline`: iteration 0's responses (or None)."""
    records = generate_heldout(policy, tokenizer, prompts, directory, options=options, iteration=iteration)
    responses = [r["samples"][0]["text"] for r in records]
    metrics = {"length": mean_se([r["samples"][0]["num_tokens"] for r in records])}
    for name in options.metrics.split(","):
        if name.strip() not in _METRICS:
            raise ValueError(f"unknown evaluation metric {name!r}; available: {', '.join(sorted(_METRICS))}")
        metrics.update(_METRICS[name.strip()](prompts, responses, context))
    if baseline is None:
        metrics["oracle_winrate_vs_iter0"] = [0.5, 0.0]
    else:
        judgements = oracle.judge(prompts, [[y, y0] for y, y0 in zip(responses, baseline)])
        metrics["oracle_winrate_vs_iter0"] = mean_se([j["win_matrix"][0][1] for j in judgements])
    return {"metrics": metrics, "responses": responses}
