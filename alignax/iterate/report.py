"""Per-iteration lines, DIR/summary.json and DIR/metric.png of the on-policy loop."""

from __future__ import annotations

import json
import os

from alignax import files


def line(row: dict, metric: str) -> str:
    m = row["metrics"]
    value, se = m.get(metric, [float("nan"), float("nan")])
    win, win_se = m["oracle_winrate_vs_iter0"]
    parts = [
        f"iter {row['iteration']}: {metric} {value:.4f} ± {se:.4f}",
        f"oracle win rate vs iter 0 {win:.3f} ± {win_se:.3f}",
    ]
    if "tokens_sampled" in row:
        parts.append(f"{row['tokens_sampled']} tokens sampled, {row['num_records']} training records")
    parts.append(f"{row['wall_seconds']:.0f} s")
    return " | ".join(parts)


def write_summary(workdir: str, summary: dict) -> None:
    files.write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))


def plot(workdir: str, summary: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, metric = summary["iterations"], summary["metric"]
    x = [r["iteration"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, name in zip(axes, (metric, "oracle_winrate_vs_iter0")):
        values = [r["metrics"][name] for r in rows]
        ax.errorbar(
            x, [v[0] for v in values], yerr=[v[1] if v[1] == v[1] else 0 for v in values], marker="o", capsize=3
        )
        ax.set_xlabel("iteration")
        ax.set_xticks(x)
        ax.set_title(name)
    fig.suptitle(f"{summary['method']} ({summary['oracle']} oracle)")
    fig.tight_layout()
    path = os.path.join(workdir, "metric.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
