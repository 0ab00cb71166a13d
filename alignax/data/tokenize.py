"""Chat-template tokenization with assistant-only loss masks, and truncation policies.

Every task becomes `TokenizedExample`s: one or more token sequences ("sides": chosen/rejected,
N sampled responses, ...) that share a prompt, each with a loss mask that is 1 exactly on the
assistant tokens the objective scores.

For a prompt x (messages) and a response y (TRL's split, on text):
    prompt_text  = template(x, add_generation_prompt=True)          (transformers, tokenize=False)
    full_text    = template(x + [assistant: y])
    prompt_ids   = tokenize(prompt_text)                             (add_special_tokens=False)
    response_ids = tokenize(full_text[len(prompt_text):]), ending at the template's end-of-turn
so `prompt_ids` equal transformers' `apply_chat_template(x, add_generation_prompt=True)`, and
`prompt_ids + response_ids` equal `apply_chat_template(x + [y])` up to the formatting whitespace
the template prints after the end-of-turn token (SmolLM2's trailing "\\n"; it belongs to no
turn and is not scored) -- except where the tokenizer would merge characters across the prompt /
reply boundary (a reply starting with spaces), where the split form is what sampling produces.
When the template puts no special token after the reply, the tokenizer's EOS is appended so the
model learns to stop (as TRL does). The template's own BOS is kept; a doubled BOS is removed.

Truncation (TRL's DPOConfig semantics): the prompt is cut to `max_prompt_length` keeping its
end ("keep_end", the default: the question is at the end) or start ("keep_start"); then each
response is cut so prompt + response <= `max_length`. `over_long="drop"` drops such examples
instead, `"error"` raises; all three are counted in `TokenizedDataset.stats`.

Rows that cannot fit at all are never truncated silently; they follow the data policy `on_error`
(skipped and counted in `TokenizedDataset.report`, or a DataError naming file and row):
  - "no_room_for_response": after truncation no response (assistant) token is left, e.g. a prompt
    that fills `max_length` when `max_prompt_length` is not set;
  - "over_hard_cap": the untruncated prompt + response of a sequence is longer than the hard cap,
    `hard_cap_factor` x `max_length` tokens (default 8x; None turns it off; no cap without
    `max_length`). Truncating such a row (a pasted document, a broken concatenation, e.g. a
    100k-character prompt) would train on a small fragment of it, so it is treated as bad input.
If nothing is left after tokenization, that is a DataError naming the source files.

The tokenizer needs `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)`,
`encode(text, add_special_tokens=False)`, `decode(ids, skip_special_tokens=...)`,
`eos_token_id`, `bos_token_id`: alignax's Tokenizer or a
transformers tokenizer.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json

import numpy as np

from alignax.data import schemas
from alignax.data.errors import DataError, SkipReport, check_policy, handle

PROMPT_TRUNCATIONS = ("keep_end", "keep_start")
OVER_LONG_POLICIES = ("truncate", "drop", "error")

# CUT's judgment-conditioned instruction (wwxu21/CUT, METHODS.md section 7).
CUT_JUDGMENT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response to the instruction and the "
    "response should match the corresponding judgment.\n\n### Instruction:\n{instruction}\n\n"
    "### Judgment:\n{judgment}\n\n### Response:\n"
)


@dataclasses.dataclass(frozen=True)
class TruncationConfig:
    max_length: int | None = None  # cap on prompt + response tokens of each sequence
    max_prompt_length: int | None = None
    prompt_truncation: str = "keep_end"
    over_long: str = "truncate"
    hard_cap_factor: float | None = 8.0  # rows over hard_cap_factor x max_length tokens are bad input

    @property
    def hard_cap(self) -> int | None:
        """Longest untruncated prompt + response (tokens) that truncation may still cut to fit."""
        if self.max_length is None or self.hard_cap_factor is None:
            return None
        return int(self.hard_cap_factor * self.max_length)

    def __post_init__(self):
        if self.prompt_truncation not in PROMPT_TRUNCATIONS:
            raise ValueError(f"prompt_truncation must be one of {PROMPT_TRUNCATIONS}, got {self.prompt_truncation!r}")
        if self.over_long not in OVER_LONG_POLICIES:
            raise ValueError(f"over_long must be one of {OVER_LONG_POLICIES}, got {self.over_long!r}")
        if (
            self.max_length is not None
            and self.max_prompt_length is not None
            and self.max_prompt_length >= self.max_length
        ):
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be < max_length ({self.max_length})")
        if self.hard_cap_factor is not None and self.hard_cap_factor < 1:
            raise ValueError(f"hard_cap_factor must be >= 1 or None, got {self.hard_cap_factor}")


@dataclasses.dataclass(frozen=True)
class TokenizedSequence:
    input_ids: np.ndarray  # [T] int32
    loss_mask: np.ndarray  # [T] int32, 1 on scored (assistant) tokens
    prompt_length: int  # tokens before the first scored token

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def response_length(self) -> int:
        return int(self.loss_mask.sum())


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
    index: int  # position in the source dataset
    id: str | None
    sequences: tuple  # of TokenizedSequence, one per side
    scalars: dict  # per-example numbers: label, rewards [N], win_probs [N], score

    @property
    def lengths(self) -> tuple:
        return tuple(s.length for s in self.sequences)


@dataclasses.dataclass
class TokenizedDataset:
    task: str
    side_names: tuple
    examples: list
    stats: collections.Counter
    report: SkipReport
    fingerprint: str  # of (source examples, tokenizer, truncation): identical inputs, identical hash

    def __len__(self):
        return len(self.examples)


# ----------------------------------------------------------------------------- template rendering


class ChatTokenizer:
    """Renders chat messages with the template and splits prompt / response / assistant spans.

    As in TRL, the template is rendered to text, the text is split at the end of the generation
    prompt, and each part is tokenized on its own (`add_special_tokens=False`, as transformers'
    `apply_chat_template(tokenize=True)` does): prompt ids are then exactly the ids the model is
    given when it samples, whatever the tokenizer would merge across the boundary.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._special_cache: dict[int, bool] = {}
        self._ws_cache: dict[int, bool] = {}

    def render_text(self, messages, *, add_generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=add_generation_prompt, tokenize=False
        )
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, expected str")
        return text

    def encode(self, text: str, *, first: bool = False) -> list[int]:
        ids = [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)] if text else []
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if first and bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # template BOS + a BOS written into the text again: keep one
        return ids

    def render(self, messages, *, add_generation_prompt: bool) -> list[int]:
        return self.encode(self.render_text(messages, add_generation_prompt=add_generation_prompt), first=True)

    def _is_special(self, token: int) -> bool:
        if token not in self._special_cache:
            self._special_cache[token] = self.tokenizer.decode([token], skip_special_tokens=True) == ""
        return self._special_cache[token]

    def _is_whitespace(self, token: int) -> bool:
        if token not in self._ws_cache:
            self._ws_cache[token] = self.tokenizer.decode([token], skip_special_tokens=False).strip() == ""
        return self._ws_cache[token]

    def split_turn_end(self, continuation: list[int]) -> tuple[list[int], list[int]]:
        """(reply, trailing): the reply ends at the template's end-of-turn token; `trailing` is the
        formatting whitespace printed after it. Without an end-of-turn token, EOS is appended."""
        end = len(continuation)
        while end > 0 and self._is_whitespace(continuation[end - 1]) and not self._is_special(continuation[end - 1]):
            end -= 1
        if end > 0 and self._is_special(continuation[end - 1]):
            return continuation[:end], continuation[end:]
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return continuation + ([eos] if eos is not None else []), []

    def prompt_and_response(self, prompt, response: str, where: str) -> tuple[list[int], list[int]]:
        prompt_text = self.render_text(prompt, add_generation_prompt=True)
        full_text = self.render_text(
            tuple(prompt) + ({"role": "assistant", "content": response},), add_generation_prompt=False
        )
        if not full_text.startswith(prompt_text):
            raise DataError(
                "template_not_prefix",
                "the chat template's rendering of the prompt is not a prefix of prompt + response",
                where,
            )
        reply, _ = self.split_turn_end(self.encode(full_text[len(prompt_text) :]))
        return self.encode(prompt_text, first=True), reply

    def conversation(self, messages, where: str) -> tuple[list[int], list[int]]:
        """(ids, mask) for a whole conversation; mask is 1 on every assistant turn (reply and its
        end-of-turn token); whitespace after an end-of-turn is kept with mask 0, except at the end."""
        full = self.render_text(messages, add_generation_prompt=False)
        ids: list[int] = []
        mask: list[int] = []
        pos = 0
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render_text(messages[:i], add_generation_prompt=True)
            through = self.render_text(messages[: i + 1], add_generation_prompt=False)
            if not (through.startswith(before) and full.startswith(through) and len(before) >= pos):
                raise DataError(
                    "template_not_prefix",
                    f"the chat template is not prefix-consistent at message {i} (assistant)",
                    where,
                )
            context = self.encode(full[pos : len(before)], first=pos == 0)
            reply, trailing = self.split_turn_end(self.encode(full[len(before) : len(through)]))
            ids += context + reply + trailing
            mask += [0] * len(context) + [1] * len(reply) + [0] * len(trailing)
            pos = len(through)
        while mask and mask[-1] == 0:  # drop the formatting after the last reply
            ids.pop()
            mask.pop()
        return ids, mask


