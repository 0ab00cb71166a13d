"""WildBench v2 metrics: WB-Reward (pairwise, length penalty K) and WB-Score (pointwise).

Restated from allenai/WildBench `leaderboard/data_dir/_create_tables.py` (per-model tables) and
`_merge_results.py` (the three-reference mixture); protocol in docs/evaluation.md.

WB-Reward, one test model against one reference model, per item:
  the judge names a `winner` (a model id or "tie") and an `extent` (1 = slightly, 2 = much);
  outcome -> value: win_much +1, win +0.5, tie 0, lose -0.5, lose_much -1.
  Length penalty K (characters): a *slight* win of the test model becomes a tie when
  len(test) > len(ref) + K, and a slight loss becomes a tie when len(ref) > len(test) + K.
  K = -1 (any K < 0) disables the penalty (README's "K = inf"). Much better/worse never change.
  Items where either output ends with "... (truncated)" or is "[This model response is empty.]"
  are skipped, but still count in the overall denominator (total = number of items).
  reward = (win_much + 0.5 win - 0.5 lose - lose_much) / total
  per task group g: the same over the (non-skipped) items tagged g; an item counts in every
  group its tags map to (primary + secondary tags, de-duplicated).
  task_macro_reward = sum_g w_g reward_g / sum(all w)  (w: Creative 0.5, Planning & Reasoning
  1.25, Math & Data 1.0, Info/Advice 0.75, Coding 1.25; the divisor is always 4.75).
Three references (gpt4t, haiku, llama): mixture_of_rewards.K = (H + L + G)/3 x 100 and
  task_macro_reward.K = mean of the three task macros x 100.

WB-Score: the judge gives a 1-10 score per item.
  WB_score = (mean over ALL items of score - 5) * 2 * 10
  per group: (mean over non-truncated, non-empty items of the group - 5) * 2, macro as above x 10
  avg_len = mean characters over non-truncated, non-empty outputs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

OUTCOMES = ("win_much", "win", "tie", "lose", "lose_much")
OUTCOME_VALUE = {"win_much": 1.0, "win": 0.5, "tie": 0.0, "lose": -0.5, "lose_much": -1.0}

# WildBench's 12 tags merged into 5 task groups (`task_group_new` upstream).
TASK_GROUP_OF_TAG = {
    "Information seeking": "Information/Advice seeking",
    "Creative Writing": "Creative Tasks",
    "Coding & Debugging": "Coding & Debugging",
    "Reasoning": "Planning & Reasoning",
    "Editing": "Creative Tasks",
    "Math": "Math & Data Analysis",
    "Planning": "Planning & Reasoning",
    "Brainstorming": "Creative Tasks",
    "Role playing": "Creative Tasks",
    "Advice seeking": "Information/Advice seeking",
    "Data Analysis": "Math & Data Analysis",
    "Others": "Creative Tasks",
}
TASK_GROUP_WEIGHTS = {
    "Creative Tasks": 0.5,
    "Planning & Reasoning": 1.25,
    "Math & Data Analysis": 1.0,
    "Information/Advice seeking": 0.75,
    "Coding & Debugging": 1.25,
}
REFERENCES = {
    "gpt4t": "gpt-4-turbo-2024-04-09",
    "haiku": "claude-3-haiku-20240307",
    "llama": "Llama-2-70b-chat-hf",
}
TRUNCATED_SUFFIX = "... (truncated)"
EMPTY_OUTPUT = "[This model response is empty.]"


def task_groups_of(primary_tag: str, secondary_tags: Iterable[str]) -> list[str]:
    """Task groups of one WildBench item (primary + secondary tags, de-duplicated)."""
    groups = []
    for tag in [primary_tag, *secondary_tags]:
        if tag not in TASK_GROUP_OF_TAG:
            raise ValueError(f"unknown WildBench tag {tag!r}; known: {sorted(TASK_GROUP_OF_TAG)}")
        if TASK_GROUP_OF_TAG[tag] not in groups:
            groups.append(TASK_GROUP_OF_TAG[tag])
    return groups


def is_skipped_output(text: str) -> bool:
    """True for outputs WildBench leaves out of per-item statistics (truncated or empty)."""
    return text.endswith(TRUNCATED_SUFFIX) or text == EMPTY_OUTPUT


def pairwise_outcome(
    *,
    winner: str,
    extent: int,
    test_model: str,
    ref_model: str,
    test_length: int,
    ref_length: int,
    length_penalty_k: int,
) -> str:
    """One judged pair -> one of OUTCOMES, from the test model's side, with the K rule."""
    if winner == "tie":
        return "tie"
    if extent not in (1, 2):
        raise ValueError(f"extent must be 1 (slightly) or 2 (much), got {extent!r}")
    if winner == test_model:
        if extent == 2:
            return "win_much"
        # Why: a slight win bought with a much longer answer is what K is meant to discount.
        if length_penalty_k >= 0 and test_length > ref_length + length_penalty_k:
            return "tie"
        return "win"
    if winner == ref_model:
        if extent == 2:
            return "lose_much"
        if length_penalty_k >= 0 and ref_length > test_length + length_penalty_k:
            return "tie"
        return "lose"
    raise ValueError(
        f"winner {winner!r} is neither the test model {test_model!r}, the reference {ref_model!r}, nor 'tie'"
    )


