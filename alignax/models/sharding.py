"""Mesh construction and the ONE rule table from logical parameter axes to mesh axes.

Modules name their parameter axes logically ("vocab", "embed", "heads", "kv_heads", "mlp", "norm",
"layers"; see llama.py; "lora_rank" for LoRA adapters, lora.py); a rule table maps each logical name to a mesh axis (or None =
replicated). The mesh axes are ("data", "fsdp", "tensor").

FSDP_RULES (default): the "embed" axis of every weight is split over "fsdp" (ZeRO-3 style: each
device holds 1/fsdp of every matrix; jit all-gathers it where used). TENSOR_PARALLEL_RULES add
Megatron-style tensor parallelism: heads, kv_heads, mlp and vocab over "tensor".

A logical axis whose size is not divisible by its mesh axis is left replicated rather than
failing (e.g. 3 KV heads on 2 tensor devices), so one table serves every model size.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

Rules = Mapping[str, str | tuple[str, ...] | None]

FSDP_RULES: Rules = {
    "vocab": None,
    "embed": "fsdp",
    "heads": None,
    "kv_heads": None,
    "mlp": None,
    "norm": None,
    "layers": None,
    "lora_rank": None,  # LoRA adapters (lora.py): the rank axis is small, kept whole on every device
}

TENSOR_PARALLEL_RULES: Rules = {
    **FSDP_RULES,
    "vocab": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
}

DEFAULT_RULES = FSDP_RULES


def make_mesh(axis_sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A Mesh over ("data", "fsdp", "tensor"); sizes missing from `axis_sizes` are 1, and one size
    may be -1 (= all remaining devices). Axis types are the classic Auto (GSPMD) kind: built from a
    device array, not with `jax.make_mesh`, which now defaults to Explicit axes (DESIGN.md)."""
    unknown = set(axis_sizes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected a subset of {MESH_AXES}")
    devices = list(jax.devices() if devices is None else devices)
    sizes = [int(axis_sizes.get(name, 1)) for name in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(axis_sizes)}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into mesh {dict(axis_sizes)}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, have {len(devices)}")
    return Mesh(np.array(devices).reshape(sizes), MESH_AXES)


def logical_to_pspec(
    logical_axes: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh, rules: Rules | None = None
) -> PartitionSpec:
    """PartitionSpec for an array with these logical axes; undivisible or reused mesh axes -> None."""
    rules = DEFAULT_RULES if rules is None else rules
    if not logical_axes:
        return PartitionSpec()
    if len(logical_axes) != len(shape):
        raise ValueError(f"logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    spec: list[Any] = []
    for name, size in zip(logical_axes, shape):
        if name is not None and name not in rules:
            raise KeyError(f"logical axis {name!r} has no sharding rule (rules: {sorted(rules)})")
        mesh_axes = rules.get(name) if name is not None else None
        if mesh_axes is None:
            spec.append(None)
            continue
        mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
        devices = int(np.prod([mesh.shape[a] for a in mesh_axes]))
        if used.intersection(mesh_axes) or size % devices or devices == 1:
            spec.append(None)  # a mesh axis may shard only one array axis; uneven splits stay replicated
            continue
        used.update(mesh_axes)
        spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
    return PartitionSpec(*spec)


def variable_logical_axes(variable: nnx.Variable) -> tuple[str, ...] | None:
    """The logical axis names a module attached to a parameter (its `out_sharding` metadata)."""
    return variable.get_metadata().get("out_sharding")


def param_shardings(model_or_state, mesh: Mesh, rules: Rules | None = None):
    """The NamedSharding pytree (same structure as `nnx.state(model, nnx.Param)`) for parameters.

    Works on a real or an abstract (nnx.eval_shape) model, or on an nnx.State of Variables.
    """
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)

    def to_sharding(variable):
        spec = logical_to_pspec(variable_logical_axes(variable), variable.shape, mesh, rules)
        return NamedSharding(mesh, spec)

    return jax.tree.map(to_sharding, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh, rules: Rules | None = None) -> nnx.Module:
    """Places an existing (host or single-device) model's parameters by the rule table, in place."""
    state = nnx.state(model, nnx.Param)
    shardings = param_shardings(state, mesh, rules)
    placed = jax.tree.map(
        lambda v, s: jax.device_put(v[...], s), state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    nnx.update(model, placed)
    return model
