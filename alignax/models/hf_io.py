"""Hugging Face checkpoints (config.json + safetensors) in and out.

The model's parameter paths mirror HF names (llama.py), so the conversion is a rename table:

  model.embed_tokens.weight [V, D]            <-> model.embed_tokens.embedding      (same layout)
  model.layers.{i}.*_proj.weight [out, in]    <-> model.layers[i].*_proj.kernel     (transposed)
  model.layers.{i}.*_layernorm.weight, model.norm.weight <-> same path              (same layout)
  lm_head.weight [V, D]                       <-> lm_head.kernel [D, V]             (absent if tied)

With `scan_layers` the per-layer tensors are stacked on a leading "layers" axis.

Only safetensors are read (never pickle). Tensors are read lazily through safetensors' slices:
loading into a mesh places each tensor with `jax.make_array_from_callback`, so each device reads
only its own shard and the whole model never sits on one device. Every problem (missing file,
corrupt or truncated safetensors, unknown architecture, missing tensor, wrong shape) raises
before any model is returned, with the file and tensor named.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from flax import nnx

from alignax.files import atomic_path
from alignax.models import llama as llama_lib
from alignax.models import registry
from alignax.models import sharding as sharding_lib
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"

# Tensors some checkpoints carry that the model recomputes (older Llama exports).
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)

# Llama's per-layer key map (kept under its old name); each family's map lives beside its model.
_LAYER_PARAMS = llama_lib.HF_LAYER_PARAMS


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and tensor."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """How one model parameter is made of HF tensors.

    `hf_names` has one name, or (scan_layers) one per layer, stacked on a new leading axis.
    `transpose`: HF stores the 2-D weight as [out, in]; the model's kernel is [in, out].
    """

    path: tuple[Any, ...]
    hf_names: tuple[str, ...]
    transpose: bool
    stacked: bool


def param_table(cfg: LlamaConfig) -> list[ParamSpec]:
    """The rename table for `cfg`: one entry per model parameter."""
    table = [
        ParamSpec(("model", "embed_tokens", "embedding"), ("model.embed_tokens.weight",), False, False),
        ParamSpec(("model", "norm", "weight"), ("model.norm.weight",), False, False),
    ]
    layers = range(cfg.num_hidden_layers)
    for sub_path, suffix, transpose in registry.family_of(cfg).hf_layer_params:
        if cfg.scan_layers:
            names = tuple(f"model.layers.{i}.{suffix}" for i in layers)
            table.append(ParamSpec(("model", "layers", *sub_path), names, transpose, True))
        else:
            table.extend(
                ParamSpec(("model", "layers", i, *sub_path), (f"model.layers.{i}.{suffix}",), transpose, False)
                for i in layers
            )
    if not cfg.tie_word_embeddings:
        table.append(ParamSpec(("lm_head", "kernel"), ("lm_head.weight",), True, False))
    return table


# -------------------------------------------------------------------------------------------------
# Reading safetensors lazily.
# -------------------------------------------------------------------------------------------------


class SafetensorsTensor:
    """A lazy view of one tensor in a .safetensors file: `.shape`, `.dtype`, `t[index]` reads only
    that slice from disk (safetensors `get_slice`)."""

    def __init__(self, path: str | os.PathLike, name: str, shape: tuple[int, ...], dtype: str):
        self.path, self.name, self.shape, self.safetensors_dtype = str(path), name, tuple(shape), dtype

    def __getitem__(self, index) -> np.ndarray:
        try:
            with safetensors.safe_open(self.path, framework="numpy") as f:
                return np.asarray(f.get_slice(self.name)[index])
        except Exception as e:  # noqa: BLE001 - re-raised with the file and tensor named
            raise CheckpointError(f"{self.path}: cannot read tensor {self.name!r}: {e}") from e

    def __array__(self, dtype=None, copy=None):
        array = self[...] if self.shape else self[()]
        return array if dtype is None else array.astype(dtype)

    def __repr__(self):
        return f"SafetensorsTensor({self.path!r}, {self.name!r}, shape={self.shape}, dtype={self.safetensors_dtype})"


def _check_safetensors_file(path: pathlib.Path) -> dict[str, Any]:
    """Parses the header and checks that every tensor's bytes lie inside the file.

    Returns {name: {"dtype", "shape", "data_offsets"}}. A truncated file or a corrupt header is
    reported here, before anything is loaded.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: safetensors file not found")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {file_size} bytes)")
        header_size = int.from_bytes(prefix, "little")
        if header_size > file_size - 8:
            raise CheckpointError(
                f"{path}: corrupt or truncated safetensors header (header says {header_size} bytes, "
                f"file has {file_size - 8} after the length)"
            )
        try:
            header = json.loads(f.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_size = file_size - 8 - header_size
    for name, info in header.items():
        try:
            start, end = info["data_offsets"]
            info["shape"], info["dtype"]  # present in every entry (checked here, used by the reader)
        except (TypeError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors entry for tensor {name!r}: {info!r}") from e
        if end > data_size:
            raise CheckpointError(
                f"{path}: truncated: tensor {name!r} needs bytes {start}..{end} of the data section, "
                f"which has {data_size}"
            )
    return header


def read_safetensors(path: str | os.PathLike) -> dict[str, SafetensorsTensor]:
    """{name: lazy tensor} for one .safetensors file (validated; nothing read yet)."""
    path = pathlib.Path(path)
    header = _check_safetensors_file(path)
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            names = set(f.keys())
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot open safetensors file: {e}") from e
    return {
        name: SafetensorsTensor(path, name, tuple(header[name]["shape"]), header[name]["dtype"])
        for name in sorted(names)
    }


def _read_weight_map(index_path: pathlib.Path) -> dict[str, str]:
    """The {tensor name: shard file name} of a safetensors index, type-checked."""
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path}: not a valid safetensors index (needs 'weight_map'): {e}") from e
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index_path}: 'weight_map' must be an object, got {type(weight_map).__name__}")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(f"{index_path}: weight_map[{name!r}] must be a file name, got {shard!r}")
    return weight_map


