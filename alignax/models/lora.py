"""LoRA adapters as a model transform (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language
Models"), laid out as Hugging Face PEFT lays them out (peft/tuners/lora/layer.py), so the adapters
export to a folder that `peft.PeftModel.from_pretrained` loads.

For a projection y = x W (kernel W [in, out], llama.py's `Dense`) an adapter adds

    y = x W + s * dropout(x) A B,    A [in, r], B [r, out],   s = alpha / r   (rsLoRA: alpha / sqrt(r))

A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) (PEFT `init_lora_weights=True`; or
N(0, 1/r) with "gaussian"), B = 0, so the adapted model starts equal to the base model. PEFT stores
lora_A.weight = A^T [r, in] and lora_B.weight = B^T [out, r]; the merged kernel is W + s A B.

Pieces, one job each:
  apply_lora(model, spec, rngs)   replace the selected `Dense` modules by `LoRADense` (in place)
  TRAINABLE                       the nnx filter of the trainable state (adapters only)
  train_mode(model, key)          dropout on, one key per adapted module (inside the train step)
  without_adapters(model)         the base model: adapters switched off (the DPO reference)
  merge_adapters(model)           W <- W + s A B, B <- 0 (the merged HF export)
  save_peft_adapter(model, dir)   adapter_config.json + adapter_model.safetensors (PEFT's names)
The adapter parameters are `nnx.LoRAParam` (a subclass of `nnx.Param`) with logical axes
(kernel axis, "lora_rank") / ("lora_rank", kernel axis), placed by sharding.py's rule table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignax.files import atomic_path
from alignax.models.llama import Dense

INITS = ("kaiming", "gaussian")
# The nnx filter of what trains when adapters are on: only the adapter matrices.
TRAINABLE = nnx.LoRAParam


@dataclasses.dataclass(frozen=True)
class LoRASpec:
    """rank r, alpha, dropout p, which projections (`target`: a regex searched in module paths such
    as "model.layers.0.self_attn.q_proj"), init of A, and rsLoRA scaling (Kalajdzievski, 2023)."""

    rank: int
    alpha: float = 16.0
    dropout: float = 0.0
    target: str = "q_proj|v_proj"
    init: str = "kaiming"
    use_rslora: bool = False

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)


class LoRADropoutKey(nnx.Variable):
    """The dropout key of one adapter (raw uint32 key data), set per step by `train_mode`."""


class LoRADense(Dense):
    """`Dense` plus an adapter: y = x W (+ b) + s * dropout(x) A B (module docstring).

    Keeps the base module's `kernel` (and `bias`) at the same path, so HF I/O is unchanged.
    `adapters_enabled` and `dropout_active` are static switches (`without_adapters`, `train_mode`)."""

    def __init__(self, base: Dense, spec: LoRASpec, *, rngs: nnx.Rngs):
        self.kernel, self.use_bias, self.compute_dtype = base.kernel, base.use_bias, base.compute_dtype
        if base.use_bias:
            self.bias = base.bias
        *lead, in_features, out_features = base.kernel.shape
        *lead_axes, in_axis, out_axis = base.kernel.get_metadata().get("out_sharding") or (None,) * base.kernel.ndim
        dtype = base.kernel[...].dtype
        if spec.init == "kaiming":
            bound = 1.0 / math.sqrt(in_features)
            a = jax.random.uniform(rngs.params(), (*lead, in_features, spec.rank), dtype, -bound, bound)
        else:
            a = jax.random.normal(rngs.params(), (*lead, in_features, spec.rank), dtype) / spec.rank
        self.lora_a = nnx.LoRAParam(a, out_sharding=(*lead_axes, in_axis, "lora_rank"), eager_sharding=False)
        self.lora_b = nnx.LoRAParam(
            jnp.zeros((*lead, spec.rank, out_features), dtype),
            out_sharding=(*lead_axes, "lora_rank", out_axis),
            eager_sharding=False,
        )
        self.scaling, self.dropout_rate = float(spec.scaling), float(spec.dropout)
        self.dropout_key = LoRADropoutKey(jnp.zeros((*lead, 2), jnp.uint32))
        self.adapters_enabled, self.dropout_active = True, False

    def __call__(self, x: jax.Array) -> jax.Array:
        y = super().__call__(x)
        if not self.adapters_enabled:
            return y
        h = x
        if self.dropout_active and self.dropout_rate > 0:
            keep = jax.random.bernoulli(self.dropout_key[...], 1.0 - self.dropout_rate, x.shape)
            h = jnp.where(keep, x / (1.0 - self.dropout_rate), 0.0).astype(x.dtype)
        a = self.lora_a[...].astype(self.compute_dtype)
        b = self.lora_b[...].astype(self.compute_dtype)
        return y + (self.scaling * ((h @ a) @ b)).astype(y.dtype)


def module_name(path) -> str:
    """ "model.layers.0.self_attn.q_proj": a module path as PEFT / transformers name it."""
    return ".".join(str(part) for part in path)


def candidate_paths(model) -> list[tuple]:
    """Paths of the projections that may carry an adapter: the `Dense` modules of the decoder layers
    (attention and MLP projections; never the LM head)."""
    return [
        tuple(path)
        for path, module in nnx.iter_modules(model)
        if isinstance(module, Dense) and tuple(path[:2]) == ("model", "layers")
    ]


def lora_modules(model) -> list[tuple[tuple, LoRADense]]:
    """(path, module) of every adapted projection, in graph order."""
    return [(tuple(path), module) for path, module in nnx.iter_modules(model) if isinstance(module, LoRADense)]


def _replace(model, path: tuple, new) -> None:
    parent = model
    for part in path[:-1]:
        parent = parent[part] if isinstance(part, int) else getattr(parent, part)
    setattr(parent, path[-1], new)


def apply_lora(model, spec: LoRASpec, rngs: nnx.Rngs) -> list[str]:
    """Put an adapter on every projection whose module path matches `spec.target` (re.search), in
    place; returns the adapted module names. No match is an error listing the candidates."""
    if spec.rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {spec.rank}")
    if spec.init not in INITS:
        raise ValueError(f"LoRA init must be one of {INITS}, got {spec.init!r}")
    pattern = re.compile(spec.target)
    candidates = candidate_paths(model)
    chosen = [path for path in candidates if pattern.search(module_name(path))]
    if not chosen:
        names = sorted({module_name(p[-2:]) for p in candidates})
        raise ValueError(
            f"LoRA target {spec.target!r} matches no projection; projections are named like "
            f"{module_name(candidates[0]) if candidates else '(none)'} ({', '.join(names)})"
        )
    for path in chosen:
        base = model
        for part in path:
            base = base[part] if isinstance(part, int) else getattr(base, part)
        _replace(model, path, LoRADense(base, spec, rngs=rngs))
    return [module_name(path) for path in chosen]


def has_adapters(model) -> bool:
    return bool(lora_modules(model))


def train_mode(model, key) -> None:
    """Switch dropout on in every adapter of a (merged, traced) model, each with its own key:
    fold_in(key, i) for the i-th adapter, and per layer for stacked (scanned) layers."""
    for index, (_, module) in enumerate(lora_modules(model)):
        if module.dropout_rate <= 0:
            continue
        lead = module.dropout_key.shape[:-1]
        count = int(np.prod(lead)) if lead else 1
        module_key = jax.random.fold_in(key, index)
        keys = jax.vmap(lambda i, k=module_key: jax.random.fold_in(k, i))(jnp.arange(count))
        # A new variable, not set_value: the merged state's variables belong to an outer trace.
        module.dropout_key = LoRADropoutKey(keys.reshape(*lead, 2).astype(jnp.uint32))
        module.dropout_active = True


def without_adapters(model):
    """The base model: a second view of the same arrays (nothing copied) with every adapter off.

    For DPO-family methods this is the reference: pi_ref = the starting (base) model."""
    graphdef, state = nnx.split(model)
    base = nnx.merge(graphdef, state)
    for _, module in lora_modules(base):
        module.adapters_enabled = False
        module.dropout_active = False
    return base


def merged_kernel(module: LoRADense) -> jax.Array:
    """W + s A B in the kernel's dtype (a leading layer axis, if any, is kept)."""
    a = jnp.asarray(module.lora_a[...], jnp.float32)
    b = jnp.asarray(module.lora_b[...], jnp.float32)
    kernel = module.kernel[...]
    return (kernel.astype(jnp.float32) + module.scaling * jnp.matmul(a, b)).astype(kernel.dtype)


