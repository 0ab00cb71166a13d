"""Engine events -> OpenAI's JSON shapes (chat.completion, text_completion and their stream chunks).

Log-probs: chat uses {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}, legacy
completions use {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}.
A token's string is decode([id]) (a byte-level token that is part of a multi-byte character
decodes to U+FFFD on its own, as in other servers); `bytes` are that string's UTF-8 bytes.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any, Sequence

from alignax.serve.sequences import Event, TokenInfo

_FLOOR = -9999.0  # JSON has no -inf; a log-prob is never below this in practice


def new_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


class TokenStrings:
    """Cached decode([id]) of single tokens."""

    def __init__(self, tokenizer):
        self._decode = functools.lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))

    def __call__(self, token_id: int) -> str:
        return self._decode(int(token_id))


def _lp(x: float) -> float:
    return max(float(x), _FLOOR)


def chat_logprobs(tokens: Sequence[TokenInfo], top: int, strings: TokenStrings) -> dict[str, Any]:
    def entry(token_id, logprob):
        s = strings(token_id)
        return {"token": s, "logprob": _lp(logprob), "bytes": list(s.encode("utf-8"))}

    return {
        "content": [
            dict(entry(t.token_id, t.logprob), top_logprobs=[entry(i, lp) for i, lp in t.top[:top]]) for t in tokens
        ]
    }


def completion_logprobs(tokens: Sequence[TokenInfo], top: int, strings: TokenStrings, offset: int) -> dict[str, Any]:
    """Legacy format; text_offset counts characters of the completion from `offset`."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for t in tokens:
        s = strings(t.token_id)
        out["tokens"].append(s)
        out["token_logprobs"].append(_lp(t.logprob))
        out["top_logprobs"].append({strings(i): _lp(lp) for i, lp in t.top[:top]})
        out["text_offset"].append(offset)
        offset += len(s)
    return out


class ChoiceState:
    """What one choice has produced so far (text, tokens, finish) for a final body or the stream."""

    def __init__(self):
        self.text, self.tokens, self.finish_reason, self.completion_tokens, self.offset = "", [], None, 0, 0

    def add(self, event: Event) -> None:
        self.text += event.text
        self.tokens.extend(event.tokens)
        self.finish_reason = event.finish_reason
        self.completion_tokens = event.completion_tokens


def usage(prompts: Sequence[Sequence[int]], choices: Sequence[ChoiceState]) -> dict[str, int]:
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def final_body(
    kind: str, request_id: str, model: str, parsed, choices: Sequence[ChoiceState], strings: TokenStrings
) -> dict[str, Any]:
    """The non-streamed response."""
    out = []
    for index, c in enumerate(choices):
        if kind == "chat":
            logprobs = chat_logprobs(c.tokens, parsed.top_logprobs, strings) if parsed.logprobs else None
            out.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": logprobs,
                    "finish_reason": c.finish_reason,
                }
            )
        else:
            logprobs = completion_logprobs(c.tokens, parsed.top_logprobs, strings, 0) if parsed.logprobs else None
            out.append({"index": index, "text": c.text, "logprobs": logprobs, "finish_reason": c.finish_reason})
    return {
        "id": request_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": out,
        "usage": usage(parsed.prompts, choices),
    }


def stream_chunk(kind: str, request_id: str, model: str, choices: list[dict], **extra) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }


def event_choice(kind: str, event: Event, state: ChoiceState, parsed, strings: TokenStrings) -> dict | None:
    """One choice's entry in a stream chunk for this event, or None when it carries nothing."""
    wants_logprobs = parsed.logprobs and event.tokens
    if not event.text and not wants_logprobs and event.finish_reason is None:
        return None
    if kind == "chat":
        logprobs = chat_logprobs(event.tokens, parsed.top_logprobs, strings) if wants_logprobs else None
        delta = {"content": event.text} if event.text or wants_logprobs else {}
        return {"index": event.choice, "delta": delta, "logprobs": logprobs, "finish_reason": event.finish_reason}
    logprobs = None
    if wants_logprobs:
        logprobs = completion_logprobs(event.tokens, parsed.top_logprobs, strings, state.offset)
        state.offset = logprobs["text_offset"][-1] + len(logprobs["tokens"][-1])
    return {"index": event.choice, "text": event.text, "logprobs": logprobs, "finish_reason": event.finish_reason}
