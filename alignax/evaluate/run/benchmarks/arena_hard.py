"""Arena-Hard-Auto v0.1 end to end (Li et al., 2024, arXiv:2406.11939; lmarena/arena-hard-auto).

- Prompts: the 500 questions of `data/arena-hard-v0.1/question.jsonl`; the baseline is
  gpt-4-0314's answers (`model_answer/gpt-4-0314.jsonl`).
- Generation: `config/gen_answer_config.yaml` / `api_config.yaml` (temperature 0, max_tokens 4096),
  one user turn in the model's chat template. `--limit N` keeps the first N questions.
- Official file: `model_answer/<name>.jsonl` as arena-hard-auto's `gen_answer.py` writes it (uid,
  ans_id, model, messages with the answer under content.answer, tstamp, metadata with token_len
  and the markdown counts of `utils/add_markdown_info.py` for style control; token_len counts the
  model's own tokens, not tiktoken's).
- Judge: `config/judge_config.yaml` v0.1: the system prompt and template of
  alignax/evaluate/judges/prompts.py (ARENA_HARD), temperature 0, max_tokens 4096, two games per
  question (game 1: A = baseline, B = model; game 2 swapped), verdict regex `[[A>B]]`. The
  judgments are written as `model_judgment/<judge>/<name>.jsonl` (uid, model, judge, games[2]
  {user_prompt, judgment, score}). With a local judge and --force-verdict (its default), a game
  without a parsable label gets the label among the five whose "X]]" is most likely after
  "\n\nMy final verdict is: [[" (judging.py `ARENA_HARD_FORCING`; `verdict_forced` in the game, a
  deviation counted in the report).
- Score: alignax/evaluate/arena_hard.py (v0.1 battles, ">>" counted 3 times, Bradley-Terry, 100
  bootstrap rounds, 2.5 / 97.5 percentile interval).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pandas as pd

from alignax.evaluate.run import base, generation, judging
from alignax.evaluate.run.context import RunContext

BASELINE = "gpt-4-0314"
DATA = ("arena_hard", "data", "arena-hard-v0.1")
SETTINGS = generation.GenerationSettings(
    max_new_tokens=4096, temperature=0.0, source="arena-hard-auto config/gen_answer_config.yaml (v0.1)"
)
JUDGE_MAX_TOKENS = 4096
_CODE_BLOCK = re.compile(r"```([^`]*)```")


def questions(ctx: RunContext) -> list[dict[str, Any]]:
    path = ctx.data(*DATA, "question.jsonl.gz")
    rows = base.read_jsonl(path)
    for k, row in enumerate(rows, 1):
        base.require(row, ("uid", "prompt"), f"{path}:{k}")
    return ctx.subset(rows)


def baseline_answers(ctx: RunContext) -> dict[str, str]:
    path = ctx.data(*DATA, "model_answer", f"{BASELINE}.jsonl.gz")
    answers = {}
    for k, row in enumerate(base.read_jsonl(path), 1):
        base.require(row, ("uid", "messages"), f"{path}:{k}")
        try:
            answers[row["uid"]] = row["messages"][-1]["content"]["answer"]
        except (LookupError, TypeError):
            raise ValueError(f"{path}:{k}: messages[-1].content.answer missing") from None
    return answers


def markdown_metadata(answer: str, token_len: int) -> dict[str, Any]:
    """Style features of an answer, as arena-hard-auto's add_markdown_info.py counts them."""
    text = _CODE_BLOCK.sub("", answer)
    return {
        "token_len": token_len,
        "header_count": {f"h{i}": len(re.findall(r"^#{%d}\s" % i, text, re.MULTILINE)) for i in range(1, 7)},
        "list_count": {
            "ordered": len(re.findall(r"^\s*\d+\.\s", text, re.MULTILINE)),
            "unordered": len(re.findall(r"^\s*[-*+]\s", text, re.MULTILINE)),
        },
        "bold_count": {"**": len(re.findall(r"\*\*[^*\n]+\*\*", text)), "__": len(re.findall(r"__[^_\n]+__", text))},
    }


