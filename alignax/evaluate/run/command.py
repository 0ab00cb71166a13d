"""`python -m alignax.evaluate run`: generate, judge and score one benchmark for one model."""

from __future__ import annotations

import argparse
import sys

from alignax.evaluate.cli import positive_int
from alignax.evaluate.run import benchmarks

EPILOG = """examples:
  python -m alignax.evaluate run --benchmark alpaca_eval --model smollm2-135m-instruct \\
      --judge local:smollm2-135m-instruct --limit 8 --workdir W
  python -m alignax.evaluate run --benchmark arena_hard --model runs/dpo/export \\
      --judge http:https://api.openai.com/v1,model=gpt-4-1106-preview --workdir W2
  python -m alignax.evaluate run --benchmark ifeval --model smollm2-135m-instruct --limit 50 --workdir W3

Rerunning the same command resumes (generation and judging skip what the workdir holds).
--limit N evaluates a subset: its number is not the benchmark's (see report.md and docs/evaluation.md).
"""


def add_arguments(parser) -> None:
    parser.description = "Generate a model's answers to a benchmark, judge them with its protocol, score, report."
    parser.epilog = EPILOG
    parser.add_argument("--benchmark", required=True, choices=sorted(benchmarks.MODULES))
    parser.add_argument("--model", required=True, help="a preset, a .gguf file, an HF folder or a run's export/")
    parser.add_argument(
        "--judge", default=None, help="local:<model> or http:<base_url>,model=<name>[,api_key_env=VAR][,concurrency=N]"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="evaluate only N prompts (a subset: not the benchmark's number)",
    )
    parser.add_argument("--workdir", required=True, help="folder for every stage's files (rerun to resume)")
    parser.add_argument(
        "--evaldata", default=None, help="benchmark data folder (default $ALIGNAX_EVALDATA or ../shared/evaldata)"
    )
    parser.add_argument("--name", default="", help="generator name in the official files (default: the model's)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="prompts per sampler batch")
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="override the benchmark's max new tokens (a deviation, named in the report)",
    )
    parser.add_argument(
        "--judge-max-tokens",
        type=positive_int,
        default=None,
        help="override the judge protocol's max_tokens (a deviation, named in the report)",
    )
    parser.add_argument(
        "--df-gamed", default=None, help="AlpacaEval: alpaca-eval's df_gamed.csv, for the length-controlled win rate"
    )
    parser.add_argument(
        "--force-verdict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="local judges (mt_bench, arena_hard): when a judgment has no parsable verdict, append the "
        "protocol's verdict prefix and take the allowed verdict with the highest log-probability under "
        "the judge (a deviation counted in the report; FastChat/Arena-Hard count such judgments as "
        "unparsable). Never applies to http judges. Default: on",
    )
    parser.add_argument("--num-rounds", type=positive_int, default=100, help="Arena-Hard bootstrap rounds")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from alignax.evaluate.judges.http import JudgeHTTPError
    from alignax.evaluate.run.context import RunContext, default_evaldata
    from alignax.evaluate.run.judging import parse_judge
    from alignax.evaluate.run.pipeline import run_benchmark

    ctx = RunContext(
        benchmark=args.benchmark,
        model_source=args.model,
        workdir=args.workdir,
        evaldata=args.evaldata or default_evaldata(),
        judge=parse_judge(args.judge) if args.judge else None,
        limit=args.limit,
        model_name=args.name,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        judge_max_tokens=args.judge_max_tokens,
        seed=args.seed,
        num_rounds=args.num_rounds,
        df_gamed=args.df_gamed,
        force_verdict=args.force_verdict,
    )
    try:
        out = run_benchmark(ctx)
    except JudgeHTTPError as error:
        print(f"error: judge: {error}\nrerun the same command to resume (finished work is kept)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (finished work is kept)", file=sys.stderr)
        return 130
    print(out["paths"]["markdown"].read_text(encoding="utf-8"))
    for kind, path in out["paths"].items():
        print(f"wrote {kind}: {path}")
    return 0
