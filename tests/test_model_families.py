"""Qwen2 and Gemma-2 against transformers (torch, fp32) on tiny random configs; the family registry.

Each reference model is made by transformers from a tiny config in the test (no download), its
weights pushed far from init, saved with save_pretrained(safetensors) and opened with
alignax.models.load, which picks the family from config.json's `architectures`. Error metric:
max|a - b| / max|b|, as in test_model.py.
"""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from helpers import TINY_HF_CONFIG  # noqa: E402

import alignax.models as models  # noqa: E402
from alignax.models import hf_io, registry  # noqa: E402
from alignax.models.contract import CausalLM, ModelConfig  # noqa: E402
from alignax.models.gemma2 import Gemma2, Gemma2Config  # noqa: E402
from alignax.models.llama import Llama  # noqa: E402
from alignax.models.qwen2 import Qwen2, Qwen2Config  # noqa: E402
from alignax.sample import generate  # noqa: E402

TOL = 1e-4
SEQ = 12
COMMON = TINY_HF_CONFIG
# Small caps so that tanh saturates on these weights: soft-capping changes the logits.
GEMMA = dict(
    head_dim=16, query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=3.0, final_logit_softcapping=5.0
)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _hf_config(kind):
    if kind == "qwen2":  # untied, Qwen2.5's rope theta
        return transformers.Qwen2Config(**COMMON, rope_theta=1e6, tie_word_embeddings=False)
    if kind == "qwen2_tied_window":  # tied (Qwen2.5 0.5B-3B); layer 1 >= max_window_layers slides
        return transformers.Qwen2Config(
            **COMMON, tie_word_embeddings=True, use_sliding_window=True, sliding_window=5, max_window_layers=1
        )
    if kind == "gemma2":  # tied; layer 0 local (window 4 < SEQ), layer 1 global
        return transformers.Gemma2Config(**COMMON, **GEMMA, attn_implementation="eager")
    if kind == "gemma2_untied":
        return transformers.Gemma2Config(
            **{**COMMON, "num_hidden_layers": 3}, **GEMMA, tie_word_embeddings=False, attn_implementation="eager"
        )
    raise ValueError(kind)


KINDS = ("qwen2", "qwen2_tied_window", "gemma2", "gemma2_untied")
FAMILY_CLASS = {"qwen2": Qwen2, "qwen2_tied_window": Qwen2, "gemma2": Gemma2, "gemma2_untied": Gemma2}


def _randomize(torch_model, seed):
    """Weights far from init so every term matters (Gemma norms multiply by 1 + w: w around 0)."""
    gen = torch.Generator().manual_seed(seed)
    gemma = "Gemma2" in type(torch_model).__name__
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_((0.0 if gemma else 1.0) + 0.2 * noise)
            else:
                p.copy_(0.15 * noise)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """kind -> (folder, torch model, alignax model), built on first use."""
    cache = {}

    def get(kind):
        if kind not in cache:
            torch.manual_seed(0)
            torch_model = transformers.AutoModelForCausalLM.from_config(_hf_config(kind), torch_dtype=torch.float32)
            _randomize(torch_model, seed=KINDS.index(kind) + 1)
            torch_model.eval()
            folder = tmp_path_factory.mktemp(kind)
            torch_model.save_pretrained(folder, safe_serialization=True)
            model, tokenizer = models.load(str(folder))
            assert tokenizer is None
            cache[kind] = (folder, torch_model, model)
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).integers(3, 256, size=(2, SEQ)).astype(np.int32)


@pytest.fixture(scope="module")
def forward():
    """One jitted forward per model graph, shared by every test."""

    @nnx.jit
    def run(model, ids):
        return model(ids)

    return run


def torch_logits(torch_model, ids):
    with torch.no_grad():
        return torch_model(torch.from_numpy(np.asarray(ids)).long()).logits.numpy()


@pytest.mark.parametrize("kind", KINDS)
def test_logits_parity_with_transformers(checkpoints, tokens, forward, kind):
    folder, torch_model, model = checkpoints(kind)
    assert type(model) is FAMILY_CLASS[kind]
    ref = torch_logits(torch_model, tokens)
    err = rel_err(forward(model, jnp.asarray(tokens)), ref)
    assert err < TOL, f"{kind}: rel err {err:.2e}"


def test_gemma2_features_matter(checkpoints, tokens, forward):
    """The parity above is not vacuous: dropping soft-capping, the sliding window or the query
    scale each moves the logits far beyond the tolerance."""
    _, torch_model, model = checkpoints("gemma2")
    ref = torch_logits(torch_model, tokens)
    base = {**model.cfg.to_hf(), "dtype": "float32"}
    for change in (
        {"final_logit_softcapping": None},
        {"attn_logit_softcapping": None},
        {"layer_types": ["full_attention"] * 2},
        {"query_pre_attn_scalar": 16},
    ):
        cfg = Gemma2Config.from_hf({**base, **change})
        other = hf_io.model_from_state_dict(cfg, hf_io.state_dict_from_model(model))
        assert rel_err(forward(other, jnp.asarray(tokens)), ref) > 1e-2, change