def reward_from_counts(counts: Mapping[str, int], *, total: int | None = None) -> float:
    """(win_much + 0.5 win - 0.5 lose - lose_much) / total; total defaults to the count sum."""
    missing = [o for o in OUTCOMES if o not in counts]
    if missing:
        raise KeyError(f"outcome counts lack {missing}: {dict(counts)}")
    if total is None:
        total = sum(counts[o] for o in OUTCOMES)
    if total <= 0:
        raise ValueError(f"total must be positive, got {total} for counts {dict(counts)}")
    # Same summation order as upstream so the stored floats are reproduced bit for bit.
    value = (
        counts["win"] * 0.5
        + counts["win_much"] * 1
        + counts["tie"] * 0
        - counts["lose"] * 0.5
        - counts["lose_much"] * 1
    )
    return value / total


def task_macro(per_group: Mapping[str, float]) -> float:
    """sum_g w_g x_g / sum(all five weights): a group with no items contributes 0 (as upstream)."""
    unknown = set(per_group) - set(TASK_GROUP_WEIGHTS)
    if unknown:
        raise KeyError(f"unknown task groups {sorted(unknown)}; known {sorted(TASK_GROUP_WEIGHTS)}")
    for group, value in per_group.items():
        if not math.isfinite(value):
            raise ValueError(f"task group {group!r} has non-finite value {value}")
    return sum(per_group[g] * TASK_GROUP_WEIGHTS[g] for g in per_group) / sum(TASK_GROUP_WEIGHTS.values())


def aggregate_pairwise_counts(
    *, counts: Mapping[str, int], total: int, task_counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """Reward, per-group rewards and task macro from outcome counts (a pairwise-*.json row)."""
    task_rewards = {g: reward_from_counts(c) for g, c in task_counts.items()}
    return {
        "reward": reward_from_counts(counts, total=total),
        "task_categorized_rewards": task_rewards,
        "task_macro_reward": task_macro(task_rewards),
    }


def _reward_outputs(item: Any, where: str, *, test_model: str, ref_model: str) -> tuple[str, str]:
    """(test output, reference output) of one pairwise item, after checking its field types.

    `extent` must be an integer (1.7 or true would quietly become 1 under int()).
    """
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(item).__name__}")
    for key in ("winner", "extent", "model_outputs"):
        if key not in item:
            raise KeyError(f"{where}: missing field {key!r}")
    if not isinstance(item["winner"], str):
        raise ValueError(f"{where}: winner must be a model id or 'tie', got {item['winner']!r}")
    extent = item["extent"]
    if isinstance(extent, bool) or not (isinstance(extent, int) or (isinstance(extent, str) and extent.isdigit())):
        raise ValueError(f"{where}: extent must be an integer (1 slightly, 2 much), got {extent!r}")
    outputs = item["model_outputs"]
    if not isinstance(outputs, Mapping):
        raise ValueError(f"{where}: model_outputs must be an object {{model id: text}}, got {outputs!r:.80}")
    for model in (test_model, ref_model):
        if model not in outputs:
            raise KeyError(f"{where}: model_outputs has no {model!r} (has {sorted(map(str, outputs))})")
        if not isinstance(outputs[model], str):
            raise ValueError(f"{where}: model_outputs[{model!r}] must be a string, got {outputs[model]!r:.80}")
    return outputs[test_model], outputs[ref_model]