def answer_path(ctx: RunContext):
    return ctx.path("model_answer", f"{ctx.model_name}.jsonl")


def generate(ctx: RunContext) -> dict[str, str]:
    rows = questions(ctx)
    answers = ctx.answer_user_turns({r["uid"]: r["prompt"] for r in rows}, SETTINGS)
    tokenizer = ctx.policy()[1]
    out = []
    for r in rows:
        text = answers[r["uid"]]
        token_len = len(tokenizer.encode(text, add_special_tokens=False))
        out.append(
            {
                "uid": r["uid"],
                "ans_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{ctx.model_name}/{r['uid']}").hex,
                "model": ctx.model_name,
                "messages": [
                    {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": {"answer": text}},
                ],
                "tstamp": time.time(),
                "metadata": markdown_metadata(text, token_len),
            }
        )
    path = answer_path(ctx)
    base.write_jsonl(path, out)
    return {"model_answer": str(path)}


def _read_answers(ctx: RunContext) -> dict[str, str]:
    path = answer_path(ctx)
    answers = {}
    for k, row in enumerate(base.read_jsonl(path), 1):
        base.require(row, ("uid", "messages"), f"{path}:{k}")
        answers[row["uid"]] = row["messages"][-1]["content"]["answer"]
    return answers


def judge(ctx: RunContext) -> dict[str, str]:
    from alignax.evaluate.judges.base import arena_hard_judge

    answers, reference = _read_answers(ctx), baseline_answers(ctx)
    items = [
        {"id": q["uid"], "question": q, "answer": answers[q["uid"]], "baseline": reference.get(q["uid"])}
        for q in questions(ctx)
        if q["uid"] in answers
    ]
    missing = [i["id"] for i in items if i["baseline"] is None]
    if missing:
        raise ValueError(f"no {BASELINE} answer for question {missing[0]}")
    backend = judging.judge_backend(ctx)
    protocol = arena_hard_judge(backend, max_tokens=ctx.judge_tokens(JUDGE_MAX_TOKENS))

    def judge_chunk(batch):
        conversations = []
        for item in batch:
            q = item["question"]["prompt"]
            conversations.append(protocol.prompt.messages(**protocol.fields(q, item["baseline"], item["answer"])))
            conversations.append(protocol.prompt.messages(**protocol.fields(q, item["answer"], item["baseline"])))
        texts = [c.text for c in backend.complete_many(conversations, **protocol.params)]
        labels = [protocol.parse(t) for t in texts]
        forced = judging.force_missing(
            ctx, backend, conversations, texts, [x is not None for x in labels], judging.ARENA_HARD_FORCING
        )
        games = [
            {
                "user_prompt": conv[1]["content"],
                "judgment": text,
                "score": label if f is None else f.label,
                **judging.forced_record(f),
            }
            for conv, text, label, f in zip(conversations, texts, labels, forced)
        ]
        records = []
        for k, item in enumerate(batch):
            records.append(
                {
                    "id": item["id"],
                    "uid": item["id"],
                    "question_id": item["id"],
                    "category": item["question"].get("category"),
                    "model": ctx.model_name,
                    "baseline": BASELINE,
                    "judge": ctx.judge.name,
                    "games": games[2 * k : 2 * k + 2],
                    "tstamp": time.time(),
                }
            )
        return records

    records = judging.judge_to_jsonl(
        items,
        ctx.path("judgments", f"arena_hard-{ctx.judge.name}.jsonl"),
        judge_chunk,
        chunk_size=judging.chunk_size(ctx),
        label="judge arena_hard",
    )
    path = ctx.path("model_judgment", ctx.judge.name, f"{ctx.model_name}.jsonl")
    base.write_jsonl(path, [{k: v for k, v in r.items() if k != "id"} for r in records])
    return {"model_judgment": str(path)}