# ----------------------------------------------------------------------------- truncation


class _Truncator:
    def __init__(self, config: TruncationConfig, stats: collections.Counter):
        self.config = config
        self.stats = stats

    def prompt(self, ids: list[int], where: str) -> list[int]:
        cap = self.config.max_prompt_length
        if cap is None or len(ids) <= cap:
            return ids
        if self.config.over_long != "truncate":
            raise DataError("prompt_too_long", f"prompt has {len(ids)} tokens > max_prompt_length={cap}", where)
        self.stats["prompt_truncated"] += 1
        return ids[-cap:] if self.config.prompt_truncation == "keep_end" else ids[:cap]

    def check_hard_cap(self, length: int, where: str) -> None:
        cap = self.config.hard_cap
        if cap is not None and length > cap:
            raise DataError(
                "over_hard_cap",
                f"sequence has {length} tokens before truncation, over the hard cap "
                f"{cap} (= {self.config.hard_cap_factor:g} x max_length={self.config.max_length})",
                where,
            )

    def sequence(self, ids: list[int], mask: list[int], where: str) -> tuple[list[int], list[int]]:
        self.check_hard_cap(len(ids), where)
        cap = self.config.max_length
        if cap is None or len(ids) <= cap:
            return ids, mask
        if self.config.over_long != "truncate":
            raise DataError("too_long", f"sequence has {len(ids)} tokens > max_length={cap}", where)
        self.stats["response_truncated"] += 1
        return ids[:cap], mask[:cap]


