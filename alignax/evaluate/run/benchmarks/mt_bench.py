"""MT-Bench end to end (Zheng et al., 2023, arXiv:2306.05685; lm-sys/FastChat `fastchat/llm_judge`).

- Prompts: the 80 two-turn questions of `data/mt_bench/question.jsonl`; GPT-4 reference answers
  (`reference_answer/gpt-4.jsonl`) for math, reasoning and coding.
- Generation: `gen_model_answer.py`: the model's chat template, at most 1024 new tokens, the
  temperature of the question's category (`common.py` temperature_config: writing/roleplay 0.7,
  stem/humanities 0.1, the rest 0 = greedy). Turn 2 is generated with turn 1's question and the
  model's own first answer in the conversation. `--limit N` keeps the first N questions.
- Official file: `model_answer/<name>.jsonl` (question_id, answer_id, model_id, choices[0].turns
  = the two answers, tstamp), as FastChat writes it.
- Judge: single-answer grading (`gen_judgment.py`, mode single): per question and turn, the prompt
  FastChat routes to (alignax/evaluate/judges/prompts.py `mt_bench_prompt_name`: single-v1,
  single-math-v1 with the reference answer, their multi-turn variants for turn 2), temperature 0,
  max_tokens 2048, rating parsed from "[[x]]" (then "[x]"), -1 when absent. Written as
  `model_judgment/<judge>_single.jsonl` in FastChat's format. A local judge stops at its first
  "[[N]]" (the rating FastChat reads; nothing after it counts) and, with --force-verdict (the
  default for local judges), a judgment without a rating gets the rating 1-10 whose "N]]" is most
  likely after "\n\nRating: [[" (judging.py `MT_BENCH_FORCING`; `verdict_forced` in the record, a
  deviation counted in the report).
- Score: alignax/evaluate/mt_bench.py `single_scores` (unparsable rows dropped and counted).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from alignax.evaluate.run import base, generation, judging
from alignax.evaluate.run.context import RunContext

DATA = ("mt_bench", "fastchat", "llm_judge", "data")
TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
SETTINGS = generation.GenerationSettings(
    max_new_tokens=1024,
    temperature=0.7,
    source="FastChat llm_judge gen_model_answer.py, common.py temperature_config",
    decoding="temperature of the category (0.7 writing/roleplay, 0.1 stem/humanities, otherwise greedy)",
)
JUDGE_MAX_TOKENS = 2048


def questions(ctx: RunContext) -> list[dict[str, Any]]:
    path = ctx.data(*DATA, "mt_bench", "question.jsonl")
    rows = base.read_jsonl(path)
    for k, row in enumerate(rows, 1):
        base.require(row, ("question_id", "category", "turns"), f"{path}:{k}")
        if not isinstance(row["turns"], list) or len(row["turns"]) != 2:
            raise ValueError(f"{path}:{k}: turns must be a list of two questions")
    return ctx.subset(rows)


def references(ctx: RunContext) -> dict[Any, list[str]]:
    path = ctx.data(*DATA, "mt_bench", "reference_answer", "gpt-4.jsonl")
    refs = {}
    for k, row in enumerate(base.read_jsonl(path), 1):
        base.require(row, ("question_id", "choices"), f"{path}:{k}")
        refs[row["question_id"]] = row["choices"][0]["turns"]
    return refs


def _settings(ctx: RunContext, category: str) -> generation.GenerationSettings:
    import dataclasses

    settings = dataclasses.replace(SETTINGS, temperature=TEMPERATURE.get(category, 0.7))
    return ctx.settings(settings)


def answer_path(ctx: RunContext):
    return ctx.path("model_answer", f"{ctx.model_name}.jsonl")


def generate(ctx: RunContext) -> dict[str, str]:
    rows = questions(ctx)
    model, tokenizer = ctx.policy()
    path = ctx.path("generations", "answers.jsonl")
    category = {str(r["question_id"]): r["category"] for r in rows}
    settings_of = lambda record: _settings(ctx, category[record["id"].split(":")[0]])  # noqa: E731
    first = [{"id": f"{r['question_id']}:1", "prompt": [{"role": "user", "content": r["turns"][0]}]} for r in rows]
    turn_1 = generation.generate_grouped(
        model,
        tokenizer,
        first,
        path,
        settings_of,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        label="generate mt_bench turn 1",
    )
    second = [
        {
            "id": f"{r['question_id']}:2",
            "prompt": [
                {"role": "user", "content": r["turns"][0]},
                {"role": "assistant", "content": turn_1[f"{r['question_id']}:1"]},
                {"role": "user", "content": r["turns"][1]},
            ],
        }
        for r in rows
    ]
    turn_2 = generation.generate_grouped(
        model,
        tokenizer,
        second,
        path,
        settings_of,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        label="generate mt_bench turn 2",
    )
    out = [
        {
            "question_id": r["question_id"],
            "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.model_name}/{r['question_id']}").hex,
            "model_id": ctx.model_name,
            "choices": [{"index": 0, "turns": [turn_1[f"{r['question_id']}:1"], turn_2[f"{r['question_id']}:2"]]}],
            "tstamp": time.time(),
        }
        for r in rows
    ]
    base.write_jsonl(answer_path(ctx), out)
    return {"model_answer": str(answer_path(ctx))}


def _read_answers(ctx: RunContext) -> dict[Any, list[str]]:
    path = answer_path(ctx)
    answers = {}
    for k, row in enumerate(base.read_jsonl(path), 1):
        base.require(row, ("question_id", "choices"), f"{path}:{k}")
        answers[row["question_id"]] = row["choices"][0]["turns"]
    return answers


def judge_items(ctx: RunContext) -> list[dict[str, Any]]:
    """One item per (question, turn) with FastChat's prompt name and template fields."""
    from alignax.evaluate.judges import prompts

    answers, refs = _read_answers(ctx), references(ctx)
    items = []
    for q in questions(ctx):
        if q["question_id"] not in answers:
            continue
        a, r = answers[q["question_id"]], refs.get(q["question_id"], ["", ""])
        if q["category"] in prompts.MT_BENCH_REFERENCE_CATEGORIES and q["question_id"] not in refs:
            raise KeyError(f"no reference answer for question {q['question_id']} ({q['category']})")
        fields = {
            "question": q["turns"][0],
            "answer": a[0],
            "question_1": q["turns"][0],
            "question_2": q["turns"][1],
            "answer_1": a[0],
            "answer_2": a[1],
            "ref_answer_1": r[0],
            "ref_answer_2": r[1],
        }
        for turn in (1, 2):
            items.append(
                {
                    "id": f"{q['question_id']}:{turn}",
                    "question_id": q["question_id"],
                    "turn": turn,
                    "prompt": prompts.mt_bench_prompt_name(category=q["category"], turn=turn),
                    "fields": fields,
                }
            )
    return items


