"""OpenAI request bodies -> validated prompts (token ids) and SamplingOptions, or an ApiError.

Checked the way OpenAI's API checks them: wrong types and out-of-range values are 400s naming the
parameter, an unknown model is a 404, prompt + max_tokens over the context is a 400 with code
`context_length_exceeded`. Parameters this server cannot honour (penalties, logit_bias, echo,
tools, ...) are rejected when set to anything but their neutral value, rather than silently
ignored. `ignore_eos` is accepted as an extension (vLLM's name): generation then runs to
max_tokens, which benchmarks need for equal work per request.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from alignax.sample.sampler import encode_prompt
from alignax.serve.sequences import MAX_TOP_LOGPROBS, SamplingOptions

MAX_STOP_STRINGS = 4
MAX_PROMPTS = 64
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's legacy completions default
_ROLES = ("system", "developer", "user", "assistant", "tool")
_MISSING = object()


class ApiError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    model_name: str
    max_context: int
    max_batch: int
    vocab_size: int


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    prompts: list[list[int]]
    options: SamplingOptions
    logprobs: bool
    top_logprobs: int
    include_usage: bool


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if "must" in message else None)


def _field(body, name, kinds, default, what):
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise ApiError(400, f"'{name}' must be {what}, got {type(value).__name__}", param=name, code="invalid_type")
    return value


def _number(body, name, default, low, high, *, low_open=False) -> float:
    value = float(_field(body, name, (int, float), default, "a number"))
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise _invalid(name, f"'{name}' must be in {bracket}{low}, {high}], got {value}")
    return value


def _integer(body, name, default, low, high=None) -> int | None:
    value = _field(body, name, (int,), default, "an integer")
    if value is not None and (value < low or (high is not None and value > high)):
        upper = "" if high is None else f" and <= {high}"
        raise _invalid(name, f"'{name}' must be >= {low}{upper}, got {value}")
    return value


def check_model(body: Any, limits: ServingLimits) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_type")
    model = body.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "'model' is required and must be a string", param="model", code="invalid_type")
    if model != limits.model_name:
        raise ApiError(
            404,
            f"The model `{model}` does not exist; this server serves `{limits.model_name}`",
            param="model",
            code="model_not_found",
        )


def _reject_unsupported(body: dict) -> None:
    neutral = {
        "presence_penalty": (0, 0.0),
        "frequency_penalty": (0, 0.0),
        "logit_bias": ({},),
        "echo": (False,),
        "suffix": ("",),
        "tools": ([],),
        "functions": ([],),
    }
    for name, allowed in neutral.items():
        value = body.get(name)
        if value is not None and not any(value == a and type(value) is type(a) for a in allowed):
            raise ApiError(400, f"'{name}' is not supported by this server", param=name, code="unsupported_parameter")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise ApiError(
            400,
            "only response_format {'type': 'text'} is supported",
            param="response_format",
            code="unsupported_parameter",
        )


def _stop_strings(body) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "'stop' must be a string or a list of strings", param="stop", code="invalid_type")
    if len(stop) > MAX_STOP_STRINGS:
        raise _invalid("stop", f"'stop' must have at most {MAX_STOP_STRINGS} strings, got {len(stop)}")
    return tuple(s for s in stop if s)


def _sampling(body, limits: ServingLimits, *, max_tokens_names, default_max_tokens, prompts) -> SamplingOptions:
    """The fields shared by both endpoints; also the context-length check."""
    _reject_unsupported(body)
    n = _integer(body, "n", 1, 1, limits.max_batch)
    best_of = _integer(body, "best_of", None, 1)
    if best_of is not None and best_of != n:
        raise ApiError(400, "'best_of' other than n is not supported", param="best_of", code="unsupported_parameter")
    max_tokens, name = None, max_tokens_names[0]
    for candidate in max_tokens_names:
        value = _integer(body, candidate, None, 1)
        if value is not None:
            max_tokens, name = value, candidate
    longest = max(len(p) for p in prompts)
    if max_tokens is None:
        max_tokens = default_max_tokens if default_max_tokens is not None else limits.max_context - longest
    if longest + max(max_tokens, 1) > limits.max_context:
        raise ApiError(
            400,
            f"This model's maximum context length is {limits.max_context} tokens. However, you "
            f"requested {longest + max_tokens} tokens ({longest} in the prompt, {max_tokens} in the "
            f"completion). Please reduce the prompt or the completion length.",
            param=name if max_tokens > 0 else "messages",
            code="context_length_exceeded",
        )
    stream = _field(body, "stream", (bool,), False, "a boolean")
    seed = _integer(body, "seed", None, -(2**63), 2**63 - 1)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        n=n,
        seed=None if seed is None else seed % 2**32,
        stop=_stop_strings(body),
        stream=stream,
        ignore_eos=_field(body, "ignore_eos", (bool,), False, "a boolean"),
    )


def _include_usage(body, stream: bool) -> bool:
    options = _field(body, "stream_options", (dict,), {}, "an object")
    return stream and bool(_field(options, "include_usage", (bool,), False, "a boolean"))


def _message_text(content, index: int) -> str:
    """A message's content: a string, or OpenAI's list of {"type": "text", "text": ...} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    raise ApiError(
        400,
        f"messages[{index}].content must be a string or a list of text parts",
        param=f"messages[{index}].content",
        code="invalid_type",
    )


