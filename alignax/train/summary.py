"""The table printed at the end of a run: final train and eval metrics, and where the outputs went."""

from __future__ import annotations

import os

# Shown first when present; the rest follow alphabetically.
_FIRST = ("loss", "grad_norm", "rewards/accuracies", "rewards/margins", "learning_rate", "num_tokens")


def _rows(metrics: dict) -> list[tuple[str, float]]:
    first = [(k, metrics[k]) for k in _FIRST if k in metrics]
    rest = sorted((k, v) for k, v in metrics.items() if k not in _FIRST and k != "nonfinite")
    return first + rest


def render(summary: dict, workdir: str) -> str:
    """A plain-text table of `summary` (as `alignax.train.loop.train` returns it)."""
    lines = [
        f"Run summary: {summary['final_step']} steps"
        + (f" in {summary['wall_time_s']:.0f} s" if "wall_time_s" in summary else "")
    ]
    for title, metrics in (
        ("train (last logged step)", summary.get("train") or {}),
        ("eval", summary.get("eval") or {}),
    ):
        if not metrics:
            continue
        lines.append(f"  {title}")
        for key, value in _rows(metrics):
            lines.append(f"    {key:32s} {value:>14.6g}")
    lines.append("  outputs")
    for name, meaning in (
        ("metrics.jsonl", "metrics per step"),
        ("tensorboard", "TensorBoard events"),
        ("checkpoints", "Orbax checkpoints (rerun the command to resume)"),
        ("export", "Hugging Face folder of the final model"),
        ("curves.png", "loss curves"),
        ("summary.json", "this summary"),
    ):
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            lines.append(f"    {path:48s} {meaning}")
    return "\n".join(lines)
