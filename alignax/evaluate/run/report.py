"""The report of one `evaluate run`: report.md (numbers, intervals, settings, caveats) and report.png.

The Markdown table holds each headline metric with its interval; the PNG draws the same numbers as
points with interval bars (matplotlib, Agg). AlpacaEval runs also get the leaderboard files of
alignax/evaluate/report.py (leaderboard.md / .csv, winrates.png).
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from alignax import files
from alignax.evaluate.run.base import Benchmark, Result
from alignax.evaluate.run.context import RunContext


def limit_caveat(result: Result) -> str:
    """What a subset does to comparability (the same sentence in docs/evaluation.md)."""
    if result.n_items >= result.n_benchmark:
        return f"All {result.n_benchmark} prompts of the benchmark were evaluated."
    return (
        f"**Subset: {result.n_items} of the benchmark's {result.n_benchmark} prompts (--limit).** This is not "
        "the benchmark's number: it is an estimate on a subset, with wider intervals, and it moves with which "
        "prompts the subset holds (categories and difficulty are not balanced). Compare it only with runs on "
        "the same subset, same judge and same settings."
    )


def _number(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}"


def metrics_table(result: Result) -> str:
    lines = ["| metric | value | interval | how |", "|---|---:|---:|---|"]
    for m in result.metrics:
        interval = (
            ""
            if not (math.isfinite(m.lower) and math.isfinite(m.upper))
            else f"[{_number(m.lower)}, {_number(m.upper)}]"
        )
        lines.append(f"| {m.name} | {_number(m.value)} | {interval} | {m.interval} |")
    return "\n".join(lines) + "\n"


def markdown(ctx: RunContext, bench: Benchmark, result: Result) -> str:
    settings = ctx.settings(bench.settings)
    deviations = []
    if ctx.max_new_tokens is not None:
        deviations.append(
            f"max new tokens set to {ctx.max_new_tokens} (--max-new-tokens; the benchmark uses "
            f"{bench.settings.max_new_tokens}): answers can be cut shorter than the protocol allows, so the "
            "number is not comparable with runs at the benchmark's own setting"
        )
    if ctx.judge_max_tokens is not None and bench.needs_judge:
        deviations.append(
            f"judge max_tokens set to {ctx.judge_max_tokens} (--judge-max-tokens): a judgment cut off before "
            "its verdict counts as unparsable (or, with a local judge, has its verdict forced), so the number "
            "is not comparable with the protocol's judge"
        )
    if not bench.needs_judge:
        judge = "none (verified by code)"
    elif ctx.judge.kind == "local":
        judge = f"local model {ctx.judge.model}"
    else:
        judge = f"{ctx.judge.model} at {ctx.judge.base_url}"
    parts = [
        f"# {bench.title}: {ctx.model_name}\n",
        metrics_table(result),
        "\n" + limit_caveat(result) + "\n",
        "\n## Run\n",
        f"- model: `{ctx.model_source}` (generator name `{ctx.model_name}`)",
        f"- judge: {judge}",
        f"- generation: {settings.describe()} ({settings.source})",
        f"- protocol: {bench.reference}",
    ]
    stage_seconds = result.details.get("stage_seconds") or {}
    if stage_seconds:
        parts.append(
            "- wall time of this invocation (a resumed run counts only its own work): "
            + ", ".join(f"{stage} {value:.0f} s" for stage, value in stage_seconds.items())
        )
    parts += [f"- deviation: {d}" for d in deviations + result.deviations]
    if ctx.judge is not None and bench.needs_judge and ctx.judge.kind == "local":
        parts.append(
            "- deviation: the judge is a local model, not the benchmark's GPT-4 judge: the number is not "
            "comparable with published leaderboards"
        )
    if ctx.judge is not None and bench.needs_judge and ctx.judge.kind == "local" and bench.name != "alpaca_eval":
        parts.append(
            "- note: a local judge's new tokens are capped so that prompt + judgment fit its context "
            "(alignax/evaluate/run/judging.py LocalChatBackend)"
        )
    parts += [f"- note: {n}" for n in result.notes]
    parts += ["\n## Files\n"] + [f"- {kind}: `{path}`" for kind, path in result.files.items()]
    return "\n".join(parts) + "\n"


def plot(result: Result, path: pathlib.Path, *, title: str) -> pathlib.Path:
    """Each metric as a point with its interval (one row per metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(result.metrics)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * len(metrics)), dpi=110)
    for y, m in enumerate(metrics):
        if math.isfinite(m.value):
            err = None
            if math.isfinite(m.lower) and math.isfinite(m.upper):
                err = [[m.value - m.lower], [m.upper - m.value]]
            ax.errorbar([m.value], [y], xerr=err, fmt="o", color="tab:blue", capsize=4)
            ax.annotate(
                _number(m.value), (m.value, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
            )
        else:
            ax.annotate("n/a", (0.5, y), xycoords=("axes fraction", "data"), ha="center", fontsize=8)
    ax.set_yticks(range(len(metrics)), [m.name for m in metrics])
    ax.set_ylim(-0.7, len(metrics) - 0.3)
    ax.invert_yaxis()
    subset = "" if result.n_items >= result.n_benchmark else f" (subset {result.n_items}/{result.n_benchmark})"
    ax.set_title(title + subset, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(ctx: RunContext, bench: Benchmark, result: Result) -> dict[str, pathlib.Path]:
    """report.md and report.png in the workdir (+ the AlpacaEval leaderboard files)."""
    paths = {"markdown": ctx.path("report.md"), "chart": ctx.path("report.png")}
    files.write_atomic(paths["markdown"], markdown(ctx, bench, result))
    plot(result, paths["chart"], title=f"{bench.title}: {ctx.model_name}")
    if bench.name == "alpaca_eval":
        from alignax.evaluate import report as leaderboard

        written = leaderboard.write_report(
            {ctx.model_name: _leaderboard_metrics(result.details["metrics"])},
            ctx.directory("leaderboard"),
            title="AlpacaEval 2",
        )
        paths.update({f"leaderboard_{kind}": path for kind, path in written.items()})
    return paths


def _leaderboard_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