def _confined_shard_path(folder: pathlib.Path, shard: str, index_path: pathlib.Path) -> pathlib.Path:
    """`folder/shard`, refusing names that leave the model folder (absolute paths, `..`, or a
    symlink pointing outside): an index downloaded with a checkpoint must not read other files."""
    root = folder.resolve()
    candidate = (folder / shard).resolve()
    if pathlib.PurePath(shard).is_absolute() or not candidate.is_relative_to(root):
        raise CheckpointError(f"{index_path}: shard {shard!r} is outside the model folder {root}")
    return candidate


def read_checkpoint_tensors(folder: str | os.PathLike) -> dict[str, SafetensorsTensor]:
    """All tensors of an HF folder: `model.safetensors`, or the shards `model.safetensors.index.json`
    lists (its weight_map must agree with the shards' contents)."""
    folder = pathlib.Path(folder)
    index_path = folder / SAFE_WEIGHTS_INDEX_NAME
    single_path = folder / SAFE_WEIGHTS_NAME
    if index_path.is_file():
        weight_map = _read_weight_map(index_path)
        tensors: dict[str, SafetensorsTensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_tensors = read_safetensors(_confined_shard_path(folder, shard, index_path))
            for name, tensor in shard_tensors.items():
                if weight_map.get(name) == shard:
                    tensors[name] = tensor
        for name, shard in weight_map.items():
            if name not in tensors:
                raise CheckpointError(f"{folder / shard}: tensor {name!r} listed in {index_path.name} is missing")
        return tensors
    if single_path.is_file():
        return read_safetensors(single_path)
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    hint = f" (found {pickles}: pickle checkpoints are not loaded; convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"{folder}: no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}{hint}")


