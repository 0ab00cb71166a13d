"""The benchmarks `evaluate run` knows, by name (one module and one registry entry each)."""

from __future__ import annotations

import importlib

from alignax.evaluate.run.base import Benchmark

# name -> module defining BENCHMARK (imported on use).
MODULES = {
    "alpaca_eval": "alignax.evaluate.run.benchmarks.alpaca_eval",
    "arena_hard": "alignax.evaluate.run.benchmarks.arena_hard",
    "mt_bench": "alignax.evaluate.run.benchmarks.mt_bench",
    "ifeval": "alignax.evaluate.run.benchmarks.ifeval",
}


def get(name: str) -> Benchmark:
    if name not in MODULES:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(MODULES)}")
    return importlib.import_module(MODULES[name]).BENCHMARK
