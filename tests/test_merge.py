"""alignax.merge: task arithmetic, TIES, DARE on safetensors folders.

Expected values are written here in numpy from the papers' formulas (Ilharco et al. 2023; Yadav et al. 2023,
§3; Yu et al. 2024, §3), or by hand; the folders are written with safetensors.numpy / transformers, not with
alignax's own writer (tests/helpers.py). Merges of real Hugging Face folders and the cross-check against
mergekit: tests/test_merge_interop.py.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import MERGE_CONFIG, numpy_ties, read_folder, run_merge, write_folder

from alignax.merge import checkpoint, pipeline

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- helpers --------------------------------------------------------------------------------------------------


SHAPES = {"a.weight": (7, 5), "b.bias": (13,), "c.weight": (3, 4, 2), "d.scale": ()}


def random_models(tmp_path, n_models=2, seed=0, shards=2, scale=0.1):
    rng = np.random.default_rng(seed)
    base = {n: np.asarray(rng.standard_normal(s), np.float32) for n, s in SHAPES.items()}
    models = [
        {n: np.asarray(v + scale * rng.standard_normal(v.shape), np.float32) for n, v in base.items()}
        for _ in range(n_models)
    ]
    base_dir = write_folder(tmp_path / "base", base, shards=shards)
    model_dirs = [write_folder(tmp_path / f"m{i}", m, shards=1) for i, m in enumerate(models)]
    return base, models, base_dir, model_dirs


# --- formulas -------------------------------------------------------------------------------------------------


def test_task_arithmetic_matches_numpy(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path, n_models=3)
    weights, lam = [0.5, -0.3, 1.2], 0.7
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "task_arithmetic", weights=weights, lam=lam)
    assert set(got) == set(SHAPES)
    for name, b in base.items():
        want = b + lam * sum(w * (m[name] - b) for w, m in zip(weights, models))
        assert got[name].dtype == np.float32 and got[name].shape == b.shape
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6, err_msg=name)


def test_task_arithmetic_normalize_divides_by_weight_sum(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "task_arithmetic", weights=[3.0, 1.0], normalize=True)
    for name, b in base.items():
        want = b + (3 * (models[0][name] - b) + (models[1][name] - b)) / 4
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("density", [0.3, 0.5, 1.0, [1.0, 0.2, 0.6]])
def test_ties_matches_numpy(tmp_path, density):
    base, models, base_dir, model_dirs = random_models(tmp_path, n_models=3)
    weights = [1.0, 0.6, 0.9]
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "ties", weights=weights, density=density)
    for name, b in base.items():
        want = numpy_ties(b, [m[name] for m in models], weights, density, normalize=True)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "density,weights,want",
    [
        # no trim: sums [4, -2, 5, -2.5]; agreeing entries (3, 2), (-1, -2), (2, 4), (-0.5, -3)
        (1.0, [1, 1, 1], [2.5, -1.5, 3.0, -1.75]),
        # trim to |.|-top-2: d1 [3,0,2,0], d2 [0,-2,4,0], d3 [2,0,0,-3]; sums [5,-2,6,-3]
        (0.5, [1, 1, 1], [2.5, -2.0, 3.0, -3.0]),
        # weights 2,1,1 no trim: weighted d1 [6,-2,4,2]; sums [7,-3,7,-1.5]; (6+2)/3, (-2-2)/3, (4+4)/3, (-.5-3)/2
        (1.0, [2, 1, 1], [8 / 3, -4 / 3, 8 / 3, -1.75]),
    ],
)
def test_ties_known_answer(tmp_path, density, weights, want):
    """By hand (base 10): trim, elect the sign of the weighted sum per entry, weighted mean of the agreeing."""
    deltas = [
        np.array([3, -1, 2, 1], np.float32),
        np.array([-1, -2, 4, -0.5], np.float32),
        np.array([2, 1, -1, -3], np.float32),
    ]
    base_dir = write_folder(tmp_path / "base", {"w": np.full(4, 10, np.float32)})
    dirs = [write_folder(tmp_path / f"m{i}", {"w": 10 + d}) for i, d in enumerate(deltas)]
    got = run_merge(base_dir, dirs, tmp_path / "out", "ties", weights=weights, density=density, block_elements=3)
    np.testing.assert_allclose(got["w"], 10 + np.array(want, np.float32), rtol=1e-6)


def test_ties_zero_sum_elects_plus(tmp_path):
    """Sum of weighted deltas exactly 0: mergekit's "sum" consensus elects +1, so only positive deltas count."""
    base_dir = write_folder(tmp_path / "base", {"w": np.zeros(3, np.float32)})
    dirs = [
        write_folder(tmp_path / "m0", {"w": np.array([2, -1, 0], np.float32)}),
        write_folder(tmp_path / "m1", {"w": np.array([-2, 1, 0], np.float32)}),
    ]
    got = run_merge(base_dir, dirs, tmp_path / "out", "ties", density=1.0)
    np.testing.assert_array_equal(got["w"], np.array([2, 1, 0], np.float32))