def read_config_dict(folder: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in `folder/config.json`; anything else (missing, not JSON, a list) raises
    CheckpointError naming the file, before any field is used."""
    path = pathlib.Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: config.json not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def read_config(folder: str | os.PathLike, **overrides) -> LlamaConfig:
    """The config of `folder/config.json`, of the family its `architectures` name (registry.py);
    `overrides` set alignax fields (dtype, scan_layers...)."""
    config = read_config_dict(folder)
    try:
        return registry.config_from_hf(config, **overrides)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{pathlib.Path(folder) / CONFIG_NAME}: {e}") from e


# -------------------------------------------------------------------------------------------------
# State dict -> model.
# -------------------------------------------------------------------------------------------------


def _describe(name: str, tensor: Any) -> str:
    path = getattr(tensor, "path", None)
    return f"tensor {name!r}" + (f" in {path}" if path else "")


def _resolve(tensor: Any) -> Any:
    """Lazy loaders: objects with .shape and slicing are used as they are; a bare zero-argument
    callable is called once to produce its array."""
    if hasattr(tensor, "shape") and hasattr(tensor, "__getitem__"):
        return tensor
    if callable(tensor):
        return np.asarray(tensor())
    return np.asarray(tensor)


def _hf_shape(spec_shape: tuple[int, ...], spec: ParamSpec) -> tuple[int, ...]:
    """The HF tensor shape one entry of `spec` must have, given the model parameter's shape."""
    shape = spec_shape[1:] if spec.stacked else spec_shape
    return tuple(reversed(shape)) if spec.transpose else tuple(shape)


def _read_block(spec: ParamSpec, tensors: Mapping[str, Any], index: tuple[slice, ...], dtype) -> np.ndarray:
    """The block `index` (in the model's layout) of a parameter, read from the HF tensors."""

    def one(name, sub_index):
        hf_index = tuple(reversed(sub_index)) if spec.transpose else tuple(sub_index)
        block = np.asarray(tensors[name][hf_index])
        return (block.T if spec.transpose else block).astype(dtype)

    if spec.stacked:
        layer_ids = range(len(spec.hf_names))[index[0]]
        return np.stack([one(spec.hf_names[i], index[1:]) for i in layer_ids])
    return one(spec.hf_names[0], index)


def _check_layer_count(cfg: LlamaConfig, tensors: Mapping[str, Any]) -> None:
    """Fails fast when the config declares more layers than the tensors hold (e.g. a million layers
    over a 2 MB file): building even the abstract model for such a config takes minutes."""
    layer_params = registry.family_of(cfg).hf_layer_params
    needed = len(layer_params) * cfg.num_hidden_layers + 2
    last = f"model.layers.{cfg.num_hidden_layers - 1}.{layer_params[0][1]}"
    if len(tensors) < needed or last not in tensors:
        source = next((getattr(t, "path", None) for t in tensors.values() if getattr(t, "path", None)), None)
        where = f" ({source})" if source else ""
        raise CheckpointError(
            f"config declares num_hidden_layers={cfg.num_hidden_layers} ({needed} tensors) but the checkpoint"
            f"{where} has {len(tensors)} tensors" + ("" if last in tensors else f" and no {last!r}")
        )


def model_from_state_dict(
    cfg: LlamaConfig, tensors: Mapping[str, Any], *, mesh=None, rules=None, strict: bool = True
) -> Llama:
    """The model of cfg's family (a Llama, Qwen2, Gemma2...) whose parameters are the HF-named
    `tensors` (numpy arrays or lazy loaders).

    Lazy loaders are objects with `.shape` and numpy-style slicing (e.g. `SafetensorsTensor`), or
    zero-argument callables returning an array. With a `mesh`, each parameter is created directly
    with its NamedSharding (rules: sharding.FSDP_RULES by default) via make_array_from_callback,
    reading only each device's block. Values are cast to cfg.param_dtype.
    `strict`: unknown tensor names are an error (they usually mean the wrong architecture).
    """
    tensors = {name: _resolve(t) for name, t in tensors.items()}
    _check_layer_count(cfg, tensors)
    table = param_table(cfg)
    model_class = registry.family_of(cfg).model_class
    abstract = nnx.eval_shape(lambda: model_class(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    param_dtype = jnp.dtype(cfg.param_dtype)

    expected_names = {name for spec in table for name in spec.hf_names}
    if strict:
        unknown = sorted(
            n
            for n in tensors
            if n not in expected_names
            and not n.endswith(_IGNORED_SUFFIXES)
            and not (cfg.tie_word_embeddings and n == "lm_head.weight")
        )
        if unknown:
            raise CheckpointError(
                f"unexpected tensors for {cfg.architecture} with {cfg.num_hidden_layers} layers: "
                f"{', '.join(_describe(n, tensors[n]) for n in unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )

    # Check everything before reading anything, so a bad checkpoint fails fast and whole.
    for spec in table:
        if spec.path not in flat:
            raise AssertionError(f"rename table path {spec.path} is not a model parameter")
        want = _hf_shape(tuple(flat[spec.path].shape), spec)
        for name in spec.hf_names:
            if name not in tensors:
                source = next((getattr(t, "path", None) for t in tensors.values() if getattr(t, "path", None)), None)
                raise CheckpointError(
                    f"missing tensor {name!r}" + (f" (checkpoint {pathlib.Path(source).parent})" if source else "")
                )
            got = tuple(tensors[name].shape)
            if got != want:
                raise CheckpointError(
                    f"{_describe(name, tensors[name])} has shape {got}, expected {want} for {cfg.architecture} config"
                )
    if len(table) != len(flat):
        missing = sorted(set(flat) - {spec.path for spec in table})
        raise AssertionError(f"model parameters without a rename entry: {missing}")

    values = {}
    for spec in table:
        variable = flat[spec.path]
        shape = tuple(variable.shape)
        if mesh is None:
            full = tuple(slice(None) for _ in shape)
            values[spec.path] = jnp.asarray(_read_block(spec, tensors, full, param_dtype))
        else:
            pspec = sharding_lib.logical_to_pspec(sharding_lib.variable_logical_axes(variable), shape, mesh, rules)
            named = jax.sharding.NamedSharding(mesh, pspec)
            values[spec.path] = jax.make_array_from_callback(
                shape, named, lambda index, spec=spec: _read_block(spec, tensors, index, param_dtype)
            )
    for path, value in values.items():
        flat[path].set_value(value)
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def state_dict_from_model(model: Llama) -> dict[str, np.ndarray]:
    """{HF name: numpy array} (HF layouts, parameter dtype); gathers sharded arrays to the host."""
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    out = {}
    for spec in param_table(model.cfg):
        value = np.asarray(jax.device_get(flat[spec.path][...]))
        for i, name in enumerate(spec.hf_names):
            tensor = value[i] if spec.stacked else value
            out[name] = np.ascontiguousarray(tensor.T if spec.transpose else tensor)
    return out


# -------------------------------------------------------------------------------------------------
# Folders.
# -------------------------------------------------------------------------------------------------


def load_hf_model(
    folder: str | os.PathLike, *, dtype: str | None = None, mesh=None, rules=None, **config_overrides
) -> Llama:
    """Model from an HF folder (config.json + model.safetensors or a sharded index).

    `dtype` sets the compute dtype; parameters keep float32 unless `param_dtype` is overridden.
    """
    if not pathlib.Path(folder).is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    if dtype is not None:
        config_overrides["dtype"] = dtype
    cfg = read_config(folder, **config_overrides)
    tensors = read_checkpoint_tensors(folder)
    return model_from_state_dict(cfg, tensors, mesh=mesh, rules=rules)


def save_hf(model: Llama, tokenizer, out_dir: str | os.PathLike) -> pathlib.Path:
    """Writes config.json, generation_config.json and model.safetensors (+ tokenizer files) that
    transformers' AutoModelForCausalLM.from_pretrained loads."""
    return write_hf_folder(out_dir, model.cfg.to_hf(), state_dict_from_model(model), tokenizer)


def write_hf_folder(
    out_dir: str | os.PathLike, config: dict[str, Any], tensors: Mapping[str, np.ndarray], tokenizer=None
) -> pathlib.Path:
    """Writes an HF folder from a config.json dict and {HF name: array}; shared by the causal-LM and
    the reward-model (sequence classification) exports so both write the same way."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    generation = {key: config.get(key) for key in ("bos_token_id", "pad_token_id", "eos_token_id")}
    (out_dir / GENERATION_CONFIG_NAME).write_text(json.dumps(generation, indent=2) + "\n")
    # An interrupted save never leaves a truncated checkpoint.
    with atomic_path(out_dir / SAFE_WEIGHTS_NAME) as tmp:
        safetensors.numpy.save_file(dict(tensors), tmp, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir


def iter_param_names(cfg: LlamaConfig) -> Iterator[str]:
    """All HF tensor names the model reads, in table order."""
    for spec in param_table(cfg):
        yield from spec.hf_names
