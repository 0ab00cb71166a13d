"""Configuration of the Llama family (Llama 2/3/3.x, Mistral, SmolLM2).

Field names follow Hugging Face's `config.json` (`LlamaConfig` / `MistralConfig` in transformers
4.53) so that `LlamaConfig.from_hf(json.load(...))` and `cfg.to_hf()` are plain renames. The
alignax-only fields (`dtype`, `param_dtype`, `remat`, `scan_layers`) control how the model runs and
are never written to `config.json`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
_MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral"}
ROPE_TYPES = ("default", "linear", "dynamic", "llama3")

# HF keys that describe the network but that alignax supports only at their default value.
_UNSUPPORTED_IF_SET = {
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "pretraining_tp": 1,
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters of a Llama-family decoder; HF names, HF meanings.

    `head_dim=None` means `hidden_size // num_attention_heads` (resolved in `__post_init__`).
    `rope_scaling` is None or HF's dict, e.g. `{"rope_type": "llama3", "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`.
    `sliding_window` (Mistral) limits each query to the `sliding_window` most recent keys, itself
    included (transformers: `kv_idx > q_idx - sliding_window`).
    """

    # Per family (a subclass overrides them): the HF architectures this config describes, their
    # `model_type`s, and the HF keys supported only at one value.
    ARCHITECTURES: ClassVar[tuple[str, ...]] = ARCHITECTURES
    MODEL_TYPES: ClassVar[Mapping[str, str]] = _MODEL_TYPES
    UNSUPPORTED_IF_SET: ClassVar[Mapping[str, Any]] = _UNSUPPORTED_IF_SET

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Mapping[str, Any] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    architecture: str = "LlamaForCausalLM"
    # alignax-only: how the model runs, not what it is.
    dtype: str = "float32"  # compute dtype of activations (logits are always float32)
    param_dtype: str = "float32"  # storage dtype of parameters
    remat: bool = False  # rematerialize each decoder block in the backward pass
    scan_layers: bool = False  # stack the blocks' parameters and run them with lax.scan

    def __post_init__(self):
        # Types first: a hostile or hand-edited config.json must fail here, naming the key, and not
        # later as a ZeroDivisionError or a shape error deep inside model construction.
        _check_fields(self)
        # frozen dataclass: defaults derived from other fields are set with object.__setattr__.
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        if self.rope_scaling is not None:
            scaling = dict(self.rope_scaling)
            # Older checkpoints write "type" instead of "rope_type" (transformers accepts both).
            if "rope_type" not in scaling and "type" in scaling:
                scaling["rope_type"] = scaling.pop("type")
            rope_type = scaling.get("rope_type", "default")
            if rope_type not in ROPE_TYPES:
                raise ValueError(f"rope_scaling.rope_type={rope_type!r} is not supported; expected one of {ROPE_TYPES}")
            # A tuple of items keeps the frozen dataclass hashable (jit static args need that).
            object.__setattr__(self, "rope_scaling", _FrozenDict(scaling))
        if self.architecture not in self.ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is not supported by {type(self).__name__}; "
                f"expected one of {self.ARCHITECTURES}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")

    @property
    def rope_type(self) -> str:
        return "default" if self.rope_scaling is None else self.rope_scaling.get("rope_type", "default")

    # --- what the shared decoder (llama.py) reads; a family's config overrides these -----------------

    @property
    def layer_windows(self) -> tuple[int | None, ...]:
        """Each layer's sliding window (None = global attention); Mistral: one window for all."""
        return (self.sliding_window,) * self.num_hidden_layers

    @property
    def attention_qkv_bias(self) -> bool:
        """q/k/v projections carry biases (Qwen2)."""
        return False

    @property
    def attention_scale(self) -> float:
        """The factor on q.k: 1/sqrt(head_dim) (Gemma-2: query_pre_attn_scalar^-1/2)."""
        return 1.0 / math.sqrt(self.head_dim)

    @property
    def attention_logit_softcap(self) -> float | None:
        """Scores become cap * tanh(scores / cap) before masking (Gemma-2); None = off."""
        return None

    @property
    def final_logit_softcap(self) -> float | None:
        """Logits become cap * tanh(logits / cap) (Gemma-2); None = off."""
        return None

    @property
    def mlp_activation(self) -> str:
        """The gate activation of the gated MLP (HF ACT2FN name)."""
        return "silu"

    # --- config.json ------------------------------------------------------------------------------

    @classmethod
    def architecture_from_hf(cls, config: Mapping[str, Any]) -> str | None:
        """`architectures[0]`, or the architecture of `model_type` when `architectures` is absent."""
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a JSON object, got {type(config).__name__}")
        architectures = config.get("architectures") or []
        if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
            raise TypeError(f"architectures must be a list of strings, got {architectures!r}")
        if architectures:
            return architectures[0]
        by_model_type = {model_type: arch for arch, model_type in cls.MODEL_TYPES.items()}
        return by_model_type.get(config.get("model_type"))

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], **overrides) -> "LlamaConfig":
        """Builds a config from a Hugging Face `config.json` dict; `overrides` set alignax fields."""
        architecture = cls.architecture_from_hf(config)
        if architecture not in cls.ARCHITECTURES:
            raise ValueError(
                f"config.json: unknown architecture {architecture!r} (architectures={config.get('architectures')!r}, "
                f"model_type={config.get('model_type')!r}); {cls.__name__} supports {cls.ARCHITECTURES}"
            )
        for key, default in cls.UNSUPPORTED_IF_SET.items():
            if config.get(key, default) != default:
                raise ValueError(f"config.json: {key}={config[key]!r} is not supported (only {default!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names and k not in ("dtype", "param_dtype")}
        kwargs = cls._family_kwargs_from_hf(config, architecture, kwargs)
        kwargs["architecture"] = architecture
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def _family_kwargs_from_hf(
        cls, config: Mapping[str, Any], architecture: str, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Family-specific defaults and renames of `from_hf` (a subclass overrides it)."""
        if architecture == "MistralForCausalLM":
            kwargs.setdefault("sliding_window", 4096)  # MistralConfig's default when the key is absent
        return kwargs

    def _common_hf(self) -> dict[str, Any]:
        """The config.json keys every family writes the same way."""
        return {
            "architectures": [self.architecture],
            "model_type": self.MODEL_TYPES[self.architecture],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
        }

    def to_hf(self) -> dict[str, Any]:
        """The `config.json` dict transformers reads back into an equivalent model."""
        out = self._common_hf()
        out["hidden_act"] = "silu"
        if self.architecture == "MistralForCausalLM":
            out["sliding_window"] = self.sliding_window
            if self.rope_scaling is not None:
                raise ValueError("MistralForCausalLM has no rope_scaling in transformers; cannot export it")
        else:
            out["rope_scaling"] = None if self.rope_scaling is None else dict(self.rope_scaling)
            out["attention_bias"] = False
            out["mlp_bias"] = False
            if self.sliding_window is not None:
                raise ValueError("LlamaForCausalLM has no sliding window in transformers; use MistralForCausalLM")
        return out

    @classmethod
    def tiny(cls, **overrides) -> "LlamaConfig":
        """A tiny random-weights config for tests: vocab 256, hidden 64, 2 layers, 4 heads, 2 KV heads."""
        kwargs = dict(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            max_position_embeddings=128,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        kwargs.update(overrides)
        return cls(**kwargs)


_POSITIVE_INTS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
)
_OPTIONAL_POSITIVE_INTS = ("num_key_value_heads", "head_dim", "sliding_window")
_POSITIVE_FLOATS = ("rms_norm_eps", "rope_theta")
_BOOLS = ("tie_word_embeddings", "remat", "scan_layers")
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
_ROPE_SCALING_NUMBERS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fields(cfg: "LlamaConfig") -> None:
    """Raises ValueError naming the first field whose value has the wrong type or range."""

    def fail(name, want):
        raise ValueError(f"{name}={getattr(cfg, name)!r}: expected {want}")

    for name in _POSITIVE_INTS:
        if not _is_int(getattr(cfg, name)) or getattr(cfg, name) < 1:
            fail(name, "a positive integer")
    for name in _OPTIONAL_POSITIVE_INTS:
        value = getattr(cfg, name)
        if value is not None and (not _is_int(value) or value < 1):
            fail(name, "a positive integer or null")
    for name in _POSITIVE_FLOATS:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
            fail(name, "a positive finite number")
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            fail(name, "true or false")
    for name in _TOKEN_IDS:
        value = getattr(cfg, name)
        ids = value if isinstance(value, (list, tuple)) and name == "eos_token_id" else [value]
        if value is not None and not all(_is_int(i) and i >= 0 for i in ids):
            fail(name, "a non-negative integer" + (" or a list of them" if name == "eos_token_id" else "") + " or null")
    for name in ("architecture", "dtype", "param_dtype"):
        if not isinstance(getattr(cfg, name), str):
            fail(name, "a string")
    if cfg.rope_scaling is not None:
        if not isinstance(cfg.rope_scaling, Mapping):
            fail("rope_scaling", "an object or null")
        for key in _ROPE_SCALING_NUMBERS:
            value = cfg.rope_scaling.get(key, 1)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")):
                raise ValueError(f"rope_scaling.{key}={value!r}: expected a positive finite number")


class _FrozenDict(dict):
    """A read-only, hashable dict (the config is a frozen dataclass and a jit static argument)."""

    def __hash__(self):
        return hash(tuple(sorted((k, _hashable(v)) for k, v in self.items())))

    def _readonly(self, *args, **kwargs):
        raise TypeError("LlamaConfig.rope_scaling is read-only; use dataclasses.replace")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = _readonly


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value
