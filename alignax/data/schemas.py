"""One schema per task: validated, frozen example dataclasses parsed from Hugging Face formats.

Tasks and the record formats they accept (extra keys are ignored; `id` is optional and, when
present, must be unique within a dataset):

- "prompts" (on-policy sampling): `prompt` (a string or a message list).
- "preference" (DPO family, SimPO, ORPO, ...): `chosen`/`rejected` message lists that share a
  prompt prefix and each end in one assistant turn (UltraFeedback-binarized), or
  `prompt`/`chosen`/`rejected` strings, or `prompt` as a message list with `chosen`/`rejected`
  as strings or one-assistant-message lists (TRL's conversational format).
- "unpaired" (KTO): `prompt`, `completion`, `label` (bool: desirable or not), TRL's format.
- "sft": `messages`, a conversation that ends in an assistant turn.
- "multi_sample" (SPPO / on-policy sets): `prompt`, `responses` (N >= 2 strings) and `rewards`
  and/or `win_probs` (N numbers; win probabilities lie in [0, 1]).
- "judgment" (CUT): `prompt`, `response`, `judgment` (natural language), optional `score`.
- "few_shot" (FSPO): `context` (a list of the user's `{prompt, chosen, rejected}` preferences),
  the query `prompt`, `chosen`, `rejected`, optional `user_id`.

A prompt is always stored as a tuple of chat messages (`{"role", "content"}` dicts); a string
prompt becomes one user message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Callable

from alignax.data.errors import DataError

Messages = tuple  # tuple of {"role": str, "content": str} dicts

ROLES = ("system", "user", "assistant", "tool")


@dataclasses.dataclass(frozen=True)
class PromptExample:
    prompt: Messages
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class PreferenceExample:
    prompt: Messages
    chosen: str
    rejected: str
    id: str | None = None
    fields: dict | None = None  # per-example numbers a loss reads by name (e.g. SPPO's chosen_win_probs)


@dataclasses.dataclass(frozen=True)
class UnpairedExample:
    prompt: Messages
    completion: str
    label: bool
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class SFTExample:
    messages: Messages
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class MultiSampleExample:
    prompt: Messages
    responses: tuple
    rewards: tuple | None = None
    win_probs: tuple | None = None
    id: str | None = None
    fields: dict | None = None  # other per-response number lists a loss reads by name (CGPO's feasible)


@dataclasses.dataclass(frozen=True)
class JudgmentExample:
    prompt: Messages
    response: str
    judgment: str
    score: float | None = None
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class FewShotExample:
    context: tuple  # of PreferenceExample (the user's few-shot preferences)
    prompt: Messages
    chosen: str
    rejected: str
    user_id: str | None = None
    id: str | None = None


# ----------------------------------------------------------------------------- field checks


def _missing(record: dict, key: str, expected: str, where: str) -> DataError:
    close = difflib.get_close_matches(key, [k for k in record if isinstance(k, str)], n=1, cutoff=0.7)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return DataError(
        "missing_key",
        f"missing key {key!r} (expected keys: {expected}; found: {sorted(map(str, record))}){hint}",
        where,
    )


def _require(record: dict, key: str, expected: str, where: str) -> Any:
    if key not in record or record[key] is None:
        raise _missing(record, key, expected, where)
    return record[key]


def _string(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError("wrong_type", f"key {key!r} must be a string, got {type(value).__name__}", where)
    if not value.strip():
        raise DataError("empty_string", f"key {key!r} is an empty string", where)
    return value


def _messages(value: Any, key: str, where: str) -> Messages:
    if not isinstance(value, (list, tuple)):
        raise DataError("wrong_type", f"key {key!r} must be a list of messages, got {type(value).__name__}", where)
    if not value:
        raise DataError("empty_string", f"key {key!r} is an empty conversation", where)
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(
                "wrong_type", f"{key}[{i}] must be a {{'role', 'content'}} dict, got {message!r:.80}", where
            )
        role = message["role"]
        if role not in ROLES:
            raise DataError("bad_value", f"{key}[{i}] has role {role!r}; expected one of {ROLES}", where)
        out.append({"role": role, "content": _string(message["content"], f"{key}[{i}].content", where)})
    return tuple(out)


def _prompt(value: Any, key: str, where: str) -> Messages:
    """A prompt: a string (one user turn) or a message list not ending in an assistant turn."""
    if isinstance(value, str):
        return ({"role": "user", "content": _string(value, key, where)},)
    messages = _messages(value, key, where)
    if messages[-1]["role"] == "assistant":
        raise DataError("bad_value", f"key {key!r} (a prompt) ends with an assistant turn", where)
    return messages


def _completion(value: Any, key: str, where: str) -> str:
    """A completion: a string, or a list holding exactly one assistant message."""
    if isinstance(value, str):
        return _string(value, key, where)
    messages = _messages(value, key, where)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise DataError("no_final_assistant_turn", f"key {key!r} must be one assistant message after the prompt", where)
    return messages[0]["content"]


def _numbers(value: Any, key: str, n: int, where: str) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise DataError("wrong_type", f"key {key!r} must be a list of {n} numbers (one per response)", where)
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError("wrong_type", f"key {key!r} holds a non-finite or non-numeric value {v!r}", where)
        out.append(float(v))
    return tuple(out)


def _id(record: dict, where: str) -> str | None:
    value = record.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError("wrong_type", f"key 'id' must be a string or integer, got {type(value).__name__}", where)
    return str(value)


def _extra_fields(record: dict, known: set, where: str, per_response: int | None = None) -> dict | None:
    """Numeric keys beyond the schema's own, kept for losses that declare them as data inputs
    (`alignax.losses.info(name).inputs`). A number (or a bool, as 0/1) per example; with
    `per_response`, a list of that many numbers. Other extra keys are ignored, as before."""
    fields = {}
    for key, value in record.items():
        if key in known or not isinstance(key, str):
            continue
        if per_response is not None and isinstance(value, (list, tuple)):
            if value and all(isinstance(v, (bool, int, float)) for v in value):
                fields[key] = tuple(float(v) for v in _numbers([float(v) for v in value], key, per_response, where))
        elif isinstance(value, (bool, int, float)):
            fields[key] = _numbers([float(value)], key, 1, where)[0]
    return fields or None


# ----------------------------------------------------------------------------- parsers


def parse_prompt(record: dict, where: str = "") -> PromptExample:
    prompt = _require(record, "prompt", "prompt, optional id", where)
    return PromptExample(prompt=_prompt(prompt, "prompt", where), id=_id(record, where))


_PREFERENCE_KEYS = {"prompt", "chosen", "rejected", "id"}


def parse_preference(record: dict, where: str = "") -> PreferenceExample:
    expected = "chosen, rejected, optional prompt, optional id"
    chosen = _require(record, "chosen", expected, where)
    rejected = _require(record, "rejected", expected, where)
    prompt = record.get("prompt")
    if isinstance(chosen, (list, tuple)) and (prompt is None or isinstance(prompt, str)) and len(chosen) > 1:
        # UltraFeedback-binarized: full conversations sharing a prompt prefix.
        chosen_m, rejected_m = _messages(chosen, "chosen", where), _messages(rejected, "rejected", where)
        for key, conv in (("chosen", chosen_m), ("rejected", rejected_m)):
            if conv[-1]["role"] != "assistant":
                raise DataError(
                    "no_final_assistant_turn", f"conversation {key!r} does not end in an assistant turn", where
                )
        if chosen_m[:-1] != rejected_m[:-1] or len(chosen_m) < 2:
            raise DataError(
                "prompt_mismatch",
                "'chosen' and 'rejected' do not share the same prompt turns before the final assistant turn",
                where,
            )
        return PreferenceExample(
            prompt=chosen_m[:-1],
            chosen=chosen_m[-1]["content"],
            rejected=rejected_m[-1]["content"],
            id=_id(record, where),
            fields=_extra_fields(record, _PREFERENCE_KEYS, where),
        )
    if prompt is None:
        raise _missing(record, "prompt", expected, where)
    return PreferenceExample(
        prompt=_prompt(prompt, "prompt", where),
        chosen=_completion(chosen, "chosen", where),
        rejected=_completion(rejected, "rejected", where),
        id=_id(record, where),
        fields=_extra_fields(record, _PREFERENCE_KEYS, where),
    )


def parse_unpaired(record: dict, where: str = "") -> UnpairedExample:
    expected = "prompt, completion, label, optional id"
    prompt = _require(record, "prompt", expected, where)
    completion = _require(record, "completion", expected, where)
    label = _require(record, "label", expected, where)
    if not isinstance(label, bool):
        raise DataError("wrong_type", f"key 'label' must be a bool, got {type(label).__name__} {label!r}", where)
    return UnpairedExample(
        prompt=_prompt(prompt, "prompt", where),
        completion=_completion(completion, "completion", where),
        label=label,
        id=_id(record, where),
    )


def parse_sft(record: dict, where: str = "") -> SFTExample:
    messages = _messages(_require(record, "messages", "messages, optional id", where), "messages", where)
    if messages[-1]["role"] != "assistant":
        raise DataError(
            "no_final_assistant_turn",
            f"conversation 'messages' ends with a {messages[-1]['role']!r} turn, not an assistant turn",
            where,
        )
    return SFTExample(messages=messages, id=_id(record, where))


def parse_multi_sample(record: dict, where: str = "") -> MultiSampleExample:
    expected = "prompt, responses, rewards and/or win_probs, optional id"
    prompt = _prompt(_require(record, "prompt", expected, where), "prompt", where)
    responses = _require(record, "responses", expected, where)
    if not isinstance(responses, (list, tuple)) or len(responses) < 2:
        raise DataError("wrong_type", "key 'responses' must be a list of at least 2 responses", where)
    responses = tuple(_completion(r, f"responses[{i}]", where) for i, r in enumerate(responses))
    rewards = record.get("rewards")
    win_probs = record.get("win_probs")
    if rewards is None and win_probs is None:
        raise _missing(record, "rewards", expected, where)
    rewards = None if rewards is None else _numbers(rewards, "rewards", len(responses), where)
    if win_probs is not None:
        win_probs = _numbers(win_probs, "win_probs", len(responses), where)
        if any(not 0.0 <= p <= 1.0 for p in win_probs):
            raise DataError("bad_value", "key 'win_probs' holds a value outside [0, 1]", where)
    fields = _extra_fields(
        record, {"prompt", "responses", "rewards", "win_probs", "id"}, where, per_response=len(responses)
    )
    return MultiSampleExample(
        prompt=prompt, responses=responses, rewards=rewards, win_probs=win_probs, id=_id(record, where), fields=fields
    )


def parse_judgment(record: dict, where: str = "") -> JudgmentExample:
    expected = "prompt, response, judgment, optional score, optional id"
    prompt = _prompt(_require(record, "prompt", expected, where), "prompt", where)
    response = _completion(_require(record, "response", expected, where), "response", where)
    judgment = _string(_require(record, "judgment", expected, where), "judgment", where)
    score = record.get("score")
    if score is not None:
        score = _numbers([score], "score", 1, where)[0]
    return JudgmentExample(prompt=prompt, response=response, judgment=judgment, score=score, id=_id(record, where))


def parse_few_shot(record: dict, where: str = "") -> FewShotExample:
    expected = "context, prompt, chosen, rejected, optional user_id, optional id"
    context = _require(record, "context", expected, where)
    if not isinstance(context, (list, tuple)) or not context:
        raise DataError(
            "wrong_type", "key 'context' must be a non-empty list of {prompt, chosen, rejected} preferences", where
        )
    shots = []
    for i, shot in enumerate(context):
        if not isinstance(shot, dict):
            raise DataError("wrong_type", f"context[{i}] must be an object", where)
        shots.append(parse_preference(shot, f"{where} context[{i}]"))
    query = parse_preference({k: record[k] for k in ("prompt", "chosen", "rejected") if k in record}, where)
    user_id = record.get("user_id")
    return FewShotExample(
        context=tuple(shots),
        prompt=query.prompt,
        chosen=query.chosen,
        rejected=query.rejected,
        user_id=None if user_id is None else str(user_id),
        id=_id(record, where),
    )


PARSERS: dict[str, Callable[[dict, str], Any]] = {
    "prompts": parse_prompt,
    "preference": parse_preference,
    "unpaired": parse_unpaired,
    "sft": parse_sft,
    "multi_sample": parse_multi_sample,
    "judgment": parse_judgment,
    "few_shot": parse_few_shot,
}


def parse_record(task: str, record: Any, where: str = ""):
    """Validate one raw record for `task` and return its example dataclass (or raise DataError)."""
    if task not in PARSERS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(PARSERS)}")
    if not isinstance(record, dict):
        raise DataError("wrong_type", f"a record must be a JSON object, got {type(record).__name__}", where)
    return PARSERS[task](record, where)


def example_to_record(example) -> dict:
    """The canonical JSON-able form of an example (used for fingerprints and round trips)."""
    record = dataclasses.asdict(example)
    return {k: v for k, v in record.items() if v is not None}
