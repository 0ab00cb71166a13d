"""alignax.merge on Hugging Face folders: merged tiny Llamas load in transformers, and the merges equal
mergekit's (task arithmetic, TIES) or match it in distribution (DARE, whose masks come from other RNGs).
The formulas themselves are tested against numpy in tests/test_merge.py.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import numpy_ties, read_folder, run_merge

from alignax.merge import pipeline

# --- Hugging Face folders -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llamas(tmp_path_factory):
    """A tiny random LlamaForCausalLM base (sharded) and two perturbed copies, written by transformers."""
    import torch
    import transformers

    root = tmp_path_factory.mktemp("llamas")
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(cfg)
    base.save_pretrained(root / "base", max_shard_size="40KB")
    (root / "base" / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    dirs = []
    for i in range(2):
        model = transformers.LlamaForCausalLM(cfg)
        model.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        model.save_pretrained(root / f"m{i}")
        dirs.append(root / f"m{i}")
    return root / "base", dirs


def state_dict(folder):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    return model, {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "method,options",
    [
        ("task_arithmetic", {"weights": [0.6, 0.4]}),
        ("ties", {"weights": [1.0, 1.0], "density": 0.5}),
        ("dare_linear", {"weights": [0.5, 0.5], "density": 0.7}),
        ("dare_ties", {"weights": [1.0, 0.5], "density": [0.5, 0.8]}),
    ],
)
def test_merged_tiny_llama_loads_in_transformers(tiny_llamas, tmp_path, method, options):
    import torch

    base_dir, model_dirs = tiny_llamas
    out = tmp_path / "merged"
    spec = pipeline.make_spec(method, 2, seed=3, **options)
    pipeline.merge(base_dir, model_dirs, spec, out)
    assert (out / "model.safetensors.index.json").is_file()  # base layout mirrored (it is sharded)
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (base_dir / name).read_bytes()
    merged, got = state_dict(out)
    _, base = state_dict(base_dir)
    models = [state_dict(d)[1] for d in model_dirs]
    with torch.no_grad():
        logits = merged(torch.tensor([[1, 5, 9, 127]])).logits
    assert logits.shape == (1, 4, 128) and torch.isfinite(logits).all()
    assert set(got) == set(base)
    if method == "task_arithmetic":
        for name, b in base.items():
            want = b + 0.6 * (models[0][name] - b) + 0.4 * (models[1][name] - b)
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)
    elif method == "ties":
        for name, b in base.items():
            want = numpy_ties(b, [m[name] for m in models], [1.0, 1.0], 0.5, normalize=True)
            np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


# --- cross-check against mergekit (its own venv: mergekit 0.1.5 needs transformers >= 5, the project pins 4.53) --

MERGEKIT_VENV = pathlib.Path(os.environ.get("ALIGNAX_MERGEKIT_VENV", "/tmp/mk-venv"))


@pytest.fixture(scope="module")
def mergekit_yaml():
    """mergekit-yaml from a separate venv, created here (about 1-2 minutes) when absent; torch pinned to the
    local CPU wheel so pip does not pull a CUDA build."""
    exe = MERGEKIT_VENV / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MERGEKIT_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(MERGEKIT_VENV / "bin" / "pip"), "install", "--quiet", "mergekit==0.1.5", "torch==2.13.0"],
            check=True,
            timeout=1200,
        )
    return exe


def run_mergekit(exe, tmp_path, base_dir, model_dirs, method, per_model, shared=None, seed=0):
    config = {
        "merge_method": method,
        "base_model": str(base_dir),
        "dtype": "float32",
        "parameters": shared or {},
        "models": [{"model": str(d), "parameters": p} for d, p in zip(model_dirs, per_model)],
    }
    path = tmp_path / f"{method}.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    out = tmp_path / f"mk_{method}"
    result = subprocess.run(
        [str(exe), str(path), str(out), "--no-copy-tokenizer", "--quiet", "--random-seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_folder(out)


@pytest.mark.slow
def test_mergekit_task_arithmetic_and_ties_equal(tiny_llamas, mergekit_yaml, tmp_path):
    base_dir, model_dirs = tiny_llamas
    cases = [
        ("task_arithmetic", [{"weight": 0.6}, {"weight": 0.4}], {}, {"weights": [0.6, 0.4]}),
        (
            "ties",
            [{"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.7}],
            {"lambda": 0.8},
            {"weights": [1.0, 0.5], "density": [0.5, 0.7], "lam": 0.8},
        ),
    ]
    for method, per_model, shared, ours in cases:
        theirs = run_mergekit(mergekit_yaml, tmp_path, base_dir, model_dirs, method, per_model, shared)
        got = run_merge(base_dir, model_dirs, tmp_path / f"ours_{method}", method, block_elements=1000, **ours)
        assert set(got) == set(theirs)
        for name in got:
            np.testing.assert_allclose(got[name], theirs[name], rtol=1e-6, atol=1e-7, err_msg=f"{method} {name}")


def delta_stats(merged, base):
    """(fraction of entries changed, {tensor: its nonzero merged deltas} for tensors of >= 2048 entries)."""
    changed = total = 0
    nonzero = {}
    for name, b in base.items():
        d = merged[name].astype(np.float64) - b
        nz = d != 0
        changed, total = changed + nz.sum(), total + nz.size
        if b.size >= 2048:
            nonzero[name] = d[nz]
    return changed / total, nonzero


@pytest.mark.slow
def test_mergekit_dare_equal_in_distribution(tiny_llamas, mergekit_yaml, tmp_path):
    """Masks differ (torch.bernoulli vs PCG64), so compare kept fraction and rescale, not values."""
    base_dir, model_dirs = tiny_llamas
    base = read_folder(base_dir)
    model = read_folder(model_dirs[0])
    density = 0.3
    theirs = run_mergekit(
        mergekit_yaml, tmp_path, base_dir, model_dirs[:1], "dare_linear", [{"weight": 1.0, "density": density}], seed=1
    )
    ours = run_merge(base_dir, model_dirs[:1], tmp_path / "ours_dare", "dare_linear", density=density, seed=1)
    n = sum(b.size for b in base.values())
    sigma = np.sqrt(density * (1 - density) / n)
    for merged in (theirs, ours):
        kept, changed = delta_stats(merged, base)
        assert abs(kept - density) < 5 * sigma
        for name, d in changed.items():
            delta = (model[name].astype(np.float64) - base[name])[(merged[name].astype(np.float64) - base[name]) != 0]
            scale = d / delta  # ours: exactly 1/density; mergekit: its L1-norm ratio, ~1/density
            assert np.ptp(scale) < 1e-3 * scale.mean(), name
            assert abs(scale.mean() * density - 1) < 0.15, name
    # dare_ties with two models: an entry is unchanged only when both masks drop it, P = (1 - d)^2
    theirs = run_mergekit(
        mergekit_yaml,
        tmp_path,
        base_dir,
        model_dirs,
        "dare_ties",
        [{"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.5}],
        seed=2,
    )
    ours = run_merge(base_dir, model_dirs, tmp_path / "ours_dt", "dare_ties", weights=[1.0, 0.5], density=0.5, seed=2)
    sigma = np.sqrt(0.25 * 0.75 / n)
    for merged in (theirs, ours):
        kept, _ = delta_stats(merged, base)
        assert abs((1 - kept) - 0.25) < 5 * sigma
    mean_abs = [np.mean(np.concatenate([np.abs(m[k] - base[k]).ravel() for k in base])) for m in (theirs, ours)]
    assert abs(mean_abs[0] / mean_abs[1] - 1) < 0.05
