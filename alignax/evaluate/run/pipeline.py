"""One benchmark end to end: generate -> official answer files -> judge -> score -> report.

Each stage reads what the previous one wrote in the work directory and skips what is already
there (generation and judging append per batch to JSONL files keyed by prompt id), so running the
same command again after a crash or Ctrl-C continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from alignax.evaluate.run import base, benchmarks, report
from alignax.evaluate.run.context import RunContext


def _stage(name: str) -> None:
    print(f"== {name}", file=sys.stderr, flush=True)


def run_benchmark(ctx: RunContext) -> dict[str, Any]:
    """Runs every stage; returns {"result": Result, "paths": report files, "files": official files}."""
    bench = benchmarks.get(ctx.benchmark)
    if bench.needs_judge and ctx.judge is None:
        raise ValueError(f"--benchmark {bench.name} needs --judge (local:<model> or http:<base_url>,model=<name>)")
    if not bench.needs_judge:
        ctx.judge = None  # a judge given to a judge-free benchmark is not part of the run
    ctx.claim_workdir()
    seconds: dict[str, float] = {}  # wall time of each stage in this invocation (a resumed run: its own)
    started = time.perf_counter()
    _stage(f"{bench.name}: generate ({ctx.model_name})")
    official = dict(bench.generate(ctx))
    seconds["generate"] = time.perf_counter() - started
    if bench.needs_judge:
        started = time.perf_counter()
        _stage(f"{bench.name}: judge ({ctx.judge.kind}:{ctx.judge.model})")
        official.update(bench.judge(ctx))
        seconds["judge"] = time.perf_counter() - started
    started = time.perf_counter()
    _stage(f"{bench.name}: score")
    result = bench.score(ctx)
    seconds["score"] = time.perf_counter() - started
    result.files = {**official, **result.files}
    result.details["stage_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    base.write_json(
        ctx.path("metrics.json"),
        {
            "benchmark": bench.name,
            "model": ctx.model_name,
            "identity": ctx.identity(),
            "limit": ctx.limit,
            "n_items": result.n_items,
            "n_benchmark": result.n_benchmark,
            "metrics": [dataclasses.asdict(m) for m in result.metrics],
            "notes": result.notes,
            "deviations": result.deviations,
            "details": result.details,
        },
    )
    paths = report.write(ctx, bench, result)
    return {"result": result, "paths": paths, "files": result.files}