def merge_adapters(model):
    """A view of `model` whose adapted kernels hold W + s A B and whose B are 0: the same function,
    with the adapters folded in, for the merged HF export (`alignax.models.save_hf`)."""
    graphdef, state = nnx.split(model)
    merged = nnx.merge(graphdef, state)
    for _, module in lora_modules(merged):
        kernel = merged_kernel(module)
        module.kernel = nnx.Param(kernel, **module.kernel.get_metadata())
        module.lora_b = nnx.LoRAParam(jnp.zeros_like(module.lora_b[...]), **module.lora_b.get_metadata())
    return merged


def peft_tensors(model) -> dict[str, np.ndarray]:
    """{PEFT key: array}: `base_model.model.<module>.lora_A.weight` = A^T [r, in] and
    `...lora_B.weight` = B^T [out, r] per adapted module; stacked layers are split per layer."""
    out = {}
    for path, module in lora_modules(model):
        a = np.asarray(jax.device_get(module.lora_a[...]), np.float32)
        b = np.asarray(jax.device_get(module.lora_b[...]), np.float32)
        if a.ndim == 2:
            names, pairs = [module_name(path)], [(a, b)]
        else:  # scanned layers: path model.layers.<proj...>, arrays [L, ...]
            names = [module_name((*path[:2], i, *path[2:])) for i in range(a.shape[0])]
            pairs = list(zip(a, b))
        for name, (a_i, b_i) in zip(names, pairs):
            out[f"base_model.model.{name}.lora_A.weight"] = np.ascontiguousarray(a_i.T)
            out[f"base_model.model.{name}.lora_B.weight"] = np.ascontiguousarray(b_i.T)
    return out


