"""What flows between the HTTP threads and the engine thread: requests, their choices, events.

Text rules: a choice's text is decode(tokens without EOS), cut before the first stop string. For
streaming it is released as it grows, holding back a tail that could still become a stop string
and trailing U+FFFD (a partial UTF-8 character of a byte-level token), so the chunks always
concatenate to the final text. Events carry each token's raw log-prob and top alternatives.
"""

from __future__ import annotations

import dataclasses
import queue
import secrets
import threading
from typing import NamedTuple, Sequence

MAX_TOP_LOGPROBS = 20


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """One request's generation settings, already validated (see protocol.py)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    ignore_eos: bool = False
    top_logprobs: int = 0  # alternatives per token the response reports (the decode step skips its top-k at 0)


class TokenInfo(NamedTuple):
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (token id, logprob), best first


class Event(NamedTuple):
    """Progress of one choice: newly released text, new tokens (EOS excluded), finish reason."""

    choice: int
    text: str
    tokens: tuple[TokenInfo, ...]
    finish_reason: str | None
    completion_tokens: int  # generated so far, EOS included


class ErrorEvent(NamedTuple):
    message: str


@dataclasses.dataclass
class Choice:
    """Host-side state of one generated sequence."""

    index: int
    prompt_index: int
    token_ids: list[int] = dataclasses.field(default_factory=list)
    generated: int = 0
    released: str = ""
    finish_reason: str | None = None


class Request:
    """Prompts (token ids) x n choices; the engine thread puts Events on `events`."""

    def __init__(self, prompts: Sequence[Sequence[int]], options: SamplingOptions):
        self.prompts = [list(p) for p in prompts]
        self.options = options
        self.events: queue.Queue = queue.Queue()
        self.choices = [
            Choice(index=i * options.n + j, prompt_index=i) for i in range(len(self.prompts)) for j in range(options.n)
        ]
        self.cancelled = threading.Event()
        self.seed = options.seed if options.seed is not None else secrets.randbits(32)


def find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in text, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters may still change: a stop string's proper prefix, or U+FFFD."""
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    stripped = len(text) - len(text.rstrip("\ufffd"))
    return max(held, stripped)
