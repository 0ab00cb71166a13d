"""An OpenAI-compatible chat-completions client for judges (stdlib urllib, no SDK).

POST {base_url}/chat/completions with {"model", "messages", **params}; reads
choices[0].message.content, choices[0].logprobs.content[0].top_logprobs and usage.

- Retries: timeouts, connection errors, HTTP 429 and 5xx, and malformed bodies (invalid JSON or
  no choices) are retried up to `max_retries` times with exponential backoff:
  delay_i = min(max_backoff_s, initial_backoff_s * multiplier**i), i = 0, 1, ..., times a
  jitter factor drawn uniformly from [1 - jitter, 1]; a 429's Retry-After header (seconds)
  raises the delay to that value, still capped at max_backoff_s. Other 4xx fail at once.
- Concurrency: at most `max_concurrency` requests in flight from this client (a semaphore, so it
  holds across `complete_many`'s thread pool and callers' own threads).
- Cache: one JSON file per request under `cache_dir`, named by sha256 of the canonical JSON of
  (model, messages, params); a hit makes no request and costs nothing.
- Usage: prompt/completion tokens, requests, retries, cache hits and cost (USD per 1M tokens).
- The API key is read from the environment variable `api_key_env` at request time. It is never
  stored on the client, in the cache, in usage records or in exception messages (server text
  quoted in errors is scrubbed of it).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import random
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class JudgeHTTPError(RuntimeError):
    """A request that failed for good (after retries, or a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0):
        super().__init__(message)
        self.status, self.attempts = status, attempts


class _Retryable(Exception):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclasses.dataclass(frozen=True)
class ChatCompletion:
    text: str
    top_logprobs: list[list[dict[str, Any]]]  # per generated token: [{"token", "logprob"}, ...]
    usage: dict[str, int]
    cached: bool
    response: dict[str, Any]  # the raw response body


