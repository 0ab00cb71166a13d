"""MT-Bench metrics: judge-output parsing and score aggregation (FastChat `llm_judge`).

Restated from lm-sys/FastChat `fastchat/llm_judge/common.py` (parsing) and `show_result.py`
(aggregation); protocol in docs/evaluation.md.

Single-answer grading: the judge writes a 1-10 rating as "[[x]]"; FastChat falls back to "[x]"
when no "[[x]]" is present; a judgment with neither is an error (FastChat stores -1).
  first-turn score  = mean over turn-1 rows with a parsed rating
  second-turn score = mean over turn-2 rows with a parsed rating
  MT-Bench score    = mean over all parsed (question, turn) rows (equal to the mean of the two
                      turn means only when no row was dropped)
  per-category      = mean over the parsed rows of questions in that category.
Unparsable judgments are dropped from the means and *counted* (`n_unparsable`), never scored 0.

Pairwise grading: verdict "[[A]]", "[[B]]" or "[[C]]" (tie), looked for in that order; each pair
is judged twice with the answers swapped; a pair is a win/loss only when both games agree on a
non-tie winner, otherwise a tie. win_rate_adjusted = (win + 0.5 tie) / (win + loss + tie).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from alignax import files

# FastChat's patterns: an integer or decimal inside double (then single) square brackets.
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
TWO_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*),\s?(\d+\.?\d*)\]\]")
TWO_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*),\s?(\d+\.?\d*)\]")
UNPARSABLE = -1.0  # FastChat's marker for a judgment without a rating


def parse_rating(judgment: str) -> float:
    """The judge's rating: first "[[x]]", else first "[x]", else UNPARSABLE (-1)."""
    if not isinstance(judgment, str):
        raise TypeError(f"judgment must be a string, got {type(judgment).__name__}")
    match = ONE_SCORE_PATTERN.search(judgment) or ONE_SCORE_PATTERN_BACKUP.search(judgment)
    if not match:
        return UNPARSABLE
    return float(ast.literal_eval(match.group(1)))


def parse_two_ratings(judgment: str) -> tuple[float, float] | None:
    """ "[[a, b]]" (or "[a, b]") for the pairwise-with-scores prompt; None when absent."""
    match = TWO_SCORE_PATTERN.search(judgment) or TWO_SCORE_PATTERN_BACKUP.search(judgment)
    if not match:
        return None
    return float(ast.literal_eval(match.group(1))), float(ast.literal_eval(match.group(2)))


def parse_pairwise_verdict(judgment: str) -> str:
    """ "A", "B", "tie" ("[[C]]") or "error" — FastChat checks [[A]], then [[B]], then [[C]]."""
    if "[[A]]" in judgment:
        return "A"
    if "[[B]]" in judgment:
        return "B"
    if "[[C]]" in judgment:
        return "tie"
    return "error"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _row_score(item: Mapping[str, Any], where: str) -> float:
    """The rating of one single-answer judgment row, after checking its field types.

    Booleans are rejected: `True in (1, 2)` and `float(True)` would pass them as turn 1 / rating 1.
    """
    for key in ("model", "question_id", "turn"):
        if key not in item:
            raise KeyError(f"{where}: missing field {key!r}")
    if not isinstance(item["model"], str):
        raise ValueError(f"{where}: model must be a string, got {item['model']!r}")
    if isinstance(item["turn"], bool) or item["turn"] not in (1, 2):
        raise ValueError(f"{where}: turn must be 1 or 2, got {item['turn']!r}")
    if not isinstance(item["question_id"], (int, str)) or isinstance(item["question_id"], bool):
        raise ValueError(f"{where}: question_id must be an integer or string, got {item['question_id']!r}")
    if "score" in item:
        value = item["score"]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: score must be a number, got {value!r}")
        return float(value)
    if "judgment" in item:
        if not isinstance(item["judgment"], str):
            raise ValueError(f"{where}: judgment must be a string, got {item['judgment']!r:.80}")
        return parse_rating(item["judgment"])
    raise KeyError(f"{where}: needs 'score' or 'judgment'")


def single_scores(
    judgments: Sequence[Mapping[str, Any]],
    *,
    categories: Mapping[int | str, str] | None = None,
    min_rating: float = 1.0,
    max_rating: float = 10.0,
) -> dict[str, dict[str, Any]]:
    """Per-model MT-Bench scores from single-answer judgments.

    Each judgment needs `model`, `question_id`, `turn` (1 or 2) and either `score` (a number;
    -1 = unparsable as in FastChat's gpt-4_single.jsonl) or `judgment` (the judge's text).
    `categories` maps question_id -> category for the per-category means.
    Returns {model: {score, turn_1, turn_2, n_rows, n_unparsable, categories: {...}}}.
    """
    rows: dict[str, list[tuple[Any, int, float]]] = {}
    unparsable: dict[str, int] = {}
    for index, item in enumerate(judgments):
        if not isinstance(item, Mapping):
            raise ValueError(f"judgment {index}: expected an object, got {type(item).__name__}")
        where = f"judgment {index} (model={item.get('model')!r}, question_id={item.get('question_id')!r})"
        for key in ("model", "question_id", "turn"):
            if key not in item:
                raise KeyError(f"{where}: missing field {key!r}")
        score = _row_score(item, where)
        model = item["model"]
        rows.setdefault(model, [])
        unparsable.setdefault(model, 0)
        if score == UNPARSABLE:
            unparsable[model] += 1
            continue
        if math.isnan(score) or not (min_rating <= score <= max_rating):
            raise ValueError(f"{where}: rating {score} outside [{min_rating}, {max_rating}]")
        rows[model].append((item["question_id"], item["turn"], score))
    result = {}
    for model, model_rows in rows.items():
        entry: dict[str, Any] = {
            "score": _mean([s for _, _, s in model_rows]),
            "turn_1": _mean([s for _, t, s in model_rows if t == 1]),
            "turn_2": _mean([s for _, t, s in model_rows if t == 2]),
            "n_rows": len(model_rows),
            "n_unparsable": unparsable[model],
        }
        if categories is not None:
            per_category: dict[str, list[float]] = {}
            for question_id, _, score in model_rows:
                if question_id not in categories:
                    raise KeyError(f"model {model!r}: question_id {question_id!r} has no category")
                per_category.setdefault(categories[question_id], []).append(score)
            entry["categories"] = {c: _mean(v) for c, v in sorted(per_category.items())}
        result[model] = entry
    return result