def test_ties_trim_keeps_exactly_k_with_equal_magnitudes(tmp_path):
    """Equal |delta| everywhere: exactly int(density * n) entries survive, across read blocks."""
    base_dir = write_folder(tmp_path / "base", {"w": np.zeros((10, 10), np.float32)})
    delta = np.where(np.arange(100).reshape(10, 10) % 3 == 0, -1.0, 1.0).astype(np.float32)
    m_dir = write_folder(tmp_path / "m", {"w": delta})
    got = run_merge(base_dir, [m_dir], tmp_path / "out", "ties", density=0.37, block_elements=20)
    assert np.count_nonzero(got["w"]) == 37
    kept = got["w"] != 0
    np.testing.assert_array_equal(got["w"][kept], delta[kept])


def test_dare_linear_density_one_is_task_arithmetic(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "dare_linear", weights=[0.4, 0.7], density=1.0)
    for name, b in base.items():
        want = b + 0.4 * (models[0][name] - b) + 0.7 * (models[1][name] - b)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)


def test_dare_ties_density_one_is_sign_consensus_sum(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path, n_models=3)
    weights = [1.0, 0.5, 2.0]
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "dare_ties", weights=weights, density=1.0)
    for name, b in base.items():
        want = numpy_ties(b, [m[name] for m in models], weights, 1.0, normalize=False, trim=False)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)


def documented_mask(seed, model_index, name, shape, density):
    """The documented DARE mask: PCG64 seeded with (seed, model position, first 8 bytes of sha256(name))."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, model_index, digest])))
    return rng.random(shape) < density


def test_dare_ties_matches_numpy_with_documented_masks(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path, n_models=2)
    weights, density, seed = [1.0, 0.8], 0.6, 11
    got = run_merge(base_dir, model_dirs, tmp_path / "out", "dare_ties", weights=weights, density=density, seed=seed)
    for name, b in base.items():
        dare = [
            np.where(documented_mask(seed, i, name, b.shape, density), (m[name] - b) / np.float32(density), 0)
            for i, m in enumerate(models)
        ]
        want = numpy_ties(b, [b + d for d in dare], weights, 1.0, normalize=False, trim=False)
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def dare_folders(tmp_path, n=200_000):
    rng = np.random.default_rng(3)
    base = rng.standard_normal(n).astype(np.float32)
    delta = (0.01 + rng.random(n)).astype(np.float32) * rng.choice([-1, 1], n).astype(np.float32)
    base_dir = write_folder(tmp_path / "base", {"w": base})
    m_dir = write_folder(tmp_path / "m", {"w": base + delta})
    return base, delta, base_dir, m_dir


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_dare_kept_fraction_rescale_and_mean(tmp_path, density):
    base, delta, base_dir, m_dir = dare_folders(tmp_path)
    got = run_merge(
        base_dir, [m_dir], tmp_path / "out", "dare_linear", density=density, seed=5, block_elements=1 << 14
    )["w"]
    out_delta = got.astype(np.float64) - base
    kept = np.abs(out_delta) > 1e-3  # every |delta| >= 0.01, so dropped entries are exactly 0 here
    n = delta.size
    sigma = np.sqrt(density * (1 - density) / n)
    assert abs(kept.mean() - density) < 5 * sigma
    np.testing.assert_allclose(out_delta[kept], delta[kept] / density, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out_delta[~kept], 0, atol=1e-6)
    # E[delta_hat] = delta: the mean of delta_hat / delta is kept.mean() / density -> 1.
    ratio = (out_delta / delta).mean()
    assert abs(ratio - 1) < 5 * sigma / density


def test_dare_mean_preserved_per_entry_over_seeds(tmp_path):
    """Averaged over seeds, every entry's delta_hat approaches its delta (E[m / d] = 1)."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal(50).astype(np.float32)
    delta = (0.5 + rng.random(50)).astype(np.float32)
    base_dir = write_folder(tmp_path / "base", {"w": base})
    m_dir = write_folder(tmp_path / "m", {"w": base + delta})
    density, seeds = 0.5, 400
    total = np.zeros(50)
    for s in range(seeds):
        total += run_merge(base_dir, [m_dir], tmp_path / f"o{s}", "dare_linear", density=density, seed=s)["w"] - base
    per_entry_sigma = delta * np.sqrt((1 - density) / density) / np.sqrt(seeds)
    assert np.all(np.abs(total / seeds - delta) < 5 * per_entry_sigma)


