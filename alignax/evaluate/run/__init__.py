"""`python -m alignax.evaluate run`: a model's answers to a benchmark, judged and scored end to end.

context     RunContext: model, judge, subset, work directory (resumable stages), loaded models
generation  the benchmark's decoding settings through the KV-cache sampler, resumable JSONL
judging     --judge local:<model> | http:<base_url>,model=<name>; resumable judge JSONL
benchmarks  one module per benchmark (alpaca_eval, arena_hard, mt_bench, ifeval): prompts, official
            answer/judgment files, judge protocol, scoring with alignax/evaluate/<metric>.py
report      report.md + report.png (intervals, settings, what --limit does)
pipeline    run_benchmark(ctx): the stages in order
command     the CLI sub-command (alignax/evaluate/cli.py)
"""
