"""Registry of objectives by name, with what each one needs: `alignax.losses.info("simpo")`.

Each objective module registers its functions with `@register("name", ..., method=..., inputs=...,
hparams=..., config=...)`. The declaration is what the engine reads: which method of
`alignax.train.methods` turns a batch into the loss's keyword arrays (`inputs`), which
hyperparameters it accepts with their defaults (`hparams`), whether it needs a reference model,
and which config under configs/ trains it. The engine checks a config against it before anything
is traced (`alignax.train.validate`), so a wrong pairing is an error naming the key, never a
failure inside jit. Importing `alignax.losses` imports every objective module, so the registry is
complete.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Unset:
    """A hyperparameter with no default value (the loss decides, e.g. INPO's `tau`); `type` is what a
    command-line override is parsed as."""

    type: type


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """What an objective needs.

    name: the registered name.  fn: the pure loss function.
    method: the `alignax.train.methods` method that trains it (None while `pending`).
    inputs: the keyword arrays the method must pass: model-derived ones (`chosen_logps`, ...) and
      per-example data fields (`chosen_win_probs`, ...), which the data records carry under the same
      name (docs/batches.md).
    hparams: hyperparameter name -> default (an `Unset` where the loss has none).
    reference: True when the inputs include a reference model's log-probs.
    config: the config file whose entry point trains this loss, e.g. "configs/dpo.py", so that
      `python -m experiments.<stem> --config configs/<stem>.py:tiny --config.loss.name=<name>` runs.
    pending: why no config trains it yet (it needs a pipeline that does not exist yet).
    """

    name: str
    fn: Callable
    method: str | None
    inputs: tuple[str, ...]
    hparams: Mapping[str, Any]
    reference: bool
    config: str | None
    pending: str | None = None

    @property
    def hparam_types(self) -> dict[str, type]:
        return {key: value.type if isinstance(value, Unset) else type(value) for key, value in self.hparams.items()}

    def defaults(self) -> dict[str, Any]:
        """The hyperparameters that have a default (the `Unset` ones are left to the loss)."""
        return {key: value for key, value in self.hparams.items() if not isinstance(value, Unset)}


_REGISTRY: dict[str, LossInfo] = {}


def register(
    *names: str,
    method: str | None,
    inputs: tuple[str, ...],
    hparams: Mapping[str, Any],
    reference: bool = False,
    config: str | None = None,
    pending: str | None = None,
):
    """Register a loss under one or more names (TRL's loss_type names where they overlap)."""
    if (config is None) == (pending is None):
        raise ValueError(f"loss {names}: give exactly one of config= (what trains it) or pending= (why nothing does)")

    def decorator(fn: Callable) -> Callable:
        for name in names:
            if name in _REGISTRY and _REGISTRY[name].fn is not fn:
                raise ValueError(
                    f"loss name {name!r} registered twice ({_REGISTRY[name].fn.__module__} and {fn.__module__})"
                )
            _REGISTRY[name] = LossInfo(
                name=name,
                fn=fn,
                method=method,
                inputs=tuple(inputs),
                hparams=dict(hparams),
                reference=reference,
                config=config,
                pending=pending,
            )
        return fn

    return decorator


def info(name: str) -> LossInfo:
    """The declaration of the objective registered under `name`; the error lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(sorted(_REGISTRY))}") from None


def get(name: str) -> Callable:
    """Return the objective registered under `name`."""
    return info(name).fn


def names() -> list[str]:
    return sorted(_REGISTRY)


def trained_by(config_path: str) -> list[str]:
    """Names of the losses whose declared config is `config_path` (e.g. "configs/dpo.py")."""
    return sorted(name for name, entry in _REGISTRY.items() if entry.config == config_path)