def judge(ctx: RunContext) -> dict[str, str]:
    from alignax.evaluate import mt_bench as metric
    from alignax.evaluate.judges import prompts

    backend = judging.judge_backend(ctx)
    params = {"temperature": 0, "max_tokens": ctx.judge_tokens(JUDGE_MAX_TOKENS)}
    if ctx.judge.kind == "local":  # the first [[N]] is the rating: nothing after it is read
        params["stop"] = list(judging.MT_BENCH_FORCING.stops)

    def judge_chunk(batch):
        conversations = [prompts.MT_BENCH[item["prompt"]].messages(**item["fields"]) for item in batch]
        completions = backend.complete_many(conversations, **params)
        texts = [c.text for c in completions]
        ratings = [metric.parse_rating(t) for t in texts]
        forced = judging.force_missing(
            ctx, backend, conversations, texts, [r != metric.UNPARSABLE for r in ratings], judging.MT_BENCH_FORCING
        )
        return [
            {
                "id": item["id"],
                "question_id": item["question_id"],
                "model": ctx.model_name,
                "judge": [ctx.judge.name, item["prompt"]],
                "user_prompt": conv[1]["content"],
                "judgment": text,
                "score": rating if f is None else float(f.label),
                "turn": item["turn"],
                "tstamp": time.time(),
                **judging.forced_record(f),
            }
            for item, conv, text, rating, f in zip(batch, conversations, texts, ratings, forced)
        ]

    records = judging.judge_to_jsonl(
        judge_items(ctx),
        ctx.path("judgments", f"mt_bench-{ctx.judge.name}.jsonl"),
        judge_chunk,
        chunk_size=judging.chunk_size(ctx),
        label="judge mt_bench",
    )
    path = ctx.path("model_judgment", f"{ctx.judge.name}_single.jsonl")
    base.write_jsonl(path, [{k: v for k, v in r.items() if k != "id"} for r in records])
    return {"model_judgment": str(path)}


def _mean_parsed(rows_of_questions) -> float:
    scores = [s for rows in rows_of_questions for s in rows if s != -1]
    return sum(scores) / len(scores) if scores else float("nan")


def score(ctx: RunContext) -> base.Result:
    from alignax.evaluate import mt_bench as metric

    path = ctx.path("model_judgment", f"{ctx.judge.name}_single.jsonl")
    records = base.read_jsonl(path)
    categories = {q["question_id"]: q["category"] for q in questions(ctx)}
    per_model = metric.single_scores(records, categories=categories)
    entry = per_model.get(
        ctx.model_name,
        {"score": float("nan"), "turn_1": float("nan"), "turn_2": float("nan"), "n_rows": 0, "n_unparsable": 0},
    )
    by_question: dict[Any, list[float]] = {}
    for r in records:
        by_question.setdefault(r["question_id"], []).append(float(r["score"]))
    clusters = list(by_question.values())
    low, high = base.bootstrap_interval(clusters, _mean_parsed, seed=ctx.seed)
    notes = []
    # Counted from the rows: when no row parses, single_scores has no entry for the model at all.
    n_unparsable = sum(1 for r in records if float(r["score"]) == -1)
    if n_unparsable:
        notes.append(f"{n_unparsable} of {len(records)} judgments had no [[rating]] and are left out (FastChat's -1)")
    n_forced = sum(1 for r in records if r.get("verdict_forced"))
    deviation = judging.forced_deviation(n_forced, len(records), protocol="FastChat llm_judge")
    metrics = [
        base.Metric("MT-Bench score (1-10)", entry["score"], low, high, interval="95% bootstrap over questions"),
        base.Metric("turn 1", entry["turn_1"]),
        base.Metric("turn 2", entry["turn_2"]),
    ]
    return base.Result(
        metrics=metrics,
        n_items=len(by_question),
        n_benchmark=80,
        details={**entry, "n_forced": n_forced},
        notes=notes,
        deviations=[deviation] if deviation else [],
        files={"model_answer": str(answer_path(ctx)), "model_judgment": str(path)},
    )


BENCHMARK = base.Benchmark(
    name="mt_bench",
    title="MT-Bench",
    settings=SETTINGS,
    needs_judge=True,
    generate=generate,
    judge=judge,
    score=score,
    reference="Zheng et al. 2023, arXiv:2306.05685; github.com/lm-sys/FastChat (fastchat/llm_judge)",
)