def _pairwise_games(row: Any, where: str) -> tuple[str, str]:
    """(game 1 winner, game 2 winner) as model slots, after checking the row's fields.

    Unknown winner values are errors: they would otherwise count as ties.
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
    for key in ("model_1", "model_2"):
        if key not in row:
            raise KeyError(f"{where}: missing field {key!r}")
        if not isinstance(row[key], str):
            raise ValueError(f"{where}: {key} must be a string, got {row[key]!r}")
    slots = ("model_1", "model_2", "tie", "error")
    if "g1_winner" in row or "g2_winner" in row:
        games = (row.get("g1_winner"), row.get("g2_winner"))
        for name, value in zip(("g1_winner", "g2_winner"), games):
            if value not in slots:
                raise ValueError(f"{where}: {name} must be one of {list(slots)}, got {value!r}")
        return games
    for key in ("g1_judgment", "g2_judgment"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"{where}: {key} must be the judge's text, got {row.get(key)!r:.80}")
    to_slot_1 = {"A": "model_1", "B": "model_2", "tie": "tie", "error": "error"}
    to_slot_2 = {"A": "model_2", "B": "model_1", "tie": "tie", "error": "error"}
    return (
        to_slot_1[parse_pairwise_verdict(row["g1_judgment"])],
        to_slot_2[parse_pairwise_verdict(row["g2_judgment"])],
    )


def pairwise_win_rates(judgments: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Win/loss/tie per model from swapped-order pairwise judgments.

    Each row has `model_1`, `model_2`, and `g1_winner`/`g2_winner` in {"model_1", "model_2",
    "tie", "error"} (FastChat's stored form, already mapped back to model slots) — or
    `g1_judgment`/`g2_judgment` texts, where game 1 shows model_1 as A and game 2 shows it as B.
    Rows with an "error" game are dropped and counted in `n_error`.
    """
    stats: dict[str, dict[str, Any]] = {}

    def entry(model):
        return stats.setdefault(model, {"win": 0, "loss": 0, "tie": 0, "n_error": 0})

    for index, row in enumerate(judgments):
        g1, g2 = _pairwise_games(row, f"pairwise judgment {index}")
        m1, m2 = row["model_1"], row["model_2"]
        if "error" in (g1, g2):
            entry(m1)["n_error"] += 1
            entry(m2)["n_error"] += 1
            continue
        if g1 == "tie" or g1 != g2:
            entry(m1)["tie"] += 1
            entry(m2)["tie"] += 1
        else:
            winner, loser = (m1, m2) if g1 == "model_1" else (m2, m1)
            entry(winner)["win"] += 1
            entry(loser)["loss"] += 1
    for s in stats.values():
        n = s["win"] + s["loss"] + s["tie"]
        s["win_rate"] = s["win"] / n if n else float("nan")
        s["loss_rate"] = s["loss"] / n if n else float("nan")
        s["win_rate_adjusted"] = (s["win"] + 0.5 * s["tie"]) / n if n else float("nan")
    return stats


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
    """One JSON object per non-blank line; a bad line names the file and line (alignax.files)."""
    return [record for _, record in files.read_jsonl_records(path)]


def read_categories(question_file: str | pathlib.Path) -> dict[int, str]:
    """question_id -> category from FastChat's `question.jsonl`."""
    categories = {}
    for index, row in enumerate(read_jsonl(question_file)):
        for key in ("question_id", "category"):
            if key not in row:
                raise KeyError(f"{question_file}: question {index}: missing field {key!r}")
        if isinstance(row["question_id"], (dict, list)) or not isinstance(row["category"], str):
            raise ValueError(
                f"{question_file}: question {index}: question_id must be a scalar and category "
                f"a string, got {row['question_id']!r}, {row['category']!r}"
            )
        categories[row["question_id"]] = row["category"]
    return categories


def _json_safe(value: Any) -> Any:
    """NaN (a turn with no parsed rating) -> None, so the CLI prints strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("judgments", help="single-answer judgments JSONL (FastChat gpt-4_single.jsonl format)")
    parser.add_argument("--questions", help="question.jsonl, for per-category means")
    parser.add_argument("--pairwise", action="store_true", help="the file holds pairwise judgments")


def run(args: argparse.Namespace) -> int:
    from alignax.evaluate.cli import naming_file

    categories = None
    if args.questions and not args.pairwise:
        with naming_file(args.questions):
            categories = read_categories(args.questions)
    with naming_file(args.judgments):
        rows = read_jsonl(args.judgments)
        if args.pairwise:
            result = pairwise_win_rates(rows)
        else:
            result = single_scores(rows, categories=categories)
    for model, entry in sorted(result.items(), key=lambda kv: -kv[1].get("score", kv[1].get("win_rate_adjusted", 0))):
        print(json.dumps(_json_safe({"model": model, **entry}), allow_nan=False))
    return 0
