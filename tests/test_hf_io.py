"""Hugging Face checkpoint I/O: round trips through transformers, sharded indexes, loading into a
mesh of 8 fake CPU devices, and bad checkpoints (each must fail whole, naming file and tensor)."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from alignax.models import hf_io, sharding  # noqa: E402
from alignax.models.config import LlamaConfig  # noqa: E402
from alignax.models.llama import Llama  # noqa: E402

TOL = 1e-4


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def tokens():
    return np.random.RandomState(0).randint(3, 256, size=(2, 10)).astype(np.int32)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A transformers Llama (untied) saved as a single model.safetensors, and the torch model."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


def _torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(ids, np.int64))).logits.numpy()


def _copy(folder, tmp_path, name="copy"):
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("tied", [False, True])
def test_save_hf_round_trip_through_transformers(tmp_path, tokens, tied):
    """alignax random model -> save_hf -> transformers loads it -> same logits; and back again."""
    cfg = LlamaConfig.tiny(tie_word_embeddings=tied)
    model = Llama(cfg, rngs=nnx.Rngs(3))
    out = hf_io.save_hf(model, None, tmp_path / "export")
    assert (out / "generation_config.json").is_file()
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert type(torch_model).__name__ == "LlamaForCausalLM"
    ours = model(jnp.asarray(tokens))
    assert rel_err(ours, _torch_logits(torch_model, tokens)) < TOL
    reloaded = hf_io.load_hf_model(out)
    np.testing.assert_array_equal(reloaded(jnp.asarray(tokens)), ours)


def test_save_hf_mistral_and_scan_layers(tmp_path, tokens):
    cfg = LlamaConfig.tiny(architecture="MistralForCausalLM", sliding_window=4, scan_layers=True)
    model = Llama(cfg, rngs=nnx.Rngs(4))
    out = hf_io.save_hf(model, None, tmp_path / "mistral")
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert type(torch_model).__name__ == "MistralForCausalLM" and torch_model.config.sliding_window == 4
    assert rel_err(model(jnp.asarray(tokens)), _torch_logits(torch_model, tokens)) < TOL


def test_state_dict_matches_transformers_names_and_values(hf_folder):
    folder, torch_model = hf_folder
    ours = hf_io.state_dict_from_model(hf_io.load_hf_model(folder))
    theirs = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


def test_sharded_index_loading(hf_folder, tmp_path, tokens):
    _, torch_model = hf_folder
    out = tmp_path / "sharded"
    torch_model.save_pretrained(out, safe_serialization=True, max_shard_size="40KB")
    assert (out / hf_io.SAFE_WEIGHTS_INDEX_NAME).is_file()
    assert len(list(out.glob("model-*.safetensors"))) > 2
    model = hf_io.load_hf_model(out)
    assert rel_err(model(jnp.asarray(tokens)), _torch_logits(torch_model, tokens)) < TOL


class _RecordingTensor:
    """A lazy loader that records which blocks were read (to prove per-device reads)."""

    def __init__(self, array, reads):
        self._array, self._reads = array, reads
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, index):
        block = self._array[index]
        self._reads.append((self.shape, block.shape))
        return block


@pytest.mark.parametrize(
    "axes,rules", [({"fsdp": -1}, None), ({"fsdp": 2, "tensor": 4}, sharding.TENSOR_PARALLEL_RULES)]
)
def test_sharded_loading_on_fake_devices(hf_folder, tokens, axes, rules):
    assert jax.device_count() == 8, "tests/conftest.py asks for 8 fake CPU devices"
    folder, torch_model = hf_folder
    mesh = sharding.make_mesh(axes)
    cfg = hf_io.read_config(folder)
    reads = []
    tensors = {name: _RecordingTensor(v.numpy(), reads) for name, v in torch_model.state_dict().items()}
    model = hf_io.model_from_state_dict(cfg, tensors, mesh=mesh, rules=rules)

    q = model.model.layers[0].self_attn.q_proj.kernel[...]
    embed = model.model.embed_tokens.embedding[...]
    if rules is None:  # FSDP: the "embed" axis over fsdp=8
        assert q.sharding == NamedSharding(mesh, P("fsdp", None))
        assert embed.sharding == NamedSharding(mesh, P(None, "fsdp"))
    else:  # + tensor parallel: heads and vocab over tensor=4
        assert q.sharding == NamedSharding(mesh, P("fsdp", "tensor"))
        assert embed.sharding == NamedSharding(mesh, P("tensor", "fsdp"))
    assert all(shard.data.size < q.size for shard in q.addressable_shards)
    # No tensor was ever read whole: each read is one device's block.
    assert reads and all(np.prod(block) < np.prod(full) for full, block in reads if len(full) == 2)
    # The sharding pytree the trainer will use agrees with where the loader put things.
    expected = sharding.param_shardings(model, mesh, rules)
    placed = jax.tree.map(
        lambda v: v[...].sharding, nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    assert jax.tree.leaves(expected) == jax.tree.leaves(placed)

    logits = nnx.jit(lambda m, ids: m(ids))(model, jnp.asarray(tokens))
    assert rel_err(logits, _torch_logits(torch_model, tokens)) < TOL


def test_make_mesh_shapes():
    mesh = sharding.make_mesh({"data": 2, "fsdp": -1})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.make_mesh({"data": 3, "fsdp": 2})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        sharding.make_mesh({"model": 8})


def test_lazy_callables_and_numpy_arrays(hf_folder, tokens):
    folder, torch_model = hf_folder
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    calls = []
    tensors = {k: (lambda v=v, k=k: calls.append(k) or v) for k, v in state.items()}
    model = hf_io.model_from_state_dict(hf_io.read_config(folder), tensors)
    assert sorted(calls) == sorted(state)
    assert rel_err(model(jnp.asarray(tokens)), _torch_logits(torch_model, tokens)) < TOL


# --- bad input -----------------------------------------------------------------------------------


def test_missing_folder_and_files(hf_folder, tmp_path):
    folder, _ = hf_folder
    with pytest.raises(hf_io.CheckpointError, match="not found"):
        hf_io.load_hf_model(tmp_path / "nope")
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(folder / "config.json", no_weights)
    (no_weights / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(hf_io.CheckpointError, match=r"no model\.safetensors.*pickle"):
        hf_io.load_hf_model(no_weights)
    no_config = _copy(folder, tmp_path, "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(hf_io.CheckpointError, match=r"config\.json not found"):
        hf_io.load_hf_model(no_config)


def test_truncated_safetensors(hf_folder, tmp_path):
    folder = _copy(hf_folder[0], tmp_path)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(hf_io.CheckpointError, match=r"model\.safetensors: truncated: tensor '[\w.]+'"):
        hf_io.load_hf_model(folder)


def test_corrupt_safetensors_header(hf_folder, tmp_path):
    folder = _copy(hf_folder[0], tmp_path)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    path.write_bytes(bytes(data))
    with pytest.raises(hf_io.CheckpointError, match=r"model\.safetensors: corrupt safetensors header"):
        hf_io.load_hf_model(folder)
    path.write_bytes(b"\x00\x01")
    with pytest.raises(hf_io.CheckpointError, match="not a safetensors file"):
        hf_io.load_hf_model(folder)


def test_unknown_architecture(hf_folder, tmp_path):
    folder = _copy(hf_folder[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"], config["model_type"] = ["GPT2LMHeadModel"], "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(hf_io.CheckpointError, match=r"config\.json.*unknown architecture 'GPT2LMHeadModel'"):
        hf_io.load_hf_model(folder)


def test_missing_tensor(hf_folder, tmp_path):
    folder = _copy(hf_folder[0], tmp_path)
    path = folder / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    del tensors["model.layers.1.mlp.down_proj.weight"]
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})
    with pytest.raises(hf_io.CheckpointError, match=r"missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight'"):
        hf_io.load_hf_model(folder)


def test_shape_mismatch(hf_folder, tmp_path):
    folder = _copy(hf_folder[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 96
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        hf_io.CheckpointError,
        match=r"tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' in .*model\.safetensors "
        r"has shape \(128, 64\), expected \(96, 64\)",
    ):
        hf_io.load_hf_model(folder)


def test_index_naming_a_tensor_its_shard_lacks(hf_folder, tmp_path):
    _, torch_model = hf_folder
    out = tmp_path / "sharded"
    torch_model.save_pretrained(out, safe_serialization=True, max_shard_size="40KB")
    index = json.loads((out / hf_io.SAFE_WEIGHTS_INDEX_NAME).read_text())
    shard = index["weight_map"]["model.norm.weight"]
    index["weight_map"]["model.extra.weight"] = shard
    (out / hf_io.SAFE_WEIGHTS_INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(hf_io.CheckpointError, match=rf"{shard}: tensor 'model\.extra\.weight'"):
        hf_io.load_hf_model(out)


def test_unexpected_tensor_is_an_error(hf_folder):
    folder, torch_model = hf_folder
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    state["model.layers.2.mlp.up_proj.weight"] = state["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(hf_io.CheckpointError, match=r"unexpected tensors.*model\.layers\.2\.mlp\.up_proj"):
        hf_io.model_from_state_dict(hf_io.read_config(folder), state)


def test_shard_model_places_params_by_rules(tokens):
    model = Llama(LlamaConfig.tiny(scan_layers=True), rngs=nnx.Rngs(0))
    before = np.asarray(model(jnp.asarray(tokens)))
    mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
    sharding.shard_model(model, mesh, sharding.TENSOR_PARALLEL_RULES)
    up = model.model.layers.mlp.up_proj.kernel[...]  # stacked: [layers, embed, mlp]
    assert up.sharding == NamedSharding(mesh, P(None, "fsdp", "tensor"))
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(tokens)), before, rtol=1e-5, atol=1e-5)
