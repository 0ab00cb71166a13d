"""AlpacaEval 2 end to end (Dubois et al., 2024, arXiv:2404.04475; tatsu-lab/alpaca_eval).

- Prompts: the 805 instructions of the evaluation set, with the baseline `gpt4_1106_preview`'s
  outputs (output_1 of its published annotations `results/gpt4_1106_preview/
  weighted_alpaca_eval_gpt4_turbo/annotations.json`).
- Generation: alpaca_eval's settings for local models (`models_configs/zephyr-7b-beta/configs.yaml`,
  `huggingface_local_completions`): the model's chat template, temperature 0.7, top_p 1.0, 2048 new
  tokens.
- `--limit N` keeps the N instructions `alpaca_eval evaluate --max_instances N` keeps (a shuffle
  with seed 123, `main.py`), in evaluation-set order.
- Official files: `model_outputs.json` (instruction, output, generator, dataset), which
  `alpaca_eval evaluate --model_outputs` reads, and `annotations.json` in the published format.
- Judge: `weighted_alpaca_eval_gpt4_turbo`: the `alpaca_eval_clf` prompt, one token, preference
  2 - P(m) / (P(m) + P(M)) (alignax/evaluate/judges/prompts.py). As alpaca_eval's
  `RandomSwitchTwoColumnsProcessor`, the two outputs swap places when
  random.Random("is_switched_outputs" + instruction + "123") chooses True, and the preference is
  mapped back with 3 - x. A local judge reads P(m), P(M) from its next-token distribution
  (alignax/evaluate/judges/local.py), an HTTP judge from the top-5 logprobs (judges/base.py).
- Score: alignax/evaluate/alpaca_eval.py (raw win rate with its SE; the length-controlled win rate
  when `--df-gamed` gives alpaca-eval's df_gamed.csv).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd

from alignax.evaluate.cli import naming_file
from alignax.evaluate.run import base, generation, judging
from alignax.evaluate.run.context import RunContext

BASELINE = "gpt4_1106_preview"
BASELINE_FILE = ("alpaca_eval", "results", BASELINE, "weighted_alpaca_eval_gpt4_turbo", "annotations.json.gz")
SETTINGS = generation.GenerationSettings(
    max_new_tokens=2048, temperature=0.7, top_p=1.0, source="alpaca_eval models_configs/zephyr-7b-beta/configs.yaml"
)
SWITCH_SEED = 123  # alpaca_eval BaseProcessor's default seed


def eval_set(ctx: RunContext) -> list[dict[str, Any]]:
    """The 805 records {index, instruction, dataset, baseline} in evaluation-set order."""
    from alignax.evaluate import alpaca_annotations

    path = ctx.data(*BASELINE_FILE)
    with naming_file(path):
        df = alpaca_annotations.load_annotations(path)
        alpaca_annotations.require_columns(df, ["instruction", "output_1", "dataset"])
        return [
            {
                "index": int(i),
                "instruction": str(r["instruction"]),
                "dataset": str(r["dataset"]),
                "baseline": str(r["output_1"]),
            }
            for i, r in df.iterrows()
        ]


def subset(ctx: RunContext) -> list[dict[str, Any]]:
    """The instructions `alpaca_eval --max_instances N` judges (all 805 without a limit)."""
    records = eval_set(ctx)
    if ctx.limit is None:
        return records
    order = pd.Series(range(len(records))).sample(frac=1, random_state=123).tolist()
    return [records[i] for i in sorted(order[: ctx.limit])]


def is_switched(instruction: str) -> bool:
    """alpaca_eval's per-instruction order switch (processors.py, utils.random_seeded_choice)."""
    return random.Random("is_switched_outputs" + instruction + str(SWITCH_SEED)).choices([False, True], k=1)[0]


def generate(ctx: RunContext) -> dict[str, str]:
    records = subset(ctx)
    answers = ctx.answer_user_turns({str(r["index"]): r["instruction"] for r in records}, SETTINGS)
    outputs = [
        {
            "instruction": r["instruction"],
            "output": answers[str(r["index"])],
            "generator": ctx.model_name,
            "dataset": r["dataset"],
        }
        for r in records
    ]
    path = ctx.path("model_outputs.json")
    base.write_json(path, outputs)
    return {"model_outputs": str(path)}


def _read_outputs(ctx: RunContext) -> dict[str, str]:
    path = ctx.path("model_outputs.json")
    with naming_file(path):
        rows = json.loads(path.read_text(encoding="utf-8"))
        for k, row in enumerate(rows):
            base.require(row, ("instruction", "output"), f"{path}: row {k}")
        return {row["instruction"]: row["output"] for row in rows}


