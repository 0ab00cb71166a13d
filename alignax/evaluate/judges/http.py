"""An OpenAI-compatible chat-completions client for judges (stdlib http.client, no SDK).

POST {base_url}/chat/completions with {"model", "messages", **params}; reads
choices[0].message.content, choices[0].logprobs.content[0].top_logprobs and usage.

- Retries: timeouts, connection errors, HTTP 408/409/429 and 5xx, and malformed bodies (invalid
  JSON or a body that breaks the response schema, see `validate_response`) are retried up to
  `max_retries` times with exponential backoff:
  delay_i = min(max_backoff_s, initial_backoff_s * multiplier**i), i = 0, 1, ..., times a
  jitter factor drawn uniformly from [1 - jitter, 1]; a 429's Retry-After header (seconds)
  raises the delay to that value, still capped at max_backoff_s. Other 4xx fail at once.
  Giving up raises the named class of the last failure: `JudgeTimeoutError`,
  `MalformedResponseError` or plain `JudgeHTTPError`.
- Deadline: `timeout_s` is one total deadline per HTTP attempt, connect plus headers plus body.
  A watchdog shuts the socket down when it passes, so a server that drip-feeds one byte at a
  time cannot stretch an attempt (a per-read socket timeout would restart on every byte).
- Size cap: a body over `max_response_bytes` (declared or actually sent) is a
  `ResponseTooLargeError`, not retried: re-downloading an oversized body only wastes time.
- Concurrency: at most `max_concurrency` requests in flight from this client (a semaphore, so it
  holds across `complete_many`'s thread pool and callers' own threads).
- Cache: one JSON file per request under `cache_dir`, named by sha256 of the canonical JSON of
  (model, messages, params); a hit makes no request and costs nothing. Only responses that pass
  `validate_response` are written, and a cached file that fails it is a miss, so a malformed
  answer is never replayed by a rerun.
- Usage: prompt/completion tokens, requests, retries, cache hits and cost (USD per 1M tokens).

Credentials:
- The API key is read from the environment variable `api_key_env` at request time. It is never
  stored on the client, in the cache, in usage records or in exception messages (server text
  quoted in errors is scrubbed of it), and exceptions are raised `from None`.
- Redirects are never followed (any 3xx is a final `JudgeHTTPError`): the Authorization header
  must not reach another origin, and a POST body does not survive a 301/302 anyway. Point
  `base_url` at the final endpoint instead.
- A key is only sent over https, or over plain http to a loopback host (localhost, 127.0.0.0/8,
  ::1); any other plain-http `base_url` is refused at construction (`InsecureEndpointError`).
- Proxies from the environment (HTTPS_PROXY, ...) are not used: the client talks to `base_url`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import http.client
import ipaddress
import json
import math
import os
import pathlib
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from alignax import files

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20  # a chat completion with logprobs is kilobytes
_READ_CHUNK = 64 * 1024
_MAX_TOKEN_COUNT = 2**53  # usage counts above this are not token counts (and lose float precision)


class JudgeHTTPError(RuntimeError):
    """A request that failed for good (after retries, or a non-retryable status)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0):
        super().__init__(message)
        self.status, self.attempts = status, attempts


class JudgeTimeoutError(JudgeHTTPError):
    """Every attempt ran past its total deadline (`timeout_s`) or failed to connect in time."""


class MalformedResponseError(JudgeHTTPError):
    """The server's body is not a valid chat completion (bad JSON or schema); nothing was cached."""


class ResponseTooLargeError(JudgeHTTPError):
    """The body exceeded `max_response_bytes`; reading stopped there."""


class InsecureEndpointError(ValueError):
    """`base_url` would send the API key where it must not go (plain http off the machine)."""


class _Retryable(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        final: type[JudgeHTTPError] = JudgeHTTPError,
    ):
        super().__init__(message)
        self.status, self.retry_after, self.final = status, retry_after, final


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


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int
    target: str  # path (and query) sent in the request line


