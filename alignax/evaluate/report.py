"""Leaderboard reports: a table (Markdown + CSV) and a chart (PNG) for several models.

Input is `{model: metrics}` as `alignax.evaluate.alpaca_eval.evaluate_files` returns it (or the
JSON its CLI writes with `--output`). The chart puts each model at its average output length and
draws its raw win rate, its length-controlled win rate and an arrow from one to the other: length
control moves long-output models down and short-output models up.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping, Optional, Sequence

import pandas as pd

__all__ = ["COLUMNS", "leaderboard_table", "markdown_table", "plot_winrates", "write_report"]

# (metric key, column header) in display order; absent metrics are left out of the table.
COLUMNS = (
    ("length_controlled_winrate", "LC win rate"),
    ("lc_standard_error", "LC SE"),
    ("win_rate", "win rate"),
    ("standard_error", "SE"),
    ("discrete_win_rate", "discrete win rate"),
    ("n_wins", "wins"),
    ("n_draws", "draws"),
    ("n_total", "n"),
    ("avg_length", "avg length"),
)


def leaderboard_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model, columns as in `COLUMNS`, best first (by LC win rate if present)."""
    if not results:
        raise ValueError("leaderboard_table: no models")
    rows = []
    for model, metrics in results.items():
        row = {"model": model}
        row.update({header: metrics[key] for key, header in COLUMNS if key in metrics})
        rows.append(row)
    table = pd.DataFrame(rows)
    headers = ["model"] + [h for _, h in COLUMNS if h in table.columns]
    table = table[headers]
    sort_by = "LC win rate" if "LC win rate" in table.columns else "win rate"
    if sort_by in table.columns:
        table = table.sort_values(sort_by, ascending=False, kind="stable")
    return table.reset_index(drop=True)


def _format(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, *, digits: int = 2) -> str:
    """A GitHub Markdown table; numbers right-aligned with `digits` decimals."""
    headers = list(table.columns)
    numeric = [pd.api.types.is_numeric_dtype(table[h]) for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_format(row[h], digits) for h in headers) + " |")
    return "\n".join(lines) + "\n"


def plot_winrates(table: pd.DataFrame, path: pathlib.Path, *, title: str = "AlpacaEval 2") -> pathlib.Path:
    """Win rate and LC win rate against average length, one arrow per model (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; writing files only
    import matplotlib.pyplot as plt

    for needed in ("win rate", "avg length"):
        if needed not in table.columns:
            raise ValueError(f"plot_winrates: the table has no {needed!r} column")
    has_lc = "LC win rate" in table.columns
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    ax.scatter(table["avg length"], table["win rate"], marker="o", color="tab:gray", label="win rate", zorder=3)
    if has_lc:
        ax.scatter(
            table["avg length"],
            table["LC win rate"],
            marker="D",
            color="tab:blue",
            label="length-controlled win rate",
            zorder=3,
        )
        for _, row in table.iterrows():
            ax.annotate(
                "",
                xy=(row["avg length"], row["LC win rate"]),
                xytext=(row["avg length"], row["win rate"]),
                arrowprops=dict(arrowstyle="->", color="tab:blue", alpha=0.5, lw=1),
            )
    for _, row in table.iterrows():
        y = row["LC win rate"] if has_lc else row["win rate"]
        ax.annotate(str(row["model"]), (row["avg length"], y), textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.axhline(50, color="k", lw=0.5, ls=":")
    ax.set_xlabel("average output length (characters)")
    ax.set_ylabel("win rate against the baseline (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100)
    ax.margins(x=0.15)  # room for the model names on the right
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    results: Mapping[str, Mapping[str, Any]], out_dir, *, title: str = "AlpacaEval 2", digits: int = 2
) -> dict[str, pathlib.Path]:
    """Writes leaderboard.md, leaderboard.csv and winrates.png under `out_dir`; returns their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = leaderboard_table(results)
    paths = {
        "markdown": out_dir / "leaderboard.md",
        "csv": out_dir / "leaderboard.csv",
        "chart": out_dir / "winrates.png",
    }
    paths["markdown"].write_text(f"# {title}\n\n" + markdown_table(table, digits=digits))
    table.to_csv(paths["csv"], index=False)  # full precision for re-use
    plot_winrates(table, paths["chart"], title=title)
    return paths


# ------------------------------------------------------------------------------------------------
# Command line: `python -m alignax.evaluate report ...`.


def add_arguments(parser) -> None:
    parser.description = "Leaderboard table (Markdown + CSV) and win-rate chart (PNG) for several models."
    parser.epilog = (
        "examples:\n"
        "  python -m alignax.evaluate report results/*/annotations.json.gz --df-gamed df_gamed.csv --out-dir out/\n"
        "  python -m alignax.evaluate alpaca_eval a.json b.json --output metrics.json && \\\n"
        "    python -m alignax.evaluate report --metrics metrics.json --out-dir out/\n"
    )
    parser.add_argument("annotations", nargs="*", help="AlpacaEval annotations.json[.gz] files, one per model")
    parser.add_argument(
        "--metrics",
        action="append",
        default=[],
        help="JSON {model: metrics} written by `alpaca_eval --output` (repeatable)",
    )
    parser.add_argument("--df-gamed", default=None, help="df_gamed.csv, for length-controlled win rates")
    parser.add_argument("--out-dir", required=True, help="folder for leaderboard.md, leaderboard.csv, winrates.png")
    parser.add_argument("--title", default="AlpacaEval 2")


def _read_metrics(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(pathlib.Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read metrics JSON: {e}") from e
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(f"{path}: expected a JSON object {{model: {{metric: value}}}}")
        results.update(data)
    return results


def run(args, *, results: Optional[Mapping[str, Mapping[str, Any]]] = None) -> int:
    from alignax.evaluate import alpaca_eval

    results = dict(_read_metrics(args.metrics)) if results is None else dict(results)
    if args.annotations:
        results.update(alpaca_eval.evaluate_files(args.annotations, df_gamed=args.df_gamed))
    if not results:
        raise ValueError("report: give annotation files or --metrics")
    paths = write_report(results, args.out_dir, title=args.title)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