def wb_reward(
    items: Sequence[Mapping[str, Any]],
    *,
    test_model: str,
    ref_model: str,
    length_penalty_k: int = -1,
    task_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """WB-Reward of `test_model` against `ref_model` from per-item pairwise judgments.

    Each item needs `session_id`, `winner`, `extent` and `model_outputs` {model id: text}
    (the judgment files' format). `task_groups` maps session_id -> task groups (see
    `task_groups_of`); without it the per-group figures are omitted.
    Returns the keys of a `pairwise-<ref>-K=<K>.json` row.
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    task_counts: dict[str, dict[str, int]] = {}
    lengths = []
    for index, item in enumerate(items):
        where = f"item {index} (session_id={item.get('session_id')!r})"
        test_text, ref_text = _reward_outputs(item, where, test_model=test_model, ref_model=ref_model)
        if is_skipped_output(test_text) or is_skipped_output(ref_text):
            continue
        try:
            label = pairwise_outcome(
                winner=item["winner"],
                extent=int(item["extent"]),
                test_model=test_model,
                ref_model=ref_model,
                test_length=len(test_text),
                ref_length=len(ref_text),
                length_penalty_k=length_penalty_k,
            )
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        counts[label] += 1
        lengths.append(len(test_text))
        if task_groups is not None:
            if item["session_id"] not in task_groups:
                raise KeyError(f"{where}: no task tags for this session_id")
            for group in task_groups[item["session_id"]]:
                task_counts.setdefault(group, dict.fromkeys(OUTCOMES, 0))[label] += 1
    if not lengths:
        raise ValueError("no judged item left after skipping truncated/empty outputs")
    row: dict[str, Any] = {
        "model": test_model,
        **counts,
        "total": len(items),
        "avg_len": sum(lengths) / len(lengths),
        "K": length_penalty_k,
        "reward": reward_from_counts(counts, total=len(items)),
    }
    if task_groups is not None:
        row["task_categorized_results"] = task_counts
        row.update(aggregate_pairwise_counts(counts=counts, total=len(items), task_counts=task_counts))
    return row


def mixture_of_rewards(
    rows_by_reference: Mapping[str, Mapping[str, Any] | None], *, model: str, k: int
) -> dict[str, float]:
    """Merge one model's three reference rows into the leaderboard's `all_stat` keys (x100).

    `rows_by_reference` maps "haiku"/"llama"/"gpt4t" to that model's row of the pairwise table.
    A model has no row against itself as reference; upstream then uses 0, which is right (a
    model ties with itself). Any other missing row is an error, not a silent 0.
    """
    stat: dict[str, float] = {}
    values, macros = [], []
    for short in ("haiku", "llama", "gpt4t"):
        row = rows_by_reference.get(short)
        if row is None:
            if REFERENCES[short] != model:
                raise KeyError(f"model {model!r} has no row in the {short} table for K={k}")
            row = {
                "reward": 0,
                "task_macro_reward": 0,
                "task_categorized_rewards": dict.fromkeys(TASK_GROUP_WEIGHTS, 0),
            }
        stat[f"{short}_reward.K={k}"] = row["reward"] * 100
        stat[f"{short}_reward.task_macro.K={k}"] = row["task_macro_reward"] * 100
        for group in TASK_GROUP_WEIGHTS:
            stat[f"{short}_reward.{group}.K={k}"] = row["task_categorized_rewards"][group] * 100
        values.append(stat[f"{short}_reward.K={k}"])
        macros.append(stat[f"{short}_reward.task_macro.K={k}"])
    for group in TASK_GROUP_WEIGHTS:
        h, l, g = (stat[f"{s}_reward.{group}.K={k}"] for s in ("haiku", "llama", "gpt4t"))
        stat[f"mixture_of_rewards.{group}.K={k}"] = (h + l + g) / 3
    stat[f"mixture_of_rewards.K={k}"] = (values[0] + values[1] + values[2]) / 3
    stat[f"task_macro_reward.K={k}"] = (macros[0] + macros[1] + macros[2]) / 3
    return stat


def parse_score(value: Any, *, where: str) -> float:
    """A judge's 1-10 score (stored as a string) -> float; anything else is an error.

    Booleans are rejected: float(True) == 1.0 would pass a malformed judgment as a score of 1.
    """
    if isinstance(value, bool):
        raise ValueError(f"{where}: unparsable WB-Score {value!r}")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: unparsable WB-Score {value!r}") from None
    if not (1.0 <= score <= 10.0):
        raise ValueError(f"{where}: WB-Score {score} outside [1, 10]")
    return score


def wb_score(
    items: Sequence[Mapping[str, Any]], *, task_groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """WB-Score from per-item score judgments (fields `session_id`, `score`, `model_output`).

    Returns the keys of a `score.json` row: score (raw mean), adjusted_score ((mean-5)*2),
    avg_len, total and, with `task_groups`, task_categorized_scores and task_macro_score
    (both on the adjusted scale; the leaderboard shows them x10).
    """
    if not items:
        raise ValueError("no WB-Score items")
    scores, lengths = [], []
    by_group: dict[str, list[float]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"item {index}: expected an object, got {type(item).__name__}")
        where = f"item {index} (session_id={item.get('session_id')!r})"
        for key in ("score", "model_output"):
            if key not in item:
                raise KeyError(f"{where}: missing field {key!r}")
        score = parse_score(item["score"], where=where)
        scores.append(score)  # every item counts in the overall mean, truncated ones included
        output = item["model_output"]
        if not isinstance(output, str):
            raise ValueError(f"{where}: model_output must be a string, got {type(output).__name__}")
        if output.endswith(TRUNCATED_SUFFIX) or len(output) == 0:
            continue
        lengths.append(len(output))
        if task_groups is not None:
            if item.get("session_id") not in task_groups:
                raise KeyError(f"{where}: no task tags for this session_id")
            for group in task_groups[item["session_id"]]:
                by_group.setdefault(group, []).append(score)
    mean = sum(scores) / len(scores)
    row: dict[str, Any] = {
        "score": mean,
        "adjusted_score": (mean - 5) * 2,
        "total": len(items),
        "avg_len": sum(lengths) / len(lengths) if lengths else float("nan"),
    }
    if task_groups is not None:
        per_group = {g: (sum(v) / len(v) - 5) * 2 for g, v in by_group.items()}
        row["task_categorized_scores"] = per_group
        row["task_macro_score"] = row["adjusted_task_macro_score"] = task_macro(per_group)
    return row


# --------------------------------------------------------------------------------------- I/O
def read_json(path: str | pathlib.Path) -> Any:
    """JSON or gzipped JSON (`*.gz`)."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        try:
            return json.load(f)
        except (ValueError, EOFError, OSError) as error:  # bad JSON, bad UTF-8, bad gzip stream
            raise ValueError(f"{path}: invalid JSON ({error})") from None


def read_items(path: str | pathlib.Path) -> list[dict]:
    """A judgment file's items: a JSON list of objects (anything else names the file and item)."""
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {index}: expected an object, got {type(item).__name__}")
    return items


def read_task_groups(path: str | pathlib.Path) -> dict[str, list[str]]:
    """session_id -> task groups from a JSON/JSONL file of {id, primary_tag, secondary_tags}."""
    path = pathlib.Path(path)
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
        text = f.read()
    rows = (
        json.loads(text)
        if text.lstrip().startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    mapping = {}
    for line, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {line}: expected an object, got {type(row).__name__}")
        for key in ("id", "primary_tag", "secondary_tags"):
            if key not in row:
                raise KeyError(f"{path}: row {line} lacks {key!r}")
        if not isinstance(row["secondary_tags"], list) or isinstance(row["id"], (dict, list)):
            raise ValueError(f"{path}: row {line}: secondary_tags must be a list and id a scalar")
        try:
            mapping[row["id"]] = task_groups_of(row["primary_tag"], row["secondary_tags"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: row {line}: {error}") from None
    return mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", choices=["score", "reward"], help="WB-Score or WB-Reward")
    parser.add_argument("results", nargs="+", help="per-item judgment files (.json or .json.gz)")
    parser.add_argument("--tags", help="JSON/JSONL with id, primary_tag, secondary_tags (task macro)")
    parser.add_argument("--test-model", help="reward: the test model's id in model_outputs")
    parser.add_argument("--ref-model", help="reward: the reference model's id in model_outputs")
    parser.add_argument("--k", type=int, default=-1, help="reward: length penalty K (-1 = off)")


def run(args: argparse.Namespace) -> int:
    from alignax.evaluate.cli import naming_file

    if args.mode == "reward" and not (args.test_model and args.ref_model):
        raise SystemExit("reward mode needs --test-model and --ref-model")
    groups = None
    if args.tags:
        with naming_file(args.tags):
            groups = read_task_groups(args.tags)
    for path in args.results:
        with naming_file(path):
            items = read_items(path)
            if args.mode == "score":
                row = wb_score(items, task_groups=groups)
                row["WB_score"] = row["adjusted_score"] * 10
            else:
                row = wb_reward(
                    items,
                    test_model=args.test_model,
                    ref_model=args.ref_model,
                    length_penalty_k=args.k,
                    task_groups=groups,
                )
        print(json.dumps({"file": str(path), **row}))
    return 0
