"""Prompt sets of the loop and their per-iteration splits.

Sources: anything `alignax.data.readers.load_dataset(..., task="prompts")` reads (e.g.
builtin:prompts/train, a JSONL of {"id", "prompt"}), or `ifeval:SEED:N`, N IFEval-style prompts
composed by `alignax.evaluate.ifeval.prompts.make_prompts(N, SEED)`, whose records keep
`instruction_id_list` and `kwargs` for the rule oracle and the instruction-following metric.

SPPO, INPO and DNO each give iteration t its own slice of the prompt pool (METHODS.md §4–§6):
`iteration_split` takes slice t of size n, wrapping around when the pool is shorter.
"""

from __future__ import annotations

from typing import Any


def load_prompts(source: str, limit: int = 0) -> list[dict[str, Any]]:
    if source.startswith("ifeval:"):
        records = _ifeval(source)
    else:
        from alignax.data import readers

        loaded = readers.load_dataset(source, task="prompts")
        records = []
        for index, example in enumerate(loaded.examples):
            prompt = example.prompt
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            records.append({"id": str(example.id or f"{source}-{index}"), "prompt": text})
    return records[:limit] if limit else records


def _ifeval(source: str) -> list[dict[str, Any]]:
    from alignax.evaluate.ifeval.prompts import make_prompts

    try:
        _, seed, n = source.split(":")
        seed, n = int(seed), int(n)
    except ValueError:
        raise ValueError(f"prompt source {source!r}: expected ifeval:SEED:N") from None
    return [
        {
            "id": f"ifeval-{seed}-{r['key']}",
            "prompt": r["prompt"],
            "instruction_id_list": r["instruction_id_list"],
            "kwargs": r["kwargs"],
        }
        for r in make_prompts(n, seed)
    ]


def iteration_split(pool: list[dict], iteration: int, per_iteration: int) -> list[dict]:
    """Slice `iteration` (1-based) of `per_iteration` prompts; 0 = the whole pool every iteration."""
    if not per_iteration or per_iteration >= len(pool):
        return list(pool)
    start = (iteration - 1) * per_iteration
    return [pool[(start + i) % len(pool)] for i in range(per_iteration)]
