"""IFEval-style verifiable instruction following (Zhou et al., 2023, arXiv:2311.07911).

- Prompts: `alignax.evaluate.ifeval.make_prompts(n, seed)`: template prompts with 1-3 instructions
  over a built-in topic list, in IFEval's `input_data.jsonl` format (alignax/evaluate/ifeval/
  prompts.py). They are not IFEval's 541 prompts: the accuracies are of the same kind, not the
  published benchmark's numbers. Without `--limit`, 541 prompts (IFEval's size) are made.
- Generation: lm-evaluation-harness `lm_eval/tasks/ifeval/ifeval.yaml`: the chat template,
  greedy, at most 1280 new tokens.
- Official files: `input_data.jsonl` and `input_response_data.jsonl` (prompt, response), the
  inputs of google-research/instruction_following_eval `evaluation_main.py`.
- No judge: the checkers (alignax/evaluate/ifeval/checkers.py) score each response, strict and
  loose, at prompt and instruction level (alignax/evaluate/ifeval/scoring.py `score`).
"""

from __future__ import annotations

from typing import Any

from alignax.evaluate.run import base, generation
from alignax.evaluate.run.context import RunContext

FULL_SIZE = 541  # prompts in IFEval's input_data.jsonl
SETTINGS = generation.GenerationSettings(
    max_new_tokens=1280, temperature=0.0, source="lm-evaluation-harness lm_eval/tasks/ifeval/ifeval.yaml"
)


def prompt_records(ctx: RunContext) -> list[dict[str, Any]]:
    from alignax.evaluate.ifeval import make_prompts

    return make_prompts(ctx.limit if ctx.limit is not None else FULL_SIZE, seed=ctx.seed)


def generate(ctx: RunContext) -> dict[str, str]:
    records = prompt_records(ctx)
    answers = ctx.answer_user_turns({str(r["key"]): r["prompt"] for r in records}, SETTINGS)
    base.write_jsonl(ctx.path("input_data.jsonl"), records)
    path = ctx.path("input_response_data.jsonl")
    base.write_jsonl(path, [{"prompt": r["prompt"], "response": answers[str(r["key"])]} for r in records])
    return {"input_data": str(ctx.path("input_data.jsonl")), "input_response_data": str(path)}


def judge(ctx: RunContext) -> dict[str, str]:
    return {}  # verified by code: no judge


def _prompt_accuracy(mode: str):
    def statistic(rows) -> float:
        return sum(all(r[mode]) for r in rows) / len(rows)

    return statistic


def _instruction_accuracy(mode: str):
    def statistic(rows) -> float:
        flat = [v for r in rows for v in r[mode]]
        return sum(flat) / len(flat) if flat else float("nan")

    return statistic


def score(ctx: RunContext) -> base.Result:
    from alignax.evaluate.ifeval import follow_list
    from alignax.evaluate.ifeval import score as ifeval_score

    path = ctx.path("input_response_data.jsonl")
    responses = {r["prompt"]: r["response"] for r in base.read_jsonl(path)}
    records = [{**r, "response": responses[r["prompt"]]} for r in prompt_records(ctx) if r["prompt"] in responses]
    if not records:
        raise ValueError(f"{path}: no responses to score")
    summary = ifeval_score(records)
    verdicts = [
        {"strict": follow_list(r, r["response"]), "loose": follow_list(r, r["response"], loose=True)} for r in records
    ]
    metrics = []
    for level, key, statistic in (
        ("prompt", "prompt_level_{}_acc", _prompt_accuracy),
        ("instruction", "inst_level_{}_acc", _instruction_accuracy),
    ):
        for mode in ("strict", "loose"):
            low, high = base.bootstrap_interval(verdicts, statistic(mode), seed=ctx.seed)
            metrics.append(
                base.Metric(
                    f"{level}-level {mode} accuracy (%)",
                    100 * summary[key.format(mode)],
                    100 * low,
                    100 * high,
                    interval="95% bootstrap over prompts",
                )
            )
    notes = [
        "prompts are alignax's template prompts (alignax.evaluate.ifeval.make_prompts), not IFEval's 541: "
        "comparable between models evaluated here, not with published IFEval numbers"
    ]
    return base.Result(
        metrics=metrics,
        n_items=len(records),
        n_benchmark=FULL_SIZE,
        details=summary,
        notes=notes,
        files={"input_response_data": str(path)},
    )


BENCHMARK = base.Benchmark(
    name="ifeval",
    title="IFEval (verifiable instruction following)",
    settings=SETTINGS,
    needs_judge=False,
    generate=generate,
    judge=judge,
    score=score,
    reference="Zhou et al. 2023, arXiv:2311.07911; github.com/google-research/google-research/"
    "tree/master/instruction_following_eval",
)