def _sequence(ids, mask) -> TokenizedSequence:
    mask_arr = np.asarray(mask, np.int32)
    nz = np.flatnonzero(mask_arr)
    return TokenizedSequence(
        input_ids=np.asarray(ids, np.int32), loss_mask=mask_arr, prompt_length=int(nz[0]) if nz.size else len(ids)
    )


def format_few_shot_prompt(example: schemas.FewShotExample):
    """Serialize the user's few-shot preferences before the query (FSPO's context C_u)."""
    blocks = []
    for i, shot in enumerate(example.context, start=1):
        question = "\n".join(m["content"] for m in shot.prompt if m["role"] != "system")
        blocks.append(
            f"Example {i}\nPrompt: {question}\nPreferred response: {shot.chosen}\nRejected response: {shot.rejected}"
        )
    header = "Here are some of my past preferences between two responses:\n\n" + "\n\n".join(blocks)
    *earlier, last = example.prompt
    return tuple(earlier) + (
        {
            "role": last["role"],
            "content": f"{header}\n\nRespond to my new prompt the way I would prefer.\n\n{last['content']}",
        },
    )


def cut_judgment_prompt(prompt, judgment: str):
    *earlier, last = prompt
    return tuple(earlier) + (
        {"role": last["role"], "content": CUT_JUDGMENT_TEMPLATE.format(instruction=last["content"], judgment=judgment)},
    )


SIDE_NAMES = {
    "preference": ("chosen", "rejected"),
    "few_shot": ("chosen", "rejected"),
    "unpaired": ("completion",),
    "sft": ("conversation",),
    "judgment": ("plain", "judgment"),  # the response under x, and under CUT's judgment prompt
}


def side_names_for(task: str, examples) -> tuple:
    if task == "multi_sample":
        n = len(examples[0].responses) if examples else 0
        return tuple(f"response_{i}" for i in range(n))
    if task not in SIDE_NAMES:
        raise ValueError(
            f"task {task!r} has no tokenized form; tokenizable tasks: {', '.join(list(SIDE_NAMES) + ['multi_sample'])}"
        )
    return SIDE_NAMES[task]