def score(ctx: RunContext) -> base.Result:
    from alignax.evaluate import arena_hard as metric

    path = ctx.path("model_judgment", ctx.judge.name, f"{ctx.model_name}.jsonl")
    records = base.read_jsonl(path)
    names = [f"{path}:{k}" for k in range(1, len(records) + 1)]
    n_games = sum(len(r.get("games") or []) for r in records)
    notes, details = [], {"baseline": BASELINE, "n_games": n_games}
    try:
        battles, n_unparsable = metric.battles_from_judgments(records, baseline=BASELINE, row_names=names)
    except ValueError as error:
        if "no parsable" not in str(error):
            raise
        notes.append(f"no score: none of the {n_games} judge verdicts could be parsed ([[A>B]] labels)")
        details["n_unparsable"] = n_games
        value = base.Metric("score vs gpt-4-0314 (%)", float("nan"))
    else:
        details.update(n_unparsable=n_unparsable, n_battles=len(battles))
        value = _bt_score(ctx, battles, details, notes)
        if n_unparsable:
            notes.append(f"{n_unparsable} of {n_games} judge verdicts could not be parsed (no battle)")
    n_forced = sum(1 for r in records for g in r.get("games") or [] if (g or {}).get("verdict_forced"))
    details["n_forced"] = n_forced
    deviation = judging.forced_deviation(n_forced, n_games, protocol="arena-hard-auto")
    answers = base.read_jsonl(answer_path(ctx))
    details["avg_tokens"] = sum(a["metadata"]["token_len"] for a in answers) / max(1, len(answers))
    return base.Result(
        metrics=[value],
        n_items=len(records),
        n_benchmark=500,
        details=details,
        notes=notes,
        files={"model_answer": str(answer_path(ctx)), "model_judgment": str(path)},
        deviations=[deviation] if deviation else [],
    )


def _bt_score(ctx: RunContext, battles, details: dict, notes: list) -> base.Metric:
    """The v0.1 Bradley-Terry score and bootstrap interval; when the battles (or a bootstrap
    resample) are one-sided the fit has no finite optimum, and the score is the weighted empirical
    win rate, which the BT score equals when every battle is against the baseline (arena_hard.py)."""
    from alignax.evaluate import arena_hard as metric

    name = "score vs gpt-4-0314 (%)"
    try:
        board = metric.leaderboard(battles, baseline=BASELINE, num_rounds=ctx.num_rounds, seed=ctx.seed)
    except ValueError as error:  # scikit-learn: "needs samples of at least 2 classes"
        if "class" not in str(error):
            raise
    else:
        row = board[board["model"] == ctx.model_name].iloc[0]
        details["leaderboard"] = board.to_dict("records")
        return base.Metric(
            name,
            float(row["score"]),
            float(row["lower"]),
            float(row["upper"]),
            interval=f"2.5-97.5 percentiles over {ctx.num_rounds} bootstrap rounds of battles",
        )
    rows = battles.to_dict("records")

    def win_rate(sample) -> float:
        frame = pd.DataFrame.from_records(sample)
        return float(metric.weighted_empirical_win_rate(frame, baseline=BASELINE)[ctx.model_name])

    low, high = base.bootstrap_interval(rows, win_rate, rounds=ctx.num_rounds, seed=ctx.seed)
    notes.append(
        "one-sided battles (in the data or a bootstrap resample): the Bradley-Terry fit has no finite "
        "optimum, so the score is the weighted empirical win rate (equal to the BT score when every "
        "battle is against the baseline)"
    )
    return base.Metric(
        name,
        win_rate(rows),
        low,
        high,
        interval=f"2.5-97.5 percentiles over {ctx.num_rounds} bootstrap rounds of battles (empirical)",
    )


BENCHMARK = base.Benchmark(
    name="arena_hard",
    title="Arena-Hard-Auto v0.1",
    settings=SETTINGS,
    needs_judge=True,
    generate=generate,
    judge=judge,
    score=score,
    reference="Li et al. 2024, arXiv:2406.11939; github.com/lmarena/arena-hard-auto",
)