def peft_config(spec: LoRASpec, target_modules: list[str], base_model_name_or_path: str = "") -> dict:
    """PEFT's adapter_config.json for these adapters (LoraConfig fields, peft 0.17)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "use_rslora": spec.use_rslora,
        "target_modules": sorted(target_modules),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True if spec.init == "kaiming" else "gaussian",
        "inference_mode": True,
        "modules_to_save": None,
    }


def save_peft_adapter(model, out_dir: str, spec: LoRASpec, *, base_model_name_or_path: str = "") -> str:
    """Write adapter_config.json + adapter_model.safetensors that
    `peft.PeftModel.from_pretrained(transformers_model, out_dir)` loads on the base model."""
    import safetensors.numpy

    tensors = peft_tensors(model)
    targets = sorted(
        {key[len("base_model.model.") : -len(".lora_A.weight")] for key in tensors if key.endswith("lora_A.weight")}
    )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(peft_config(spec, targets, base_model_name_or_path), f, indent=2)
        f.write("\n")
    with atomic_path(os.path.join(out_dir, "adapter_model.safetensors")) as tmp:
        safetensors.numpy.save_file(tensors, tmp, metadata={"format": "pt"})
    return out_dir


def spec_from_config(lora_config) -> LoRASpec | None:
    """The `lora` block of a run's config as a LoRASpec; None when rank is 0 (adapters off)."""
    if lora_config is None or not lora_config.rank:
        return None
    return LoRASpec(
        rank=int(lora_config.rank),
        alpha=float(lora_config.alpha),
        dropout=float(lora_config.dropout),
        target=str(lora_config.target),
        init=str(lora_config.init),
        use_rslora=bool(lora_config.use_rslora),
    )
