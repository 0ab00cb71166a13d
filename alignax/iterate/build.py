"""The build stage: each method turns the scored samples into its training set (by name).

  sppo              y_w = argmax score, y_l = argmin score, with chosen_win_probs = P̂(y_w ≻ π_t) and
                    rejected_win_probs = P̂(y_l ≻ π_t) for the `sppo` loss (METHODS.md §4,
                    uclaml/SPPO scripts/compute_prob.py).
  inpo              knockout tournament over the K samples with the oracle's P: the winner bracket
                    gives y_w, the losers' bracket y_l; the pair is kept only if P(y_w ≻ y_l) > ½
                    (METHODS.md §5, run_inpo_fixed.sh).
  dno               y⁺ / y⁻ = the highest / lowest empirical win rate P̂(y ≻ π_t), kept only when
                    P̂(y⁺) − P̂(y⁻) > `margin` (DNO-Prct's large-margin filter, METHODS.md §6; the
                    margin is in win-rate units here).
  iterative_dpo     best vs worst by score (online / iterative DPO).
  expert_iteration  best-of-n SFT records {"messages": [user x, assistant argmax score]}
                    (AlpacaFarm expert iteration, METHODS.md §11).
  random_nonmax     CDR's release: chosen = argmax, rejected uniform over the non-max responses
                    (alignax/annotate/pairs.py, METHODS.md §3).
Prompts whose K scores are all equal give no pair (no preference to learn).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from alignax.annotate.pairs import select_pair
from alignax.sample.sampler import stable_prompt_key

_BUILDERS: dict[str, Callable] = {}


def register(name: str):
    def decorator(fn):
        _BUILDERS[name] = fn
        return fn

    return decorator


def names() -> list[str]:
    return sorted(_BUILDERS)


def build(name: str, scored: list[dict], options) -> list[dict]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown training-set builder {name!r}; available: {', '.join(names())}")
    return _BUILDERS[name](scored, options)


def _pair(record: dict, chosen: int, rejected: int, **fields) -> dict:
    return {
        "id": str(record["id"]),
        "prompt": record["prompt"],
        "chosen": record["responses"][chosen],
        "rejected": record["responses"][rejected],
        **fields,
    }


def _best_worst(record: dict):
    return select_pair(record["scores"], strategy="worst")


@register("iterative_dpo")
def best_vs_worst(scored, options):
    return [_pair(r, *p) for r in scored if (p := _best_worst(r)) is not None]


@register("sppo")
def sppo_pairs(scored, options):
    out = []
    for r in scored:
        pair = _best_worst(r)
        if pair is not None:
            w, l = pair
            out.append(_pair(r, w, l, chosen_win_probs=r["win_probs"][w], rejected_win_probs=r["win_probs"][l]))
    return out


def knockout(matrix: np.ndarray, *, winners: bool) -> int:
    """The index that survives a single-elimination bracket (0 v 1, 2 v 3, ...; an odd one out
    advances): the winner keeps whoever has P > ½ (the first on a tie); the losers' bracket keeps the loser."""
    alive = list(range(len(matrix)))
    while len(alive) > 1:
        nxt = []
        for a, b in zip(alive[0::2], alive[1::2]):
            a_wins = matrix[a][b] >= 0.5
            nxt.append(a if a_wins == winners else b)
        if len(alive) % 2:
            nxt.append(alive[-1])
        alive = nxt
    return alive[0]


@register("inpo")
def inpo_tournament(scored, options):
    out = []
    for r in scored:
        m = np.asarray(r["win_matrix"])
        w, l = knockout(m, winners=True), knockout(m, winners=False)
        if w != l and m[w][l] > 0.5:
            out.append(_pair(r, w, l))
    return out


@register("dno")
def dno_pairs(scored, options):
    out = []
    for r in scored:
        p = np.asarray(r["win_probs"])
        w, l = int(np.argmax(p)), int(np.argmin(p))
        if p[w] - p[l] > options.margin:
            out.append(_pair(r, w, l))
    return out


@register("expert_iteration")
def best_of_n_sft(scored, options):
    out = []
    for r in scored:
        best = int(np.argmax(r["scores"]))
        out.append(
            {
                "id": str(r["id"]),
                "messages": [
                    {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": r["responses"][best]},
                ],
            }
        )
    return out


@register("random_nonmax")
def cdr_pairs(scored, options):
    out = []
    for r in scored:
        pair = select_pair(r["scores"], strategy="random_nonmax", seed=options.seed, key=stable_prompt_key(r["id"]))
        if pair is not None:
            out.append(_pair(r, *pair))
    return out
