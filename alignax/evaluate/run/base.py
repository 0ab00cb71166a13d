"""The shape of a benchmark in `evaluate run`, its result, and a cluster bootstrap for intervals."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from alignax import files
from alignax.evaluate.run.context import RunContext
from alignax.evaluate.run.generation import GenerationSettings


@dataclasses.dataclass(frozen=True)
class Metric:
    """One headline number with its interval (NaN where undefined)."""

    name: str
    value: float
    lower: float = float("nan")
    upper: float = float("nan")
    interval: str = ""  # how the interval is made, e.g. "95% bootstrap over prompts"


@dataclasses.dataclass
class Result:
    metrics: list[Metric]
    n_items: int  # prompts evaluated
    n_benchmark: int  # prompts in the full benchmark
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # official files written
    deviations: list[str] = dataclasses.field(default_factory=list)  # departures from the protocol


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One registry entry: `generate` writes the official answer files, `judge` the judgments,
    `score` reads them back through the existing metric code."""

    name: str
    title: str
    settings: GenerationSettings
    needs_judge: bool
    generate: Callable[[RunContext], dict[str, str]]
    judge: Callable[[RunContext], dict[str, str]]
    score: Callable[[RunContext], Result]
    reference: str  # paper / repository of the protocol


def bootstrap_interval(
    clusters: Sequence[Any],
    statistic: Callable[[Sequence[Any]], float],
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap of `statistic` over clusters (prompts) resampled with replacement.

    Rounds whose statistic is NaN (e.g. no parsable verdict drawn) are left out; (NaN, NaN) when
    fewer than two clusters or no round is defined.
    """
    if len(clusters) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(clusters), len(clusters))
        value = statistic([clusters[i] for i in idx])
        if value is not None and math.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def normal_interval(value: float, standard_error: float, *, z: float = 1.959964) -> tuple[float, float]:
    """value -/+ z * standard_error (NaN-safe)."""
    if not (math.isfinite(value) and math.isfinite(standard_error)):
        return float("nan"), float("nan")
    return value - z * standard_error, value + z * standard_error


def read_jsonl(path) -> list[dict[str, Any]]:
    """The objects of a JSONL file (`.gz` too); a bad line is an error naming the file and line."""
    from alignax.evaluate.cli import naming_file

    with naming_file(path):
        return [record for _, record in files.read_jsonl_records(path)]


def require(row: dict[str, Any], fields: Sequence[str], where: str) -> None:
    """A KeyError naming `where` (file:line) and the first missing field."""
    for field in fields:
        if field not in row:
            raise KeyError(f"{where}: missing field {field!r}")


def write_json(path, value: Any) -> None:
    """An official JSON file, written atomically (NaN written as null)."""
    from alignax import files

    files.write_atomic(path, json.dumps(json_safe(value), indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path, rows: Sequence[dict[str, Any]]) -> None:
    from alignax import files

    files.write_jsonl_atomic(path, [json_safe(r) for r in rows])


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
