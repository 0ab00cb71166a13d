"""The entry points' persistent compilation cache: a second run of the same command compiles nothing new.

Checked on the cache directory (not timing, which is noisy on a loaded machine): the first run
fills it, the second, with another workdir, finds every program there and adds no entry.
"""

import os
import subprocess
import sys

from alignax import compile_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_sft(workdir, cache_dir):
    """One tiny SFT step in a fresh process (a fresh jax: nothing in memory carries over)."""
    # Every program stored (threshold 0): with the default 0.5 s wall-time threshold, a program that
    # compiled faster in the first run than in the second (machine load) would show up as "new".
    env = dict(
        os.environ,
        ALIGNAX_COMPILATION_CACHE=str(cache_dir),
        ALIGNAX_COMPILATION_CACHE_MIN_SECONDS="0",
        JAX_PLATFORMS="cpu",
    )
    cmd = [
        sys.executable,
        "-m",
        "experiments.sft",
        "--config",
        "configs/sft.py:tiny",
        "--workdir",
        str(workdir),
        "--config.total_steps=1",
        "--config.eval_batches=0",
        "--config.export=False",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_second_run_compiles_from_the_cache(tmp_path):
    cache_dir = tmp_path / "cache"
    _run_sft(tmp_path / "W1", cache_dir)
    first = set(os.listdir(cache_dir))
    assert any(name.startswith("jit_train_step") for name in first), first
    _run_sft(tmp_path / "W2", cache_dir)
    second = set(os.listdir(cache_dir))
    assert second == first, f"second run compiled again: {sorted(second - first)}"


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ALIGNAX_COMPILATION_CACHE", raising=False)
    assert compile_cache.compilation_cache_dir() == os.path.expanduser(compile_cache.DEFAULT_DIR)
    monkeypatch.setenv("ALIGNAX_COMPILATION_CACHE", "0")
    assert compile_cache.compilation_cache_dir() is None
    assert compile_cache.enable_compilation_cache() is None
    monkeypatch.setenv("ALIGNAX_COMPILATION_CACHE", str(tmp_path / "c"))
    assert compile_cache.compilation_cache_dir() == str(tmp_path / "c")