@dataclasses.dataclass
class Usage:
    requests: int = 0  # successful HTTP requests (cache misses)
    attempts: int = 0  # all HTTP attempts, failed ones included
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class OpenAIChatClient:
    """Chat completions against an OpenAI-compatible endpoint; thread-safe."""

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 cache_dir: str | os.PathLike | None = None, timeout_s: float = 60.0,
                 max_retries: int = 6, initial_backoff_s: float = 1.0, backoff_multiplier: float = 2.0,
                 max_backoff_s: float = 60.0, jitter: float = 0.25, max_concurrency: int = 8,
                 usd_per_million_prompt_tokens: float = 0.0,
                 usd_per_million_completion_tokens: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else None
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.initial_backoff_s, self.backoff_multiplier = initial_backoff_s, backoff_multiplier
        self.max_backoff_s, self.jitter = max_backoff_s, jitter
        self.max_concurrency = max_concurrency
        self.prices = (usd_per_million_prompt_tokens, usd_per_million_completion_tokens)
        self._sleep, self._random = sleep, random.Random(seed)
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.usage = Usage()

    def __repr__(self) -> str:  # the key is never an attribute, so nothing to hide here
        return f"OpenAIChatClient(url={self.url!r}, model={self.model!r}, key from ${self.api_key_env})"

    # ------------------------------------------------------------------------------- helpers
    def cache_key(self, messages: Sequence[dict[str, str]], params: dict[str, Any]) -> str:
        """sha256 of the canonical JSON of (model, messages, params): the key never enters it."""
        canonical = json.dumps({"model": self.model, "messages": list(messages), "params": params},
                               sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based); see the module docstring."""
        delay = min(self.max_backoff_s, self.initial_backoff_s * self.backoff_multiplier ** attempt)
        delay *= 1.0 - self.jitter * self._random.random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise JudgeHTTPError(f"environment variable {self.api_key_env} is not set (the judge API key)")
        return key

    @staticmethod
    def _scrub(text: str, key: str) -> str:
        return text.replace(key, "***") if key else text

    def _cache_path(self, key: str) -> pathlib.Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _read_cache(self, key: str) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return None
        path = self._cache_path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["response"]
        except (json.JSONDecodeError, KeyError):
            return None  # a torn or foreign file is a miss, and is overwritten below

    def _write_cache(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        if self.cache_dir is None:
            return
        path = self._cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic replace: concurrent writers of the same key never leave a torn file.
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp",
                                         encoding="utf-8") as f:
            json.dump({"request": request, "response": response}, f, ensure_ascii=False)
        os.replace(f.name, path)

    # ------------------------------------------------------------------------------- requests
    def _post_once(self, body: bytes, key: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = self._scrub(error.read().decode("utf-8", "replace")[:300], key)
            if error.code in RETRYABLE_STATUS or error.code >= 500:
                retry_after = error.headers.get("Retry-After") if error.headers else None
                try:
                    retry_after = float(retry_after) if retry_after is not None else None
                except ValueError:
                    retry_after = None
                raise _Retryable(f"HTTP {error.code}: {detail}", status=error.code,
                                 retry_after=retry_after) from None
            raise JudgeHTTPError(f"{self.url}: HTTP {error.code}: {detail}", status=error.code,
                                 attempts=1) from None
        except (socket.timeout, TimeoutError) as error:
            raise _Retryable(f"timeout after {self.timeout_s}s ({type(error).__name__})") from None
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timeout after {self.timeout_s}s") from None
            raise _Retryable(f"connection error: {self._scrub(str(reason), key)}") from None
        try:
            parsed = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable(f"malformed JSON body: {self._scrub(raw[:200].decode('utf-8', 'replace'), key)!r}") from None
        if not isinstance(parsed, dict) or not parsed.get("choices"):
            raise _Retryable(f"response has no choices: {self._scrub(str(parsed)[:200], key)}")
        return parsed

    def _post_with_retries(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = self._api_key()
        body = json.dumps(payload).encode("utf-8")
        last: _Retryable | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.usage.retries += 1
                self._sleep(self.backoff_delay(attempt - 1, last.retry_after if last else None))
            with self._lock:
                self.usage.attempts += 1
            try:
                with self._slots:  # the concurrency limit covers only the request itself
                    return self._post_once(body, key)
            except _Retryable as error:
                last = error
            except JudgeHTTPError as error:
                error.attempts = attempt + 1
                raise
        raise JudgeHTTPError(f"{self.url}: giving up after {self.max_retries + 1} attempts; last "
                             f"error: {last}", status=last.status if last else None,
                             attempts=self.max_retries + 1)

    def complete(self, messages: Sequence[dict[str, str]], **params: Any) -> ChatCompletion:
        """One chat completion (from the cache when the same request was made before)."""
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {message!r}")
        cache_key = self.cache_key(messages, params)
        response = self._read_cache(cache_key)
        cached = response is not None
        if cached:
            with self._lock:
                self.usage.cache_hits += 1
        else:
            payload = {"model": self.model, "messages": list(messages), **params}
            response = self._post_with_retries(payload)
            usage = response.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            completion_tokens = int(usage.get("completion_tokens", 0))
            with self._lock:
                self.usage.requests += 1
                self.usage.prompt_tokens += prompt_tokens
                self.usage.completion_tokens += completion_tokens
                self.usage.cost_usd += (prompt_tokens * self.prices[0]
                                        + completion_tokens * self.prices[1]) / 1e6
            self._write_cache(cache_key, {"model": self.model, "messages": list(messages),
                                          "params": params}, response)
        return _to_completion(response, cached=cached)

    def complete_many(self, batch: Sequence[Sequence[dict[str, str]]], **params: Any) -> list[ChatCompletion]:
        """Completions for many conversations, in order, at most `max_concurrency` at a time."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda messages: self.complete(messages, **params), batch))


def _to_completion(response: dict[str, Any], *, cached: bool) -> ChatCompletion:
    choice = response["choices"][0]
    message = choice.get("message") or {}
    text = message.get("content")
    if text is None:
        text = choice.get("text", "")
    logprobs = choice.get("logprobs") or {}
    top = [list(entry.get("top_logprobs") or []) for entry in (logprobs.get("content") or [])]
    return ChatCompletion(text=text, top_logprobs=top, usage=dict(response.get("usage") or {}),
                          cached=cached, response=response)
