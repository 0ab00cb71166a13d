"""Check a run's config before anything is built or traced.

`check_config(config)` runs first in `alignax.train.loop.train`: every error names the key and says
what to do, and nothing is written to the run directory before it passes. The loss part reads the
loss's declaration (`alignax.losses.info(name)`: method, inputs, hyperparameters, reference), so a
loss that the config's method cannot train, a hyperparameter the loss does not take, or a missing
reference is found here, not at trace time. Per-example data fields are checked when the data is
read (`alignax.train.feed.make_feed`), with the file named.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from alignax import losses

METHODS = ("sft", "soft", "pairwise", "kto", "multi_sample", "reward_model", "cut")
REFERENCES = ("on_the_fly", "precomputed", "none")
# Methods whose reference log-probs depend only on the example (KTO's KL pairs depend on batch mates).
PRECOMPUTABLE = ("pairwise", "multi_sample")
NAN_POLICIES = ("stop", "skip")
# Hyperparameters that must be positive wherever a loss takes them (a temperature or step size).
POSITIVE_HPARAMS = ("beta", "eta")


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key."""


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config.{key}: {message}")


def set_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The hyperparameters the config sets; unset ones (None) are left to the loss's defaults."""
    return {key: value for key, value in config.loss.hparams.to_dict().items() if value is not None}


def check_loss(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Check the loss / method / reference / hyperparameter pairing; return the hyperparameters."""
    try:
        entry = losses.info(config.loss.name)
    except KeyError as error:
        raise ConfigError(f"config.loss.name: {error.args[0]}") from None
    if entry.pending:
        raise ConfigError(f"config.loss.name: loss {entry.name!r} cannot be trained yet: {entry.pending}")
    if entry.method != config.method:
        stem = entry.config[len("configs/") : -len(".py")]
        raise ConfigError(
            f"config.loss.name: loss {entry.name!r} is trained by method {entry.method!r}, but config.method is "
            f"{config.method!r}. Run it with its own config: python -m experiments.{stem} --config "
            f"{entry.config}:tiny --workdir DIR --config.loss.name={entry.name}"
        )
    if config.reference == "precomputed" and config.method not in PRECOMPUTABLE:
        raise ConfigError(
            f"config.reference: precomputed is available for methods {PRECOMPUTABLE}; method "
            f"{config.method!r} needs on_the_fly (or none)"
        )
    hparams = set_hparams(config)
    for key, value in hparams.items():
        _require(
            key in entry.hparams,
            f"loss.hparams.{key}",
            f"loss {entry.name!r} has no hyperparameter {key!r}; it takes {sorted(entry.hparams) or 'none'}",
        )
        if key in POSITIVE_HPARAMS:
            _require(
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                f"loss.hparams.{key}",
                f"must be a positive number, got {value!r}",
            )
    return hparams


def check_numbers(config: ml_collections.ConfigDict) -> None:
    """Types and ranges of the engine's own keys."""
    for key in (
        "total_steps",
        "batch_size",
        "eval_batch_size",
        "grad_accum_steps",
        "checkpoint_every",
        "log_every",
        "keep_checkpoints",
        "logprob_chunk_size",
    ):
        value = config[key]
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            key,
            f"must be a positive integer, got {value!r}",
        )
    for key in ("eval_batches", "eval_every", "logprob_vocab_chunk_size"):
        value = config[key]
        _require(isinstance(value, int) and value >= 0, key, f"must be an integer >= 0, got {value!r}")
    _require(
        config.batch_size % config.grad_accum_steps == 0,
        "batch_size",
        f"{config.batch_size} is not divisible by grad_accum_steps={config.grad_accum_steps}",
    )
    learning_rate = config.optimizer.learning_rate
    _require(
        isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate >= 0,
        "optimizer.learning_rate",
        f"must be a finite number >= 0, got {learning_rate!r}",
    )
    _require(config.optimizer.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 disables clipping)")
    data = config.data
    _require(data.max_length >= 2, "data.max_length", f"must be >= 2, got {data.max_length}")
    _require(
        0 < data.max_prompt_length < data.max_length,
        "data.max_prompt_length",
        f"must lie in (0, data.max_length={data.max_length}), got {data.max_prompt_length}",
    )
    _require(data.length_multiple >= 1, "data.length_multiple", f"must be >= 1, got {data.length_multiple}")


def check_lora(config: ml_collections.ConfigDict) -> None:
    """The `lora` block: rank >= 0 (0 = off), alpha > 0, dropout in [0, 1), a valid target regex."""
    import re

    from alignax.models.lora import INITS

    lora = config.get("lora")
    if lora is None:  # a config built without configs/base.py: no adapters
        return
    _require(
        isinstance(lora.rank, int) and not isinstance(lora.rank, bool) and lora.rank >= 0,
        "lora.rank",
        f"must be an integer >= 0 (0 = no adapters), got {lora.rank!r}",
    )
    if not lora.rank:
        return
    _require(
        isinstance(lora.alpha, (int, float)) and math.isfinite(lora.alpha) and lora.alpha > 0,
        "lora.alpha",
        f"must be a positive number, got {lora.alpha!r}",
    )
    _require(
        isinstance(lora.dropout, (int, float)) and 0 <= lora.dropout < 1,
        "lora.dropout",
        f"must lie in [0, 1), got {lora.dropout!r}",
    )
    _require(lora.init in INITS, "lora.init", f"{lora.init!r} is not one of {', '.join(INITS)}")
    try:
        re.compile(lora.target)
    except (re.error, TypeError) as error:
        raise ConfigError(f"config.lora.target: {lora.target!r} is not a regular expression ({error})") from None
    _require(bool(lora.target), "lora.target", "is empty; give the projections to adapt, e.g. q_proj|v_proj")
    _require(
        config.method != "reward_model",
        "lora.rank",
        "LoRA is not available for the reward model (its new head must train); set lora.rank=0",
    )


def check_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Check everything that can be checked without data or devices; return the loss's hyperparameters."""
    _require(config.method in METHODS, "method", f"unknown method {config.method!r}; known: {', '.join(METHODS)}")
    _require(config.reference in REFERENCES, "reference", f"{config.reference!r} is not one of {', '.join(REFERENCES)}")
    _require(config.nan_policy in NAN_POLICIES, "nan_policy", f"{config.nan_policy!r} is not one of {NAN_POLICIES}")
    check_numbers(config)
    check_lora(config)
    return check_loss(config)


def uses_reference(config: ml_collections.ConfigDict) -> bool:
    """Whether the run builds a reference model: the config asks for one and the loss reads it."""
    return config.reference == "on_the_fly" and losses.info(config.loss.name).reference


def data_inputs(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The loss's inputs that come from the data records rather than the model (docs/batches.md).

    Without a reference model (`reference: none` or `precomputed`) the reference log-probs are data
    too: `precomputed` attaches them before training; with `none` the records must carry them."""
    from alignax.train.methods import MODEL_INPUTS

    provided = set(MODEL_INPUTS[config.method])
    if config.reference != "on_the_fly":
        provided -= {"ref_chosen_logps", "ref_rejected_logps", "ref_logps"}
    return tuple(name for name in losses.info(config.loss.name).inputs if name not in provided)
