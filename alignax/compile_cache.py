"""JAX's persistent compilation cache, on by default for the command-line entry points.

Why: the sampler's programs take about a minute to compile on a 2-core CPU; with the cache a
second run of the same command loads them from disk and starts in seconds (issue 11).

ALIGNAX_COMPILATION_CACHE: unset -> ~/.cache/alignax/jax_compilation_cache; "0" (or "off",
"false", "") -> disabled; any other value -> that directory.
ALIGNAX_COMPILATION_CACHE_MIN_SECONDS: the compile time a program needs to be stored (default 0.5).
"""

from __future__ import annotations

import os

DEFAULT_DIR = os.path.join("~", ".cache", "alignax", "jax_compilation_cache")
_OFF = ("0", "off", "false", "no", "")


def compilation_cache_dir() -> str | None:
    """The directory the entry points cache compiled programs in, or None when disabled."""
    value = os.environ.get("ALIGNAX_COMPILATION_CACHE")
    if value is None:
        return os.path.expanduser(DEFAULT_DIR)
    if value.strip().lower() in _OFF:
        return None
    return os.path.expanduser(value)


def enable_compilation_cache() -> str | None:
    """Points jax at the cache directory (see module docstring); returns it, or None if disabled.

    Programs that compile in at least ALIGNAX_COMPILATION_CACHE_MIN_SECONDS (default half a second)
    are cached, whatever their size: the small ones are cheap to store and the slow ones are the
    reason for the cache. The threshold is wall time, so on a loaded machine a program can cross it
    in one run and not in another; 0 stores every program.
    """
    cache_dir = compilation_cache_dir()
    if cache_dir is None:
        return None
    import jax

    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    min_seconds = float(os.environ.get("ALIGNAX_COMPILATION_CACHE_MIN_SECONDS", "0.5"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size floor
    return cache_dir
