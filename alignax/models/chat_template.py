"""Rendering chat templates from checkpoints with a time and size budget.

A chat template is code that comes with a downloaded checkpoint. Jinja's sandbox already stops it
from reaching Python internals and caps ``range()`` at 100k items, but not from running nested
loops for hours or from building ``'a' * 10**10``. Every render here runs under a budget:

* time: a wall-clock deadline checked at every loop iteration (each ``for`` iterable is wrapped
  at compile time), call, attribute/item access, operator and filter, so a template that loops
  or recurses without writing any output still stops;
* size: ``*``, ``+``, ``**``, ``%``, ``~`` and the filters that can multiply sizes (``join``,
  ``replace``, ``indent``, any width argument) are checked *before* they build their result,
  every result is checked after, and the rendered output is counted chunk by chunk.

Breaking the budget raises ``ChatTemplateLimitError`` (a jinja2 ``SecurityError``) saying which
limit and by how much. Templates within the budget render exactly as transformers renders them
(see ``compile_template``).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import functools
import json
import re
import time
from typing import Any, Iterable, Iterator

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.runtime
import jinja2.sandbox
import jinja2.visitor

RENDER_TIME_LIMIT_S = 3.0  # legitimate templates render in milliseconds
MAX_OUTPUT_CHARS = 1 << 24  # 16 Mi characters: any one value built, and the rendered text
MAX_INT_BITS = 1 << 12  # integers a template computes (``2 ** 10 ** 10`` takes forever)
_DIGITS = re.compile(r"\d+")


class ChatTemplateLimitError(jinja2.exceptions.SecurityError):
    """A chat template exceeded its time or size budget."""


@dataclasses.dataclass
class _Budget:
    deadline: float
    time_limit_s: float
    max_chars: int
    written: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("alignax_chat_template_budget", default=None)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise ChatTemplateLimitError(f"chat template rendering exceeded its time limit of {budget.time_limit_s:g} s")


def _max_chars() -> int:
    budget = _BUDGET.get()
    return MAX_OUTPUT_CHARS if budget is None else budget.max_chars


def _check_size(size: int, what: str) -> None:
    if size > _max_chars():
        raise ChatTemplateLimitError(
            f"chat template: {what} would be {size} items/characters, over the limit of {_max_chars()}"
        )


def _checked_result(value: Any, what: str) -> Any:
    if isinstance(value, (str, bytes, list, tuple, dict)):
        _check_size(len(value), what)
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise ChatTemplateLimitError(f"chat template: {what} gives an integer over {MAX_INT_BITS} bits")
    return value


def _check_arguments(args: Iterable[Any], what: str) -> None:
    """Width/count arguments (``center(10**9)``, ``'{:>{w}}'``...) are capped like sizes; numbers
    spelled out inside format strings too."""
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool):
            _check_size(abs(arg), f"{what} with argument {arg}")


def _check_format_string(text: Any, what: str) -> None:
    if isinstance(text, str) and ("%" in text or "{" in text):
        for digits in _DIGITS.findall(text):
            if len(digits) > 9 or int(digits) > _max_chars():
                _check_size(int(digits), f"{what} with width {digits}")


def _sequence_length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Rejects an operation whose result would be too large, before computing it."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if _sequence_length(seq) is not None and isinstance(count, int):
                _check_size(_sequence_length(seq) * max(count, 0), "a repeated string or list ('*')")
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ChatTemplateLimitError(f"chat template: '*' gives an integer over {MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        if max(left.bit_length() - 1, 0) * right > MAX_INT_BITS or right > MAX_INT_BITS and abs(left) > 1:
            raise ChatTemplateLimitError(f"chat template: '**' gives an integer over {MAX_INT_BITS} bits")
    elif operator == "+":
        if _sequence_length(left) is not None and _sequence_length(right) is not None:
            _check_size(_sequence_length(left) + _sequence_length(right), "a concatenation ('+')")
    elif operator == "%":
        _check_format_string(left, "a '%' format")
        _check_arguments(right if isinstance(right, tuple) else (right,), "a '%' format")


def _check_string_method(method: Any, args: tuple, kwargs: dict) -> None:
    """Size checks for the str methods that can multiply sizes."""
    method = getattr(method, "__wrapped__", method)  # the sandbox wraps str.format
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if not isinstance(owner, str):
        return
    if name == "join" and args and isinstance(args[0], (list, tuple)):
        items = args[0]
        _check_size(sum(len(x) for x in items if isinstance(x, str)) + len(owner) * len(items), "str.join")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _check_replace(owner, args[0], args[1])
    elif name in ("format", "format_map"):
        _check_format_string(owner, "str.format")


def _check_replace(text: str, old: str, new: str) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    _check_size(len(text) + occurrences * max(len(new) - len(old), 0), "a replace")


def _limited_filter(name: str, filter_function):
    """Wraps one Jinja filter with the budget: deadline, width arguments, pre-checks for the
    filters that multiply sizes, and the size of its result."""

    @functools.wraps(filter_function)  # keeps jinja_pass_arg (pass_eval_context, ...)
    def limited(*args, **kwargs):
        _tick()
        values = [
            a for a in args if not isinstance(a, (jinja2.Environment, jinja2.nodes.EvalContext, jinja2.runtime.Context))
        ]
        _check_arguments(list(values[1:]) + list(kwargs.values()), f"filter {name!r}")
        if values:
            _precheck_filter(name, values, kwargs)
        return _checked_result(filter_function(*args, **kwargs), f"filter {name!r}")

    return limited


def _precheck_filter(name: str, values: list, kwargs: dict) -> None:
    subject = values[0]
    if name == "join" and isinstance(subject, (list, tuple)):
        separator = values[1] if len(values) > 1 else kwargs.get("d", "")
        total = sum(len(x) for x in subject if isinstance(x, str))
        _check_size(total + len(str(separator)) * len(subject), "filter 'join'")
    elif name == "replace" and isinstance(subject, str) and len(values) >= 3:
        _check_replace(subject, str(values[1]), str(values[2]))
    elif name == "indent" and isinstance(subject, str):
        width = values[1] if len(values) > 1 else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else int(width)
        _check_size(len(subject) + (subject.count("\n") + 1) * width, "filter 'indent'")
    elif name == "format":
        _check_format_string(subject, "filter 'format'")


class _GuardLoopsAndConcats(jinja2.visitor.NodeTransformer):
    """Compile-time rewrite: every ``for`` iterates through the budget's ticking iterator, and
    every ``~`` concatenation goes through a size check."""

    def visit_For(self, node: jinja2.nodes.For) -> jinja2.nodes.Node:
        self.generic_visit(node)
        node.iter = _environment_call("alignax_guarded_iter", node.iter, node.lineno)
        return node

    def visit_Concat(self, node: jinja2.nodes.Concat) -> jinja2.nodes.Node:
        self.generic_visit(node)
        return _environment_call("alignax_checked_concat", node, node.lineno)


def _environment_call(attribute: str, argument: jinja2.nodes.Expr, lineno: int) -> jinja2.nodes.Call:
    # An environment attribute, not a template variable: a template cannot shadow it.
    return jinja2.nodes.Call(
        jinja2.nodes.EnvironmentAttribute(attribute, lineno=lineno), [argument], [], None, None, lineno=lineno
    )


class LimitedSandboxedEnvironment(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """transformers' chat-template environment, with the render budget enforced (module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options):
        super().__init__(**options)
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}

    def _parse(self, source, name, filename):
        return _GuardLoopsAndConcats().visit(super()._parse(source, name, filename))

    def call_binop(self, context, operator, left, right):
        _tick()
        _check_binop(operator, left, right)
        return _checked_result(super().call_binop(context, operator, left, right), f"operator {operator!r}")

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's signature
        _tick()
        _check_arguments(list(args) + list(kwargs.values()), f"call to {getattr(__obj, '__name__', 'a function')}")
        _check_string_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return _checked_result(result, f"call to {getattr(__obj, '__name__', 'a function')}")

    def getattr(self, obj, attribute):
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        _tick()
        return super().getitem(obj, argument)

    @staticmethod
    def alignax_guarded_iter(iterable) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    @staticmethod
    def alignax_checked_concat(text):
        return _checked_result(text, "a '~' concatenation")