def test_hidden_states_and_head_give_the_logits(checkpoints, tokens):
    """The trainer's path (hidden_states -> lm_head_weight, soft-capped per final_logit_softcap)
    gives the forward's logits, and every family satisfies the written contract."""
    for kind in ("qwen2", "gemma2"):
        _, torch_model, model = checkpoints(kind)
        assert isinstance(model, CausalLM)
        hidden = model.hidden_states(jnp.asarray(tokens))
        logits = jnp.einsum("btd,dv->btv", hidden, model.lm_head_weight())
        cap = model.final_logit_softcap
        assert (cap is None) == (kind == "qwen2")
        if cap is not None:
            logits = jnp.tanh(logits / cap) * cap
        assert rel_err(logits, torch_logits(torch_model, tokens)) < TOL


def test_gemma2_scan_layers_alternating_windows(checkpoints, tokens):
    """lax.scan over stacked layers picks each layer's (local or global) mask."""
    folder, torch_model, _ = checkpoints("gemma2_untied")
    model = hf_io.load_hf_model(folder, scan_layers=True)
    err = rel_err(nnx.jit(lambda m, ids: m(ids))(model, jnp.asarray(tokens)), torch_logits(torch_model, tokens))
    assert err < TOL


def test_qwen2_tensor_parallel_loading(checkpoints, tokens):
    """The q/k/v biases carry logical axes: over tensor=4 they are split like their kernels."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from alignax.models import sharding

    folder, torch_model, _ = checkpoints("qwen2")
    mesh = sharding.make_mesh({"fsdp": 2, "tensor": 4})
    model = hf_io.load_hf_model(folder, mesh=mesh, rules=sharding.TENSOR_PARALLEL_RULES)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.bias[...].sharding == NamedSharding(mesh, P("tensor"))
    assert attn.q_proj.kernel[...].sharding == NamedSharding(mesh, P("fsdp", "tensor"))
    logits = nnx.jit(lambda m, ids: m(ids))(model, jnp.asarray(tokens))
    assert rel_err(logits, torch_logits(torch_model, tokens)) < TOL


@pytest.mark.parametrize("kind", ("qwen2_tied_window", "gemma2_untied"))
def test_save_hf_round_trip(checkpoints, tokens, tmp_path, kind):
    """HF folder -> alignax -> save_hf -> transformers and alignax read it back unchanged."""
    folder, torch_model, model = checkpoints(kind)
    out = models.save_hf(model, None, tmp_path / "out")
    reloaded_torch = transformers.AutoModelForCausalLM.from_pretrained(
        out, torch_dtype=torch.float32, attn_implementation="eager"
    ).eval()  # sdpa drops softcapping
    assert type(reloaded_torch) is type(torch_model)
    for key in ("tie_word_embeddings", "sliding_window", "layer_types", "rope_theta", "num_key_value_heads"):
        assert getattr(reloaded_torch.config, key) == getattr(torch_model.config, key), key
    ref = torch_logits(torch_model, tokens)
    assert rel_err(torch_logits(reloaded_torch, tokens), ref) < 1e-6
    reloaded, _ = models.load(str(out))
    assert reloaded.cfg == model.cfg
    original, again = hf_io.state_dict_from_model(model), hf_io.state_dict_from_model(reloaded)
    assert sorted(original) == sorted(again)
    for name, value in original.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
    saved = hf_io.read_checkpoint_tensors(out)
    with torch.no_grad():
        torch_state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    for name in saved:  # every saved tensor is the transformers tensor of that name
        np.testing.assert_array_equal(np.asarray(saved[name]), torch_state[name], err_msg=name)


@pytest.mark.parametrize("kind", ("qwen2", "gemma2"))
def test_greedy_generation_equals_transformers(checkpoints, kind):
    """alignax.sample.generate (left-padded batch, KV cache) vs transformers generate, greedy.

    Generation runs past the sliding window (Gemma-2: 4) so the local layers' cache masking
    counts. Both stop at EOS (id 2); the comparison runs through it."""
    _, torch_model, model = checkpoints(kind)
    rng = np.random.default_rng(1)
    prompts = [list(map(int, rng.integers(3, 256, size=n))) for n in (5, 9)]
    new = 10
    tokenizer = types.SimpleNamespace(pad_token_id=0, eos_token_id=2, decode=lambda ids: " ".join(map(str, ids)))
    ours = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=new,
        temperature=0.0,
        eos_token_ids=[2],
        batch_size=2,
        chat_template=False,
    )
    for prompt, generation in zip(prompts, ours):
        with torch.no_grad():
            out = torch_model.generate(
                torch.tensor([prompt]), max_new_tokens=new, do_sample=False, eos_token_id=2, pad_token_id=0
            )
        theirs = out[0, len(prompt) :].tolist()
        if 2 in theirs:
            theirs = theirs[: theirs.index(2) + 1]
        assert list(generation.token_ids) == theirs, kind
        assert len(theirs) == new or theirs[-1] == 2
    assert max(len(g.token_ids) for g in ours) > GEMMA["sliding_window"] + 1


# --------------------------------------------------------------------------------- the registry


def test_registry_selects_family_by_architecture():
    expected = {
        "LlamaForCausalLM": "llama",
        "MistralForCausalLM": "llama",
        "Qwen2ForCausalLM": "qwen2",
        "Gemma2ForCausalLM": "gemma2",
    }
    assert set(registry.architectures()) == set(expected)
    for architecture, name in expected.items():
        family = registry.family_for_architecture(architecture)
        assert family.name == name
        cfg = registry.config_from_hf({**COMMON, "architectures": [architecture]})
        assert isinstance(cfg, family.config_class) and cfg.architecture == architecture
        assert isinstance(cfg, ModelConfig)
        assert registry.family_of(cfg) is family
    # model_type alone (config.json without "architectures") also selects the family
    assert isinstance(registry.config_from_hf({**COMMON, "model_type": "gemma2"}), Gemma2Config)
    assert isinstance(registry.config_from_hf({**COMMON, "model_type": "qwen2"}), Qwen2Config)
    with pytest.raises(
        ValueError, match=r"unknown architecture 'GPT2LMHeadModel'.*Qwen2ForCausalLM.*Gemma2ForCausalLM"
    ):
        registry.config_from_hf({**COMMON, "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(ValueError, match="unknown architecture 'PhiForCausalLM'"):
        registry.family_for_architecture("PhiForCausalLM")


def test_each_family_model_is_a_causal_lm_with_a_complete_key_map():
    """Random-init models of every family satisfy the contract, and each family's key map names
    every parameter once (save -> state dict -> load is exact)."""
    configs = (models.LlamaConfig.tiny(), Qwen2Config.tiny(tie_word_embeddings=True), Gemma2Config.tiny())
    for cfg in configs:
        family = registry.family_of(cfg)
        model = family.model_class(cfg, rngs=nnx.Rngs(0))
        assert isinstance(model, CausalLM) and isinstance(model, Llama)
        tensors = hf_io.state_dict_from_model(model)
        assert len(tensors) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
        again = hf_io.model_from_state_dict(cfg, tensors)
        for name, value in hf_io.state_dict_from_model(again).items():
            np.testing.assert_array_equal(value, tensors[name], err_msg=name)
    # Gemma norms start at zero (multiplied by 1 + w); Qwen2 has q/k/v biases but no o_proj bias
    gemma = Gemma2(Gemma2Config.tiny(), rngs=nnx.Rngs(0))
    assert float(jnp.abs(gemma.model.norm.weight[...]).max()) == 0.0
    names = set(hf_io.iter_param_names(Qwen2Config.tiny()))
    assert "model.layers.0.self_attn.k_proj.bias" in names and "model.layers.0.self_attn.o_proj.bias" not in names


def test_unsupported_settings_fail_by_name():
    cases = [
        ({"architectures": ["Qwen2ForCausalLM"], "hidden_act": "gelu"}, "hidden_act='gelu'"),
        (
            {"architectures": ["Qwen2ForCausalLM"], "rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
            "rope_type='yarn'",
        ),
        ({"architectures": ["Gemma2ForCausalLM"], "attention_bias": True}, "attention_bias=True"),
        ({"architectures": ["Gemma2ForCausalLM"], "hidden_activation": "gelu"}, "hidden_activation='gelu'"),
        ({"architectures": ["Gemma2ForCausalLM"], "layer_types": ["full_attention"]}, "layer_types"),
        ({"architectures": ["Gemma2ForCausalLM"], "final_logit_softcapping": -1.0}, "final_logit_softcapping"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            registry.config_from_hf({**COMMON, **change})


def test_loading_a_folder_names_the_family_problem(checkpoints, tmp_path):
    """A Gemma-2 config.json over Qwen2 tensors fails naming the missing Gemma tensor."""
    folder, _, _ = checkpoints("qwen2")
    config = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(
        json.dumps({**config, "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "head_dim": 16})
    )
    (bad / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(hf_io.CheckpointError, match="pre_feedforward_layernorm|unexpected tensors"):
        models.load(str(bad))