def _pairwise_judge(ctx: RunContext):
    """(judge, workers): a local verdict-probability judge or the HTTP weighted judge."""
    if ctx.judge.kind == "local":
        return judging.BucketedLocalJudge(*ctx.load(ctx.judge.model)), 1
    from alignax.evaluate.judges.base import AlpacaEvalJudge

    backend = judging.make_http_backend(ctx.judge, ctx.directory("judge_cache"))
    return AlpacaEvalJudge(backend), ctx.judge.concurrency


def _annotate(judge, item: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    switched = is_switched(item["instruction"])
    first, second = (item["output"], item["baseline"]) if switched else (item["baseline"], item["output"])
    verdict = judge.judge_pair(instruction=item["instruction"], output_1=first, output_2=second)
    preference = 3.0 - verdict.preference if switched else verdict.preference
    return {
        "id": item["id"],
        "instruction": item["instruction"],
        "output_1": item["baseline"],
        "generator_1": BASELINE,
        "dataset": item["dataset"],
        "output_2": item["output"],
        "generator_2": ctx.model_name,
        "annotator": f"weighted_alpaca_eval_{ctx.judge.name}",
        "preference": preference,
        "is_switched_outputs": switched,
        "raw_completion": verdict.raw,
        "price_per_example": None,
        "time_per_example": None,
    }


def judge(ctx: RunContext) -> dict[str, str]:
    outputs = _read_outputs(ctx)
    items = [
        {"id": str(r["index"]), "output": outputs[r["instruction"]], **r}
        for r in subset(ctx)
        if r["instruction"] in outputs
    ]
    pairwise, workers = _pairwise_judge(ctx)
    chunk = max(ctx.batch_size, workers)

    def judge_chunk(batch):
        return [
            base.json_safe(r)
            for r in judging.run_concurrently(lambda item: _annotate(pairwise, item, ctx), batch, workers=workers)
        ]

    records = judging.judge_to_jsonl(
        items,
        ctx.path("judgments", f"alpaca_eval-{ctx.judge.name}.jsonl"),
        judge_chunk,
        chunk_size=chunk,
        label="judge alpaca_eval",
    )
    path = ctx.path("annotations.json")
    base.write_json(path, [{k: v for k, v in r.items() if k != "id"} for r in records])
    return {"annotations": str(path)}


def score(ctx: RunContext) -> base.Result:
    from alignax.evaluate import alpaca_eval as metric

    path = ctx.path("annotations.json")
    with naming_file(path):
        annotations = metric.load_annotations(path)
        metrics = metric.winrate_metrics(annotations)
    outputs = list(_read_outputs(ctx).values())
    metrics["avg_length"] = metric.average_length(outputs)
    metrics["n_skipped"] = int(pd.to_numeric(annotations["preference"], errors="coerce").isna().sum())
    notes, rows = [], []
    if ctx.df_gamed:
        instructions = [r["instruction"] for r in eval_set(ctx)]
        with naming_file(ctx.df_gamed):
            gamed = metric.load_df_gamed(ctx.df_gamed)
        try:
            lc = metric.length_controlled_winrate(annotations, gamed, eval_instructions=instructions)
        except ValueError as error:  # too few rows with a verdict, no length difference, ...
            notes.append(f"length-controlled win rate not computed: {error}")
        else:
            metrics.update({k: lc[k] for k in ("length_controlled_winrate", "lc_standard_error")})
            rows.append(
                base.Metric(
                    "LC win rate (%)",
                    lc["length_controlled_winrate"],
                    *base.normal_interval(lc["length_controlled_winrate"], lc["lc_standard_error"]),
                    interval="+/- 1.96 lc_standard_error (alpaca_eval's SEM of the GLM's predictions)",
                )
            )
    else:
        notes.append(
            "length-controlled win rate not computed: give --df-gamed (alpaca-eval's df_gamed.csv, "
            "the gamed annotations and instruction difficulty the LC GLM is fitted with)"
        )
    rows.append(
        base.Metric(
            "win rate (%)",
            metrics["win_rate"],
            *base.normal_interval(metrics["win_rate"], metrics["standard_error"]),
            interval="+/- 1.96 standard_error",
        )
    )
    rows.append(base.Metric("discrete win rate (%)", metrics["discrete_win_rate"]))
    return base.Result(
        metrics=rows,
        n_items=len(annotations),
        n_benchmark=805,
        details={"metrics": metrics, "baseline": BASELINE},
        notes=notes,
        files={"model_outputs": str(ctx.path("model_outputs.json")), "annotations": str(path)},
    )


BENCHMARK = base.Benchmark(
    name="alpaca_eval",
    title="AlpacaEval 2",
    settings=SETTINGS,
    needs_judge=True,
    generate=generate,
    judge=judge,
    score=score,
    reference="Dubois et al. 2024, arXiv:2404.04475; github.com/tatsu-lab/alpaca_eval",
)