def _tokenize_one(chat: ChatTokenizer, trunc: _Truncator, task: str, example, where: str, num_sides: int):
    def pair_sides(prompt, responses):
        prompt_ids = None
        sides = []
        for response in responses:
            p_ids, r_ids = chat.prompt_and_response(prompt, response, where)
            trunc.check_hard_cap(len(p_ids) + len(r_ids), where)
            prompt_ids = trunc.prompt(p_ids, where) if prompt_ids is None else prompt_ids
            ids, mask = trunc.sequence(prompt_ids + r_ids, [0] * len(prompt_ids) + [1] * len(r_ids), where)
            sides.append(_sequence(ids, mask))
        return tuple(sides)

    scalars = {}
    if task == "preference":
        sides = pair_sides(example.prompt, (example.chosen, example.rejected))
        scalars.update({k: np.float32(v) for k, v in (example.fields or {}).items()})
    elif task == "few_shot":
        sides = pair_sides(format_few_shot_prompt(example), (example.chosen, example.rejected))
    elif task == "unpaired":
        sides = pair_sides(example.prompt, (example.completion,))
        scalars["label"] = bool(example.label)
    elif task == "multi_sample":
        if len(example.responses) != num_sides:
            raise DataError(
                "bad_value", f"{len(example.responses)} responses, but this dataset has {num_sides} per prompt", where
            )
        sides = pair_sides(example.prompt, example.responses)
        if example.rewards is not None:
            scalars["rewards"] = np.asarray(example.rewards, np.float32)
        if example.win_probs is not None:
            scalars["win_probs"] = np.asarray(example.win_probs, np.float32)
        scalars.update({k: np.asarray(v, np.float32) for k, v in (example.fields or {}).items()})
    elif task == "judgment":
        plain = pair_sides(example.prompt, (example.response,))
        judged = pair_sides(cut_judgment_prompt(example.prompt, example.judgment), (example.response,))
        sides = plain + judged
        scalars["score"] = np.float32(np.nan if example.score is None else example.score)
    elif task == "sft":
        ids, mask = chat.conversation(example.messages, where)
        if (
            trunc.config.max_prompt_length is not None
            and mask.index(1) > trunc.config.max_prompt_length
            and trunc.config.over_long != "truncate"
        ):
            raise DataError(
                "prompt_too_long",
                f"first assistant turn starts after {mask.index(1)} tokens > max_prompt_length",
                where,
            )
        ids, mask = trunc.sequence(ids, mask, where)
        if not any(mask):
            raise DataError("no_room_for_response", "truncation removed every assistant token", where)
        sides = (_sequence(ids, mask),)
    else:
        raise ValueError(f"task {task!r} cannot be tokenized")
    for side in sides:
        if side.response_length == 0:
            raise DataError(
                "no_room_for_response",
                f"prompt fills max_length={trunc.config.max_length}: no response token left",
                where,
            )
    return sides, scalars


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of what determines token ids: the chat template, special ids, and ids of a probe text."""
    chat = ChatTokenizer(tokenizer)
    probe = chat.render(
        ({"role": "user", "content": "Fingerprint: héllo wörld 123 <tag> \t end."},), add_generation_prompt=True
    )
    parts = {
        "template": getattr(tokenizer, "chat_template", None),
        "vocab_size": getattr(tokenizer, "vocab_size", None),
        "bos": getattr(tokenizer, "bos_token_id", None),
        "eos": getattr(tokenizer, "eos_token_id", None),
        "probe": probe,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def examples_fingerprint(task: str, examples) -> str:
    h = hashlib.sha256(task.encode())
    for example in examples:
        h.update(json.dumps(schemas.example_to_record(example), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def tokenize_dataset(
    examples, *, task: str, tokenizer, truncation: TruncationConfig = TruncationConfig(), on_error: str = "error"
) -> TokenizedDataset:
    """Tokenize validated examples of `task`. Examples dropped by truncation are counted in
    `stats` ("dropped_prompt_too_long", "dropped_too_long"); other failures, including rows that
    cannot fit ("no_room_for_response", "over_hard_cap", module doc), follow `on_error`. Examples
    from `readers.load_dataset` are named by file and line; nothing left is a DataError."""
    check_policy(on_error)
    examples = getattr(examples, "examples", examples)
    locations = list(getattr(examples, "locations", []))
    sources = list(getattr(examples, "sources", []))
    examples = list(examples)
    if len(locations) != len(examples):
        locations = []
    chat = ChatTokenizer(tokenizer)
    stats: collections.Counter = collections.Counter()
    trunc = _Truncator(truncation, stats)
    report = SkipReport()
    side_names = side_names_for(task, examples)
    out = []
    for index, example in enumerate(examples):
        where = f"example {index}" + (f" (id {example.id!r})" if example.id is not None else "")
        if locations:
            where = f"{locations[index]} ({where})"
        try:
            sequences, scalars = _tokenize_one(chat, trunc, task, example, where, len(side_names))
        except DataError as error:
            if error.reason in ("prompt_too_long", "too_long") and truncation.over_long == "drop":
                stats[f"dropped_{error.reason}"] += 1
                continue
            if error.reason in ("prompt_too_long", "too_long") and truncation.over_long == "error":
                raise
            handle(error, on_error=on_error, report=report)
            continue
        out.append(TokenizedExample(index=index, id=example.id, sequences=sequences, scalars=scalars))
    stats["examples"] = len(out)
    if not out:
        dropped = {k: v for k, v in stats.items() if k.startswith("dropped_") and v}
        raise DataError(
            "no_examples",
            f"no example left after tokenization of {len(examples)} ({report.summary()}; {dropped or 'none dropped'})",
            ", ".join(sources) or "tokenize_dataset",
        )
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "examples": examples_fingerprint(task, examples),
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "truncation": dataclasses.asdict(truncation),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return TokenizedDataset(
        task=task, side_names=side_names, examples=out, stats=stats, report=report, fingerprint=fingerprint
    )
