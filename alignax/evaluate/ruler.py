"""Ruler's Target Length Generation metrics: Precise Match (PM) and Flexible Match (FM).

Li et al., "Ruler: A Model-Agnostic Method to Control Generated Length" (EMNLP Findings 2024),
Geaming2002/Ruler.

Words are `\\w+` tokens (nltk RegexpTokenizer(r"\\w+"), i.e. `re.findall(r"\\w+", text)`).
A response of n words for target T is a PM hit when n lies in PM(T) and an FM hit when n lies
in FM(T); intervals are (lo, hi], lower bound exclusive:

  target  PM           FM           level
  10      (0, 20]      (0, 20]      0
  30      (20, 40]     (20, 40]     0
  50      (40, 60]     (40, 60]     0
  80      (70, 90]     (60, 100]    0
  150     (130, 170]   (100, 200]   1
  300     (280, 320]   (200, 400]   1
  500     (450, 550]   (400, 600]   1
  700     (630, 770]   (600, 800]   2
  >800    (800, inf)   (800, inf)   2

PM (FM) = 100 x hits / examples, per level and over all examples.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from alignax import files

TARGETS = ("10", "30", "50", "80", "150", "300", "500", "700", ">800")
# target -> ((PM lo, PM hi), (FM lo, FM hi), level); intervals are (lo, hi].
INTERVALS = {
    "10": ((0, 20), (0, 20), 0),
    "30": ((20, 40), (20, 40), 0),
    "50": ((40, 60), (40, 60), 0),
    "80": ((70, 90), (60, 100), 0),
    "150": ((130, 170), (100, 200), 1),
    "300": ((280, 320), (200, 400), 1),
    "500": ((450, 550), (400, 600), 1),
    "700": ((630, 770), (600, 800), 2),
    ">800": ((800, math.inf), (800, math.inf), 2),
}
WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of `\\w+` tokens (what nltk's RegexpTokenizer(r'\\w+') returns)."""
    if not isinstance(text, str):
        raise TypeError(f"response must be a string, got {type(text).__name__}")
    return len(WORD.findall(text))


def normalize_target(target: Any) -> str:
    """10 / "10" / "[MLT:10]" / ">800" / "more than 800" -> the canonical target key."""
    text = str(target).strip()
    if text.startswith("[MLT:") and text.endswith("]"):
        text = text[len("[MLT:") : -1]
    if text in ("more than 800", "800+"):
        text = ">800"
    if text not in INTERVALS:
        raise ValueError(f"unknown target length {target!r}; expected one of {TARGETS}")
    return text


def _inside(n: int, interval: tuple[float, float]) -> bool:
    lo, hi = interval
    return lo < n <= hi


def match(response: str, target: Any) -> dict[str, Any]:
    """Per-example word count, PM and FM hit and level."""
    key = normalize_target(target)
    n = count_words(response)
    pm, fm, level = INTERVALS[key]
    return {"target": key, "words": n, "pm": _inside(n, pm), "fm": _inside(n, fm), "level": level}


def target_length_scores(responses: Sequence[str], targets: Sequence[Any]) -> dict[str, Any]:
    """PM and FM (percent) per level ("level_0/1/2") and over all examples ("all")."""
    if len(responses) != len(targets):
        raise ValueError(f"{len(responses)} responses but {len(targets)} targets")
    if not responses:
        raise ValueError("no examples")
    per_example = [match(r, t) for r, t in zip(responses, targets)]
    result: dict[str, Any] = {}
    groups = {"all": per_example}
    for level in (0, 1, 2):
        groups[f"level_{level}"] = [e for e in per_example if e["level"] == level]
    for name, examples in groups.items():
        n = len(examples)
        result[name] = {
            "n": n,
            "pm": 100.0 * sum(e["pm"] for e in examples) / n if n else float("nan"),
            "fm": 100.0 * sum(e["fm"] for e in examples) / n if n else float("nan"),
        }
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("generations", help="JSONL with a response field and a target field")
    parser.add_argument("--response-key", default="output")
    parser.add_argument("--target-key", default="TargetLength")


def run(args: argparse.Namespace) -> int:
    responses, targets = [], []
    for line_number, row in files.read_jsonl_records(args.generations):
        for key in (args.response_key, args.target_key):
            if key not in row:
                raise KeyError(f"{args.generations}:{line_number}: missing field {key!r}")
        responses.append(row[args.response_key])
        targets.append(row[args.target_key])
    result = target_length_scores(responses, targets)
    # Strict JSON: an empty level is null, not NaN.
    print(
        json.dumps(
            {
                k: {m: (None if isinstance(v, float) and math.isnan(v) else v) for m, v in d.items()}
                for k, d in result.items()
            },
            allow_nan=False,
        )
    )
    return 0
