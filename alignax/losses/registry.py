"""Registry of objectives by name: `alignax.losses.get("simpo")`.

Each objective module decorates its functions with `@register("name", ...)`; importing
`alignax.losses` imports every objective module so the registry is complete.
"""
from __future__ import annotations

from typing import Callable

_REGISTRY: dict[str, Callable] = {}


def register(*names: str):
    """Register a loss function under one or more names (TRL's loss_type names where they overlap)."""

    def decorator(fn: Callable) -> Callable:
        for name in names:
            if name in _REGISTRY and _REGISTRY[name] is not fn:
                raise ValueError(f"loss name {name!r} registered twice ({_REGISTRY[name].__module__} and {fn.__module__})")
            _REGISTRY[name] = fn
        return fn

    return decorator


def get(name: str) -> Callable:
    """Return the objective registered under `name`; the error lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