@functools.lru_cache(maxsize=16)
def compile_template(template: str) -> jinja2.Template:
    """Compiles a chat template the way transformers does (utils/chat_template_utils.py
    ``_compile_jinja_template``): trim_blocks, lstrip_blocks, loopcontrols, an HTML-unescaped
    ``tojson``, ``raise_exception`` and ``strftime_now``; in a LimitedSandboxedEnvironment."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters; transformers' does not.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = LimitedSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _limited_filter("tojson", tojson)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(template)
    except RecursionError as e:  # absurdly deep nesting in the source
        raise ChatTemplateLimitError("chat template is nested too deeply to compile") from e


def render(template: str, *, time_limit_s: float | None = None, max_chars: int | None = None, **variables) -> str:
    """The template rendered with ``variables`` under the budget; ChatTemplateLimitError when
    it runs past ``time_limit_s`` (default RENDER_TIME_LIMIT_S) or builds more than ``max_chars``
    (default MAX_OUTPUT_CHARS)."""
    time_limit_s = RENDER_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    budget = _Budget(
        deadline=time.monotonic() + time_limit_s,
        time_limit_s=time_limit_s,
        max_chars=MAX_OUTPUT_CHARS if max_chars is None else max_chars,
    )
    token = _BUDGET.set(budget)
    try:
        chunks = []
        for chunk in compile_template(template).generate(**variables):
            budget.written += len(chunk)
            if budget.written > budget.max_chars:
                raise ChatTemplateLimitError(f"chat template output exceeds {budget.max_chars} characters")
            _tick()
            chunks.append(chunk)
        return "".join(chunks)
    except RecursionError as e:  # a macro calling itself forever
        raise ChatTemplateLimitError("chat template recursed too deeply") from e
    finally:
        _BUDGET.reset(token)