def test_dare_deterministic_per_seed_and_block_size(tmp_path):
    base, delta, base_dir, m_dir = dare_folders(tmp_path, n=5000)
    a = run_merge(base_dir, [m_dir], tmp_path / "a", "dare_ties", density=0.3, seed=7, block_elements=64)["w"]
    b = run_merge(base_dir, [m_dir], tmp_path / "b", "dare_ties", density=0.3, seed=7, block_elements=100_000)["w"]
    c = run_merge(base_dir, [m_dir], tmp_path / "c", "dare_ties", density=0.3, seed=8, block_elements=64)["w"]
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.2


def test_dare_masks_differ_between_tensors_and_models(tmp_path):
    base = {"x": np.zeros(4000, np.float32), "y": np.zeros(4000, np.float32)}
    base_dir = write_folder(tmp_path / "base", base)
    dirs = [
        write_folder(tmp_path / f"m{i}", {"x": np.ones(4000, np.float32), "y": np.ones(4000, np.float32)})
        for i in range(2)
    ]
    got = run_merge(base_dir, dirs, tmp_path / "out", "dare_linear", weights=[1.0, 1.0], density=0.5, seed=0)
    assert np.mean(got["x"] != got["y"]) > 0.3
    # two models with the same delta: 0, 2 (one kept) and 4 (both) all occur if the masks differ
    assert {0.0, 2.0, 4.0} <= set(np.unique(got["x"]).tolist())


# --- streaming ------------------------------------------------------------------------------------------------


def test_reads_never_exceed_one_block(tmp_path, monkeypatch):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    sizes = []
    original = checkpoint.ModelFolder.read_rows

    def spy(self, name, start=None, stop=None):
        array = original(self, name, start, stop)
        sizes.append(array.size)
        return array

    monkeypatch.setattr(checkpoint.ModelFolder, "read_rows", spy)
    run_merge(base_dir, model_dirs, tmp_path / "out", "ties", density=0.5, block_elements=10)
    assert sizes and max(sizes) <= 10  # rows of the largest tensor hold 5 and 8 elements


def test_bfloat16_in_bfloat16_out(tmp_path):
    import ml_dtypes

    rng = np.random.default_rng(0)
    b = rng.standard_normal((6, 4)).astype(ml_dtypes.bfloat16)
    m = (b.astype(np.float32) + 0.25).astype(ml_dtypes.bfloat16)
    base_dir = write_folder(tmp_path / "base", {"w": b})
    m_dir = write_folder(tmp_path / "m", {"w": m})
    got = run_merge(base_dir, [m_dir], tmp_path / "out", "task_arithmetic", weights=[0.5])["w"]
    assert got.dtype == ml_dtypes.bfloat16
    want = (b.astype(np.float32) + 0.5 * (m.astype(np.float32) - b.astype(np.float32))).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


# --- bad input ------------------------------------------------------------------------------------------------