def _messages(body) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages", code="invalid_type")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise ApiError(
                400,
                f"messages[{i}] must be an object with a role in {list(_ROLES)}",
                param=f"messages[{i}]",
                code="invalid_value",
            )
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _message_text(m.get("content"), i)})
    return out


def parse_chat(body: Any, limits: ServingLimits, tokenizer) -> ParsedRequest:
    """POST /v1/chat/completions: the conversation rendered with the model's chat template."""
    check_model(body, limits)
    messages = _messages(body)
    try:
        prompt = encode_prompt(tokenizer, messages)
    except Exception as e:  # the template is the checkpoint's code; its errors are the caller's input
        raise ApiError(400, f"the chat template could not render these messages: {e}", param="messages") from e
    options = _sampling(
        body,
        limits,
        max_tokens_names=("max_tokens", "max_completion_tokens"),
        default_max_tokens=None,
        prompts=[prompt],
    )
    logprobs = _field(body, "logprobs", (bool,), False, "a boolean")
    top = _integer(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if top and not logprobs:
        raise ApiError(400, "'top_logprobs' requires 'logprobs': true", param="top_logprobs", code="invalid_value")
    return ParsedRequest([prompt], options, logprobs, top, _include_usage(body, options.stream))


def _completion_prompts(body, limits: ServingLimits, tokenizer) -> list[list[int]]:
    prompt = body.get("prompt")
    is_ids = lambda p: isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
    if isinstance(prompt, str) or is_ids(prompt):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt or not all(isinstance(p, str) or is_ids(p) for p in prompt):
        raise ApiError(
            400,
            "'prompt' must be a string, a list of strings, a list of token ids or a list of "
            "token-id lists (none empty)",
            param="prompt",
            code="invalid_type",
        )
    if len(prompt) > MAX_PROMPTS:
        raise _invalid("prompt", f"'prompt' must hold at most {MAX_PROMPTS} prompts, got {len(prompt)}")
    out = []
    for p in prompt:
        if not isinstance(p, str) and not all(0 <= t < limits.vocab_size for t in p):
            raise _invalid("prompt", f"token ids must be in [0, {limits.vocab_size})")
        try:
            out.append(encode_prompt(tokenizer, p, chat_template=False))
        except ValueError as e:
            raise ApiError(400, str(e), param="prompt") from e
    return out


def parse_completion(body: Any, limits: ServingLimits, tokenizer) -> ParsedRequest:
    """POST /v1/completions: prompts encoded as they are (no chat template)."""
    check_model(body, limits)
    prompts = _completion_prompts(body, limits, tokenizer)
    options = _sampling(
        body,
        limits,
        max_tokens_names=("max_tokens",),
        default_max_tokens=COMPLETIONS_DEFAULT_MAX_TOKENS,
        prompts=prompts,
    )
    top = _integer(body, "logprobs", None, 0, MAX_TOP_LOGPROBS)
    return ParsedRequest(prompts, options, top is not None, top or 0, _include_usage(body, options.stream))
