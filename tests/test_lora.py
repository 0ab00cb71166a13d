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
    assert (
        a.shape == (fan_in, 4) and np.all(np.abs(a) <= 1 / math.sqrt(fan_in)) and a.std() > 0.5 / math.sqrt(3 * fan_in)
    )
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
    np.testing.assert_allclose(
        np.asarray(lora.merged_kernel(module))[0] if scan else np.asarray(lora.merged_kernel(module)),
        w + 2.0 * a @ b,
        rtol=1e-6,
        atol=1e-6,
    )


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
    ((_, q_proj),) = [(p, m) for p, m in lora.lora_modules(model) if p == ("model", "layers", 0, "self_attn", "q_proj")]
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


# ----------------------------------------------------------------------------- the engine with adapters


def lora_dpo_config(**overrides):
    import configs.dpo

    config = configs.dpo.get_config("tiny")
    config.update_from_flattened_dict(
        {
            "total_steps": 2,
            "checkpoint_every": 2,
            "eval_batches": 1,
            "data.length_multiple": 64,
            "lora.rank": 4,
            "lora.alpha": 8.0,
            "lora.target": "q_proj|v_proj|up_proj",
            **overrides,
        }
    )
    return config


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lora_dpo")
    config = lora_dpo_config()
    return workdir, config, train(config, str(workdir))


def key_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]


def checkpointed(tree, path):
    """The array at a module path + leaf name in a restored Orbax tree (nnx variables end in "value")."""
    for part in path:
        tree = tree[str(part)]
    return np.asarray(tree["value"] if isinstance(tree, dict) else tree)


def test_only_adapters_train_and_are_checkpointed(dpo_run):
    workdir, config, _ = dpo_run
    restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / "2" / "state")
    paths = [key_names(path) for path, _ in jax.tree_util.tree_flatten_with_path(restored["params"])[0]]
    assert len(paths) == 2 * 3 * config.random_init.num_hidden_layers
    assert all({"lora_a", "lora_b"} & set(names) for names in paths), paths[:4]
    adapter_size = sum(np.size(x) for x in jax.tree.leaves(restored["params"]))
    # AdamW's two moments cover exactly the adapters (plus scalar counts).
    moment_size = sum(np.size(x) for x in jax.tree.leaves(restored["opt_state"]) if np.ndim(x) > 0)
    assert moment_size == 2 * adapter_size


def test_dpo_reference_is_the_base_model(dpo_run):
    """At step 1 B = 0, so the policy equals its reference exactly: every reward is 0; after the
    first update the rewards move (the reference stays the base, not a moving copy)."""
    workdir, _, _ = dpo_run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    first, second = [r for r in records if "loss" in r]
    assert abs(first["rewards/chosen"]) < 1e-5 and abs(first["rewards/rejected"]) < 1e-5
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert abs(second["rewards/chosen"]) > 1e-6 and math.isfinite(second["loss"])


def test_exports_merged_and_peft_folders_of_the_trained_adapters(dpo_run):
    """export/ holds W + s A B with the checkpointed A, B; export_adapter/ holds A^T, B^T."""
    from alignax.train import modeling

    workdir, config, _ = dpo_run
    restored = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / "2" / "state")["params"]
    model, _ = modeling.build_model(config, modeling.make_mesh(config.mesh))  # the same base weights
    merged = safetensors.numpy.load_file(str(workdir / "export" / "model.safetensors"))
    adapter = safetensors.numpy.load_file(str(workdir / "export_adapter" / "adapter_model.safetensors"))
    for path, module in lora.lora_modules(model):
        name = lora.module_name(path)
        a, b = checkpointed(restored, (*path, "lora_a")), checkpointed(restored, (*path, "lora_b"))
        assert np.abs(b).max() > 0
        np.testing.assert_allclose(
            merged[f"{name}.weight"], (np.asarray(module.kernel[...]) + 2.0 * a @ b).T, atol=1e-6
        )
        np.testing.assert_array_equal(adapter[f"base_model.model.{name}.lora_A.weight"], a.T)
        np.testing.assert_array_equal(adapter[f"base_model.model.{name}.lora_B.weight"], b.T)
    adapter_config = json.loads((workdir / "export_adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 8.0 and adapter_config["peft_type"] == "LORA"


def test_mesh_gives_the_single_device_numbers(dpo_run, tmp_path):
    """Adapters sharded by the rule table ("lora_rank" replicated, the other axis by its rule) on a
    data x fsdp x tensor mesh of 8 devices: the same losses as one device."""
    workdir, _, _ = dpo_run
    config = lora_dpo_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2, "export": False})
    train(config, str(tmp_path))
    single, mesh = (
        [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
        for d in (workdir, tmp_path)
    )
    np.testing.assert_allclose(mesh, single, rtol=2e-4)


def test_lora_sft_from_the_cli(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.sft",
            "--config",
            "configs/sft.py:tiny",
            "--workdir",
            str(tmp_path),
            "--config.lora.rank=16",
            "--config.lora.dropout=0.1",
            "--config.total_steps=2",
            "--config.eval_batches=0",
            "--config.data.length_multiple=64",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert (tmp_path / "export_adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "export_adapter" / "adapter_config.json").read_text())["r"] == 16


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("lora.rank", -1, "lora.rank"),
        ("lora.dropout", 1.0, "lora.dropout"),
        ("lora.target", "(", "lora.target"),
        ("lora.alpha", 0.0, "lora.alpha"),
        ("lora.init", "orthogonal", "lora.init"),
    ],
)
def test_bad_lora_config_is_an_error_naming_the_key(key, value, match):
    config = lora_dpo_config()
    config.update_from_flattened_dict({key: value})
    with pytest.raises(validate.ConfigError, match=match):
        validate.check_config(config)
