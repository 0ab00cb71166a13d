"""Chosen/rejected construction from N scored responses per prompt (METHODS.md §3, App. A.5).

    chosen   = argmax_i r_i (the first index among ties)
    rejected = "worst":          argmin_i r_i (the first among ties) — the common reading;
               "random_nonmax":  uniform over {i : r_i < max r} — the CDR release
                                 (scripts/process_preference_data.py, "..._bo8_random_rej_balanced",
                                 after UltraFeedback-binarized).
Prompts whose responses all score the same give no pair (the CDR code skips them). Responses
tied with the maximum are never picked as rejected, so every pair has a strictly positive margin.
The random draw uses an RNG keyed by (seed, prompt key), so a resumed job picks the same pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

STRATEGIES = ("worst", "random_nonmax")


def select_pair(
    rewards: Sequence[float], *, strategy: str = "random_nonmax", seed: int = 0, key: int = 0
) -> tuple[int, int] | None:
    """(chosen index, rejected index), or None when every reward is equal (or fewer than 2)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"pair strategy must be one of {STRATEGIES}, got {strategy!r}")
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1:
        raise ValueError(f"select_pair: rewards must be 1-D, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"select_pair: non-finite reward in {r.tolist()}")
    if r.size < 2 or r.max() == r.min():
        return None
    chosen = int(np.argmax(r))
    if strategy == "worst":
        return chosen, int(np.argmin(r))
    candidates = np.flatnonzero(r < r.max())
    rng = np.random.default_rng([seed, key])
    return chosen, int(candidates[rng.integers(len(candidates))])
