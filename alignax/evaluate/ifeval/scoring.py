"""Strict and loose verdicts, IFEval accuracies and a rule-based preference oracle.

Zhou et al. (2023) §3 and google-research/instruction_following_eval `evaluation_lib.py`:
- strict: the checker on the response as given; an empty (whitespace-only) response follows nothing;
- loose: the response, or it without its first line, last line or both, each also with every '*'
  deleted; an instruction is followed when any of these eight non-empty variants passes;
- prompt-level accuracy: share of prompts whose every instruction is followed;
  instruction-level accuracy: share of all (prompt, instruction) pairs followed.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alignax.evaluate.ifeval.checkers import REGISTRY

# The one checker whose argument defaults to the prompt: a record without `prompt_to_repeat` asks
# for its whole prompt to be repeated.
_ARGUMENT_FROM_PROMPT = {"combination:repeat_prompt": "prompt_to_repeat"}


def resolve_kwargs(instruction_id: str, kwargs: Mapping[str, Any] | None, prompt: str | None = None) -> dict:
    """Validated keyword arguments of one instruction.

    None values are dropped first: IFEval's released records (and their Hugging Face copy, whose
    schema is the union of all keys) fill unused keys with null. Raises ValueError naming the id and
    the unknown, missing or malformed key.
    """
    spec = REGISTRY.get(instruction_id)
    if spec is None:
        raise ValueError(f"unknown instruction id {instruction_id!r}; known ids: {sorted(REGISTRY)}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"{instruction_id}: kwargs must be a mapping, got {type(kwargs).__name__}")
    given = {key: value for key, value in (kwargs or {}).items() if value is not None}
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise ValueError(f"{instruction_id}: unknown keyword argument(s) {unknown}; expected {sorted(spec.params)}")
    from_prompt = _ARGUMENT_FROM_PROMPT.get(instruction_id)
    if from_prompt and from_prompt not in given and prompt:
        given[from_prompt] = prompt
    missing = sorted(set(spec.params) - set(given))
    if missing:
        raise ValueError(f"{instruction_id}: missing keyword argument(s) {missing}")
    return {key: spec.params[key](instruction_id, key, value) for key, value in given.items()}


def _followed(instruction_id: str, arguments: dict, response: str) -> bool:
    if not isinstance(response, str):
        raise TypeError(f"response must be a string, got {type(response).__name__}")
    return bool(response.strip()) and REGISTRY[instruction_id].check(response, **arguments)


def check(instruction_id: str, kwargs: Mapping[str, Any] | None, response: str, prompt: str | None = None) -> bool:
    """Strict verdict: does `response` follow the instruction as written?"""
    return _followed(instruction_id, resolve_kwargs(instruction_id, kwargs, prompt), response)


def loose_variants(response: str) -> list[str]:
    """IFEval's eight loose variants: first/last/both lines removed, each with and without '*'."""
    lines = response.split("\n")
    trimmed = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return trimmed + [variant.replace("*", "") for variant in trimmed]


def check_loose(
    instruction_id: str, kwargs: Mapping[str, Any] | None, response: str, prompt: str | None = None
) -> bool:
    """Loose verdict: does any of the eight variants of `response` follow the instruction?"""
    arguments = resolve_kwargs(instruction_id, kwargs, prompt)
    return any(_followed(instruction_id, arguments, variant) for variant in loose_variants(response))


def _instructions(record: Mapping[str, Any]) -> list[tuple[str, Mapping | None]]:
    ids = record["instruction_id_list"]
    kwargs = record.get("kwargs") or [{}] * len(ids)
    if len(kwargs) != len(ids):
        raise ValueError(f"record has {len(ids)} instruction ids but {len(kwargs)} kwargs dicts")
    return list(zip(ids, kwargs))


def follow_list(record: Mapping[str, Any], response: str, loose: bool = False) -> list[bool]:
    """Per-instruction verdicts for one prompt record (IFEval input_data.jsonl format)."""
    verdict = check_loose if loose else check
    prompt = record.get("prompt")
    return [verdict(instruction_id, kwargs, response, prompt) for instruction_id, kwargs in _instructions(record)]


def score(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Prompt- and instruction-level accuracies, strict and loose, plus per-instruction accuracies.

    Each record holds `instruction_id_list`, `kwargs`, `prompt` and `response`.
    """
    records = list(records)
    if not records:
        raise ValueError("score needs at least one record")
    result: dict[str, Any] = {"num_prompts": len(records)}
    per_instruction: dict[str, dict[str, int]] = {}
    for mode in ("strict", "loose"):
        verdicts = [follow_list(record, record["response"], loose=mode == "loose") for record in records]
        flat = [followed for prompt_verdicts in verdicts for followed in prompt_verdicts]
        result[f"prompt_level_{mode}_acc"] = sum(all(v) for v in verdicts) / len(records)
        result[f"inst_level_{mode}_acc"] = sum(flat) / len(flat) if flat else 0.0
        result["num_instructions"] = len(flat)
        for record, prompt_verdicts in zip(records, verdicts):
            for instruction_id, followed in zip(record["instruction_id_list"], prompt_verdicts):
                tally = per_instruction.setdefault(instruction_id, {"strict": 0, "loose": 0})
                tally[mode] += followed
    counts = collections.Counter(name for record in records for name in record["instruction_id_list"])
    result["per_instruction"] = {
        instruction_id: {
            "count": counts[instruction_id],
            "strict_acc": tally["strict"] / counts[instruction_id],
            "loose_acc": tally["loose"] / counts[instruction_id],
        }
        for instruction_id, tally in sorted(per_instruction.items())
    }
    return result


def num_followed(prompt_record: Mapping[str, Any], response: str) -> int:
    """How many of the prompt's instructions `response` follows (strict)."""
    return sum(follow_list(prompt_record, response))


def preference(prompt_record: Mapping[str, Any], response_a: str, response_b: str) -> float:
    """Rule-based P(a > b): 1 if a follows more instructions (strict) than b, 0 if fewer, 0.5 on a tie.

    A verifiable-reward preference label in the spirit of RLVR-style instruction-following data
    (Lambert et al., 2024, "Tulu 3"), with IFEval's checkers as the verifier.
    """
    followed_a, followed_b = num_followed(prompt_record, response_a), num_followed(prompt_record, response_b)
    if followed_a == followed_b:
        return 0.5
    return 1.0 if followed_a > followed_b else 0.0


def preferences(
    prompt_records: Sequence[Mapping[str, Any]], responses_a: Sequence[str], responses_b: Sequence[str]
) -> list[float]:
    """`preference` over aligned lists of prompt records and response pairs."""
    if not len(prompt_records) == len(responses_a) == len(responses_b):
        raise ValueError("prompt_records, responses_a and responses_b must have the same length")
    return [preference(*triple) for triple in zip(prompt_records, responses_a, responses_b)]