def _is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; no DNS look-up (a name could point anywhere)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(base_url: str) -> _Endpoint:
    """The chat-completions endpoint under `base_url`, refusing URLs that would leak the key."""
    parts = urllib.parse.urlsplit(base_url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not carry credentials; the key comes from api_key_env only")
    if parts.fragment:
        raise ValueError(f"base_url must not have a fragment, got {base_url!r}")
    if scheme == "http" and not _is_loopback(parts.hostname):
        raise InsecureEndpointError(
            f"refusing to send the API key over plain http to non-loopback host {parts.hostname!r}; "
            "use https (plain http is allowed only for localhost, 127.0.0.0/8 and ::1)"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"base_url has an invalid port: {base_url!r}") from None
    target = parts.path.rstrip("/") + "/chat/completions" + (f"?{parts.query}" if parts.query else "")
    return _Endpoint(scheme, parts.hostname, port, target)


# ------------------------------------------------------------------------------- response schema
def _fail(where: str, expected: str, value: Any) -> None:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise MalformedResponseError(f"response field {where} must be {expected}, got {shown}")


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_top_logprobs(entries: Any, where: str) -> None:
    if not isinstance(entries, list):
        _fail(where, "a list", entries)
    for j, candidate in enumerate(entries):
        here = f"{where}[{j}]"
        if not isinstance(candidate, dict):
            _fail(here, "an object", candidate)
        if not isinstance(candidate.get("token"), str):
            _fail(f"{here}.token", "a string", candidate.get("token"))
        logprob = candidate.get("logprob")
        if not _is_real(logprob) or logprob > 1e-6:  # log-probabilities are <= 0 (-inf allowed)
            _fail(f"{here}.logprob", "a number <= 0", logprob)


def _check_logprobs(logprobs: Any, where: str) -> None:
    if logprobs is None:
        return
    if not isinstance(logprobs, dict):
        _fail(where, "an object or null", logprobs)
    content = logprobs.get("content")
    if content is None:
        return
    if not isinstance(content, list):
        _fail(f"{where}.content", "a list or null", content)
    for i, entry in enumerate(content):
        here = f"{where}.content[{i}]"
        if not isinstance(entry, dict):
            _fail(here, "an object", entry)
        if entry.get("top_logprobs") is not None:
            _check_top_logprobs(entry["top_logprobs"], f"{here}.top_logprobs")


def _check_usage(usage: Any) -> None:
    if usage is None:
        return
    if not isinstance(usage, dict):
        _fail("usage", "an object or null", usage)
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_TOKEN_COUNT:
            _fail(f"usage.{name}", "a non-negative integer", value)


def validate_response(response: Any) -> None:
    """Raises MalformedResponseError unless `response` is a chat completion this module can read.

    Checked: choices is a non-empty list whose first item has a message object (content a
    string or null) or a string `text`; logprobs.content[*].top_logprobs[*] are {token: str,
    logprob: number <= 0}; usage token counts are non-negative integers. Checked before
    anything is counted or cached, so a bad body never surfaces as a raw TypeError later.
    """
    if not isinstance(response, dict):
        _fail("<body>", "a JSON object", response)
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        _fail("choices", "a non-empty list", choices)
    choice = choices[0]
    if not isinstance(choice, dict):
        _fail("choices[0]", "an object", choice)
    message = choice.get("message")
    if message is not None:
        if not isinstance(message, dict):
            _fail("choices[0].message", "an object", message)
        if message.get("content") is not None and not isinstance(message["content"], str):
            _fail("choices[0].message.content", "a string or null", message["content"])
    if "text" in choice and not isinstance(choice["text"], str):
        _fail("choices[0].text", "a string", choice["text"])
    if message is None and "text" not in choice:
        _fail("choices[0]", "an object with 'message' or 'text'", choice)
    _check_logprobs(choice.get("logprobs"), "choices[0].logprobs")
    _check_usage(response.get("usage"))


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows a float")
    return value


def parse_body(raw: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow a float are errors, not values."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


class OpenAIChatClient:
    """Chat completions against an OpenAI-compatible endpoint; thread-safe."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        cache_dir: str | os.PathLike | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 6,
        initial_backoff_s: float = 1.0,
        backoff_multiplier: float = 2.0,
        max_backoff_s: float = 60.0,
        jitter: float = 0.25,
        max_concurrency: int = 8,
        usd_per_million_prompt_tokens: float = 0.0,
        usd_per_million_completion_tokens: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {jitter}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be a positive integer, got {max_response_bytes!r}")
        self._endpoint = parse_endpoint(base_url)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else None
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.max_response_bytes = max_response_bytes
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
        canonical = json.dumps(
            {"model": self.model, "messages": list(messages), "params": params},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based); see the module docstring."""
        delay = min(self.max_backoff_s, self.initial_backoff_s * self.backoff_multiplier**attempt)
        delay *= 1.0 - self.jitter * self._random.random()
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_backoff_s)

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise JudgeHTTPError(f"environment variable {self.api_key_env} is not set (the judge API key)")
        # A header value with a control character or non-ASCII would make http.client raise an
        # error quoting the value, i.e. the key; refuse it here without quoting it.
        if not all(33 <= ord(c) < 127 for c in key):
            raise JudgeHTTPError(
                f"environment variable {self.api_key_env} holds whitespace, control or "
                "non-ASCII characters; an API key is printable ASCII"
            )
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
            response = parse_body(path.read_bytes())["response"]
            validate_response(response)
            return response
        except (OSError, ValueError, KeyError, TypeError, MalformedResponseError):
            return None  # a torn, foreign or malformed file is a miss, and is overwritten below

    def _write_cache(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        if self.cache_dir is None:
            return
        # Atomic replace: concurrent writers of the same key never leave a torn file.
        files.write_atomic(
            self._cache_path(key), json.dumps({"request": request, "response": response}, ensure_ascii=False)
        )

    # ------------------------------------------------------------------------------- requests
    def _read_capped(self, response: http.client.HTTPResponse, limit: int) -> bytes:
        """The body, stopping with ResponseTooLargeError as soon as it passes `limit` bytes."""
        declared = response.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise ResponseTooLargeError(
                f"{self.url}: response declares {int(declared)} bytes, over the limit max_response_bytes={limit}",
                status=response.status,
            )
        chunks, total = [], 0
        while True:
            chunk = response.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise ResponseTooLargeError(
                    f"{self.url}: response body exceeds max_response_bytes={limit}", status=response.status
                )

    def _connection(self) -> http.client.HTTPConnection:
        endpoint = self._endpoint
        if endpoint.scheme == "https":
            return http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=self.timeout_s)
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.timeout_s)

    def _exchange(self, body: bytes, key: str, *, error_limit: int = 4096) -> tuple[int, Any, bytes]:
        """One POST under a total deadline of `timeout_s`: (status, headers, body bytes).

        http.client follows no redirect by itself. The watchdog shuts the socket down at the
        deadline, which wakes a read blocked on a drip-feeding server; the per-operation socket
        timeout (also `timeout_s`) bounds the connect.
        """
        connection = self._connection()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = connection.sock
            if sock is not None:
                try:  # socket.socket.shutdown directly: SSLSocket.shutdown would unwrap TLS under a reader
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(self.timeout_s, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if expired.is_set():  # the deadline passed while connecting: the watchdog saw no socket
                raise TimeoutError("deadline passed during connect")
            connection.request(
                "POST",
                self._endpoint.target,
                body=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            response = connection.getresponse()
            if 200 <= response.status < 300:
                raw = self._read_capped(response, self.max_response_bytes)
            else:  # an error page: its first bytes are enough to quote
                raw = response.read(error_limit)
            if expired.is_set():
                raise TimeoutError("deadline passed while reading")
            return response.status, response.headers, raw
        except (OSError, http.client.HTTPException, ValueError) as error:
            # ValueError: an SSL socket read after the watchdog's shutdown ("closed or unwrapped").
            if expired.is_set() or isinstance(error, (socket.timeout, TimeoutError)):
                raise _Retryable(
                    f"no complete response within the {self.timeout_s}s deadline", final=JudgeTimeoutError
                ) from None
            reason = getattr(error, "reason", error)
            raise _Retryable(
                f"connection error: {type(error).__name__}: {self._scrub(str(reason), key)[:200]}"
            ) from None
        finally:
            watchdog.cancel()
            connection.close()

    def _post_once(self, body: bytes, key: str) -> dict[str, Any]:
        status, headers, raw = self._exchange(body, key)
        if 300 <= status < 400:
            location = self._scrub(str(headers.get("Location", "")), key)[:200]
            raise JudgeHTTPError(
                f"{self.url}: HTTP {status} redirect to {location!r} not followed: the "
                "client follows no redirects so the API key never leaves base_url's "
                "origin; set base_url to the final endpoint",
                status=status,
                attempts=1,
            )
        if not 200 <= status < 300:
            detail = self._scrub(raw.decode("utf-8", "replace")[:300], key)
            if status in RETRYABLE_STATUS or status >= 500:
                raise _Retryable(
                    f"HTTP {status}: {detail}",
                    status=status,
                    retry_after=_retry_after_seconds(headers.get("Retry-After")),
                )
            raise JudgeHTTPError(f"{self.url}: HTTP {status}: {detail}", status=status, attempts=1)
        try:
            parsed = parse_body(raw)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError, non-finite numbers
            shown = self._scrub(raw[:200].decode("utf-8", "replace"), key)
            raise _Retryable(f"malformed JSON body: {shown!r}", final=MalformedResponseError) from None
        except RecursionError:  # deeply nested arrays: not a chat completion either
            raise _Retryable("malformed JSON body: nested too deeply", final=MalformedResponseError) from None
        try:
            validate_response(parsed)
        except MalformedResponseError as error:
            raise _Retryable(self._scrub(str(error), key), final=MalformedResponseError) from None
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
        final = last.final if last else JudgeHTTPError
        raise final(
            f"{self.url}: giving up after {self.max_retries + 1} attempts; last error: {last}",
            status=last.status if last else None,
            attempts=self.max_retries + 1,
        )

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
            response = self._post_with_retries(payload)  # validated: usage counts are ints
            usage = response.get("usage") or {}
            prompt_tokens = usage.get("prompt_tokens") or 0
            completion_tokens = usage.get("completion_tokens") or 0
            with self._lock:
                self.usage.requests += 1
                self.usage.prompt_tokens += prompt_tokens
                self.usage.completion_tokens += completion_tokens
                self.usage.cost_usd += (prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1e6
            self._write_cache(cache_key, {"model": self.model, "messages": list(messages), "params": params}, response)
        return _to_completion(response, cached=cached)

    def complete_many(self, batch: Sequence[Sequence[dict[str, str]]], **params: Any) -> list[ChatCompletion]:
        """Completions for many conversations, in order, at most `max_concurrency` at a time."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda messages: self.complete(messages, **params), batch))


def _retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; dates, negatives and non-finite values are ignored."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _to_completion(response: dict[str, Any], *, cached: bool) -> ChatCompletion:
    """Reads a response that passed `validate_response` (so every access below is safe)."""
    choice = response["choices"][0]
    message = choice.get("message") or {}
    text = message.get("content")
    if text is None:
        text = choice.get("text", "")
    logprobs = choice.get("logprobs") or {}
    top = [list(entry.get("top_logprobs") or []) for entry in (logprobs.get("content") or [])]
    return ChatCompletion(
        text=text, top_logprobs=top, usage=dict(response.get("usage") or {}), cached=cached, response=response
    )
