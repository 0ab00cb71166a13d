"""LoRA (alignax/models/lora.py): the transform against its formula, PEFT's init and export layout
(loaded by the real peft library on the transformers model), and runs of the engine with adapters:
only adapters train and are checkpointed, the DPO reference is the base model, the mesh gives the
single-device numbers, and LoRA-SFT runs from the CLI."""
import functools
import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy
from flax import nnx

from alignax.models import lora, save_hf
from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.train import validate
from alignax.train.loop import train

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
IDS = (np.arange(2 * 9).reshape(2, 9) * 7 % 61).astype(np.int32)


def tiny_model(seed=0, **overrides):
    cfg = LlamaConfig.tiny(vocab_size=61, **overrides)
    return Llama(cfg, rngs=nnx.Rngs(seed))


def randomize_b(model, seed=1, scale=0.2):
    for index, (_, module) in enumerate(lora.lora_modules(model)):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
        module.lora_b.set_value(scale * jax.random.normal(key, module.lora_b.shape))


def test_targets_by_regex_and_init_as_peft():
    model = tiny_model()
    spec = lora.LoRASpec(rank=4, alpha=8.0, target=r"layers\.1\..*(gate|up)_proj")
    names = lora.apply_lora(model, spec, nnx.Rngs(3))
    assert names == ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"]
    (_, gate), _ = lora.lora_modules(model)
    fan_in = gate.kernel.shape[0]
    a = np.asarray(gate.lora_a[...])
    assert a.shape == (fan_in, 4) and np.all(np.abs(a) <= 1 / math.sqrt(fan_in)) and a.std() > 0.5 / math.sqrt(3 * fan_in)
    assert not np.asarray(gate.lora_b[...]).any()
    assert gate.scaling == 2.0 and lora.LoRASpec(rank=4, alpha=8.0, use_rslora=True).scaling == 4.0
    with pytest.raises(ValueError, match="matches no projection"):
        lora.apply_lora(tiny_model(), lora.LoRASpec(rank=2, target="lm_head"), nnx.Rngs(0))


@pytest.mark.parametrize("scan", [False, True], ids=["layers", "scanned"])
def test_forward_is_w_plus_scaled_ab(scan):
    model = tiny_model(scan_layers=scan)
    base = np.asarray(model(IDS))
    lora.apply_lora(model, lora.LoRASpec(rank=3, alpha=6.0, target="q_proj|v_proj|down_proj"), nnx.Rngs(1))
    np.testing.assert_array_equal(np.asarray(model(IDS)), base)  # B = 0: the base model
    randomize_b(model)
    adapted = np.asarray(model(IDS))
    assert np.abs(adapted - base).max() > 1e-2
    np.testing.assert_array_equal(np.asarray(lora.without_adapters(model)(IDS)), base)
    np.testing.assert_allclose(np.asarray(lora.merge_adapters(model)(IDS)), adapted, atol=1e-5)
    # The formula on one projection: x W + (alpha / r) x A B.
    _, module = lora.lora_modules(model)[0]
    x = jax.random.normal(jax.random.PRNGKey(0), (2, module.kernel.shape[-2]))
    if scan:
        module = nnx.merge(*nnx.split(module))  # layer 0's slice below
        w, a, b = (np.asarray(v[...])[0] for v in (module.kernel, module.lora_a, module.lora_b))
    else:
        w, a, b = (np.asarray(v[...]) for v in (module.kernel, module.lora_a, module.lora_b))
        np.testing.assert_allclose(np.asarray(module(x)), x @ w + 2.0 * (x @ a) @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lora.merged_kernel(module))[0] if scan else np.asarray(lora.merged_kernel(module)),
                               w + 2.0 * a @ b, rtol=1e-6, atol=1e-6)


def test_dropout_only_in_train_mode_with_fresh_keys():
    model = tiny_model()
    lora.apply_lora(model, lora.LoRASpec(rank=4, dropout=0.5), nnx.Rngs(1))
    randomize_b(model)
    graphdef, params, rest = nnx.split(model, lora.TRAINABLE, ...)

    @functools.partial(jax.jit, static_argnums=3)
    def logits(params, rest, key, train):
        merged = nnx.merge(graphdef, params, rest)
        if train:
            lora.train_mode(merged, key)
        return merged(IDS)

    eval_logits = logits(params, rest, jax.random.PRNGKey(0), False)
    np.testing.assert_allclose(np.asarray(eval_logits), np.asarray(model(IDS)), atol=1e-5)
    first, second = (logits(params, rest, jax.random.PRNGKey(k), True) for k in (0, 1))
    assert np.abs(np.asarray(first - eval_logits)).max() > 1e-3 and np.abs(np.asarray(first - second)).max() > 1e-3


def test_peft_export_loads_in_peft_and_equals_the_merged_export(tmp_path):
    """adapter_model.safetensors with PEFT's names, loaded by peft.PeftModel.from_pretrained on the
    transformers base model: logits equal the merged HF export's within 1e-4."""
    import peft
    import torch
    import transformers

    model = tiny_model(seed=4)
    spec = lora.LoRASpec(rank=4, alpha=8.0, target="q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj")
    lora.apply_lora(model, spec, nnx.Rngs(5))
    randomize_b(model, seed=6)
    save_hf(model, None, tmp_path / "base")  # the kernels alone: the base model
    save_hf(lora.merge_adapters(model), None, tmp_path / "merged")
    lora.save_peft_adapter(model, str(tmp_path / "adapter"), spec)

    tensors = safetensors.numpy.load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    (_, q_proj), = [(p, m) for p, m in lora.lora_modules(model) if p == ("model", "layers", 0, "self_attn", "q_proj")]
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    np.testing.assert_array_equal(tensors[f"{key}.lora_A.weight"], np.asarray(q_proj.lora_a[...]).T)  # [r, in]
    np.testing.assert_array_equal(tensors[f"{key}.lora_B.weight"], np.asarray(q_proj.lora_b[...]).T)  # [out, r]
    assert len(tensors) == 2 * 7 * model.cfg.num_hidden_layers

    ids = torch.tensor(IDS, dtype=torch.long)
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", torch_dtype=torch.float32)
    with torch.no_grad():
        base_logits = base(ids).logits.numpy()
        peft_model = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        peft_logits = peft_model(ids).logits.numpy()
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged", torch_dtype=torch.float32)
        merged_logits = merged(ids).logits.numpy()
    assert np.abs(peft_logits - base_logits).max() > 1e-2  # the adapters were applied
    np.testing.assert_allclose(peft_logits, merged_logits, atol=1e-4)
    np.testing.assert_allclose(peft_logits, np.asarray(model(IDS)), atol=1e-4)