def test_shape_mismatch_names_tensor_and_folder(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    bad = dict(models[1], **{"c.weight": np.zeros((3, 4, 3), np.float32)})
    bad_dir = write_folder(tmp_path / "bad", bad)
    with pytest.raises(pipeline.MergeError, match=r"bad.*'c\.weight'.*shape \[3, 4, 3\]"):
        run_merge(base_dir, [model_dirs[0], bad_dir], tmp_path / "out", "task_arithmetic")
    assert not (tmp_path / "out").exists()


def test_missing_tensor_names_tensor_and_folder(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    bad_dir = write_folder(tmp_path / "holey", {k: v for k, v in models[0].items() if k != "b.bias"})
    with pytest.raises(pipeline.MergeError, match=r"holey.*'b\.bias'.*missing"):
        run_merge(base_dir, [bad_dir], tmp_path / "out", "ties", density=0.5)


def test_index_listing_absent_tensor_names_tensor_and_shard(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path, shards=2)
    index_path = base_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(pipeline.MergeError, match=r"base/model-00001-of-00002\.safetensors.*'ghost\.weight'.*missing"):
        run_merge(base_dir, model_dirs, tmp_path / "out", "task_arithmetic")


def test_extra_tensor_names_tensor_and_folder(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    extra_dir = write_folder(tmp_path / "extra", dict(models[0], **{"z.extra": np.zeros(2, np.float32)}))
    with pytest.raises(pipeline.MergeError, match=r"extra.*'z\.extra'.*not in the base"):
        run_merge(base_dir, [extra_dir], tmp_path / "out", "task_arithmetic")


@pytest.mark.parametrize("key,value", [("model_type", "mistral"), ("architectures", ["MistralForCausalLM"])])
def test_different_architecture_names_folder(tmp_path, key, value):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    other = write_folder(tmp_path / "other_arch", models[0], config=dict(MERGE_CONFIG, **{key: value}))
    with pytest.raises(pipeline.MergeError, match=rf"other_arch.*{key}.*differs"):
        run_merge(base_dir, [other], tmp_path / "out", "task_arithmetic")


def test_weights_count_must_match_models():
    with pytest.raises(pipeline.MergeError, match="3 weights given for 2 models"):
        pipeline.make_spec("task_arithmetic", 2, weights=[1, 1, 1])


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5])
def test_density_outside_unit_interval(density):
    with pytest.raises(pipeline.MergeError, match=rf"density {density} is outside \(0, 1\]"):
        pipeline.make_spec("dare_linear", 1, density=density)


def test_sparsifying_method_needs_density():
    with pytest.raises(pipeline.MergeError, match="needs --density"):
        pipeline.make_spec("ties", 2)


def test_output_folder_holding_a_model_is_refused(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    with pytest.raises(pipeline.MergeError, match="already holds a model"):
        run_merge(base_dir, model_dirs, base_dir, "task_arithmetic")


# --- command line ---------------------------------------------------------------------------------------------


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "alignax.merge", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_cli_merges_and_reports_errors(tmp_path):
    base, models, base_dir, model_dirs = random_models(tmp_path)
    result = cli(
        "--base",
        base_dir,
        "--models",
        *model_dirs,
        "--method",
        "ties",
        "--weights",
        "1",
        "0.5",
        "--density",
        "0.5",
        "--seed",
        "1",
        "--out",
        tmp_path / "out",
    )
    assert result.returncode == 0, result.stderr
    got = read_folder(tmp_path / "out")
    for name, b in base.items():
        want = numpy_ties(b, [m[name] for m in models], [1.0, 0.5], 0.5, normalize=True)
        np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6)
    record = json.loads((tmp_path / "out" / "merge_config.json").read_text())
    assert record["method"] == "ties" and record["densities"] == [0.5, 0.5] and record["normalize"] is True

    bad_dir = write_folder(tmp_path / "bad", dict(models[0], **{"a.weight": np.zeros((5, 7), np.float32)}))
    result = cli("--base", base_dir, "--models", bad_dir, "--method", "task_arithmetic", "--out", tmp_path / "o2")
    assert result.returncode == 2
    assert "'a.weight'" in result.stderr and str(bad_dir) in result.stderr
