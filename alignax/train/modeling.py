"""The model side of a run: mesh from config, the policy (pretrained or tiny random), export."""

from __future__ import annotations

import dataclasses
import functools
import os

import ml_collections
from flax import nnx

from alignax.models import sharding
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.models.tokenizer import Tokenizer


def make_mesh(mesh_config: ml_collections.ConfigDict):
    """Mesh with axes (data, fsdp, tensor) from config sizes; -1 takes the remaining devices.

    `mesh_config.num_devices` (-1 = all) uses only the first n devices of a single process, e.g.
    n = 1 for the single-device baseline that sharded runs must match."""
    import jax

    devices = jax.devices()
    num_devices = int(mesh_config.get("num_devices", -1))
    if num_devices != -1:
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError(
                f"mesh.num_devices={num_devices} must be -1 (all {len(devices)} devices) in a multi-process run"
            )
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"mesh.num_devices={num_devices}; this process sees {len(devices)} devices")
        devices = devices[:num_devices]
    return sharding.make_mesh({axis: int(mesh_config[axis]) for axis in sharding.MESH_AXES}, devices=devices)


@functools.lru_cache(maxsize=8)
def load_tokenizer(source: str) -> Tokenizer:
    """The tokenizer of a preset, a .gguf file or an HF folder (without loading the weights).

    Cached per process: parsing a GGUF's vocabulary takes seconds, and runs in one process (tests,
    sweeps) reuse it; the tokenizer is never mutated."""
    from alignax.models import presets

    path = presets.resolve(source) if presets.is_preset(source) else source
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"tokenizer source {source!r} not found (expected a preset name, a .gguf file or an HF folder)"
        )
    if os.fspath(path).endswith(".gguf"):
        return Tokenizer.from_gguf(path)
    return Tokenizer.from_dir(path)


def build_model(config: ml_collections.ConfigDict, mesh) -> tuple[Llama, Tokenizer]:
    """The policy, placed on the mesh by the rule table.

    `config.random_init.enabled`: a tiny random Llama with the tokenizer of `config.model` (tests,
    the `tiny` presets). Otherwise the pretrained weights of `config.model`, loaded straight into
    their sharded layout."""
    overrides = dict(dtype=config.dtype, remat=config.remat, scan_layers=config.scan_layers)
    if config.random_init.enabled:
        tokenizer = load_tokenizer(config.model)
        fields = {k: v for k, v in config.random_init.to_dict().items() if k != "enabled"}
        cfg = LlamaConfig.tiny(
            vocab_size=tokenizer.vocab_size,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **fields,
            **overrides,
        )
        model = sharding.shard_model(Llama(cfg, rngs=nnx.Rngs(config.seed)), mesh)
        return _wrap_for_method(config, _add_lora(config, model, mesh), mesh), tokenizer
    from alignax.models import load

    model, tokenizer = load(config.model, dtype=config.dtype, mesh=mesh)
    if getattr(model, "final_logit_softcap", None) is not None:
        # The training log-prob kernel (alignax/ops/logprobs.py) does not soft-cap the logits yet:
        # Gemma-2's training log-probs would be silently wrong.
        raise ValueError(
            f"{config.model}: training a model with final-logit soft-capping (Gemma-2) is not "
            "supported yet; inference (alignax.sample, alignax.serve) is"
        )
    if config.scan_layers:
        raise ValueError("scan_layers=True is only supported for random_init models for now (stacked parameters)")
    if model.cfg.remat != config.remat:  # remat changes how the backward pass runs, not the params
        model.cfg = dataclasses.replace(model.cfg, remat=config.remat)
    return _wrap_for_method(config, _add_lora(config, model, mesh), mesh), tokenizer


def _add_lora(config, model: Llama, mesh) -> Llama:
    """`config.lora.rank > 0`: adapters on the projections `config.lora.target` selects
    (alignax/models/lora.py), placed on the mesh by the rule table; rank 0 leaves the model as is."""
    from alignax.models import lora

    spec = lora.spec_from_config(config.get("lora"))
    if spec is None:
        return model
    names = lora.apply_lora(model, spec, nnx.Rngs(config.seed + 2))
    print(
        f"LoRA r={spec.rank} alpha={spec.alpha:g} dropout={spec.dropout:g} on {len(names)} projections "
        f"(target {spec.target!r})"
    )
    return sharding.shard_model(model, mesh)


def _wrap_for_method(config, model: Llama, mesh):
    """The reward-model method trains the backbone plus a scalar head."""
    if config.method != "reward_model":
        return model
    from alignax.models.reward_head import RewardModel

    # The new head is created on the default device: place it on the mesh like everything else
    # (the backbone is already placed; shard_model re-places it where it is).
    return sharding.shard_model(RewardModel(model, rngs=nnx.Rngs(config.seed + 1)), mesh)


def export_hf(model, tokenizer: Tokenizer, out_dir: str) -> str:
    """The final model as a Hugging Face folder (config.json + safetensors + tokenizer files).

    A reward model is written as a sequence-classification model (backbone + `score.weight`), so
    the trained head is kept and transformers' AutoModelForSequenceClassification scores like it."""
    from alignax.models import save_hf
    from alignax.models.reward_head import RewardModel, save_reward_model_hf

    if isinstance(model, RewardModel):
        save_reward_model_hf(model, tokenizer, out_dir)
    else:
        save_hf(model, tokenizer, out_dir)
    return out_dir
