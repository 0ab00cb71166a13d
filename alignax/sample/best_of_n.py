"""Best-of-n sampling with any reward function (AlpacaFarm, Dubois et al. 2023).

For each prompt x: sample y_1..y_n ~ π(.|x), score r_i = reward_fn(x, y_i), return y_{argmax r}.
AlpacaFarm's setting (examples/best_of_n.py, README): n = 16, temperature 1.0, max_new_tokens 300,
top-1 reranking; n is configurable (its paper also studies n up to 1024). METHODS.md §11.

`reward_fn(prompts: list, responses: list[str]) -> array [len(responses)]`: e.g. a CDR density
ratio (`alignax.annotate.density_ratio_reward_fn`) or a Bradley–Terry head
(`alignax.annotate.reward_model`). Ties go to the lowest sample index (np.argmax).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from alignax.sample.sampler import Generation, generate

RewardFn = Callable[[Sequence[Any], Sequence[str]], Any]


@dataclasses.dataclass
class BestOfN:
    prompt: Any
    best: Generation
    best_index: int
    candidates: list[Generation]
    rewards: np.ndarray  # [n] float64


def best_of_n(
    model,
    tokenizer,
    prompts: Sequence[Any],
    reward_fn: RewardFn,
    *,
    n: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    max_new_tokens: int = 300,
    stop_strings: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 16,
    **generate_kwargs,
) -> list[BestOfN]:
    """Samples n responses per prompt, scores them with reward_fn, keeps the argmax."""
    if n < 1:
        raise ValueError(f"best_of_n: n must be >= 1, got {n}")
    gens = generate(
        model,
        tokenizer,
        prompts,
        num_samples=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        stop_strings=stop_strings,
        seed=seed,
        batch_size=batch_size,
        **generate_kwargs,
    )
    flat_prompts = [prompts[g.prompt_index] for g in gens]
    rewards = np.asarray(reward_fn(flat_prompts, [g.text for g in gens]), np.float64)
    if rewards.shape != (len(gens),):
        raise ValueError(f"best_of_n: reward_fn returned shape {rewards.shape}, expected ({len(gens)},)")
    out = []
    for i, prompt in enumerate(prompts):
        cand = gens[i * n : (i + 1) * n]
        r = rewards[i * n : (i + 1) * n]
        k = int(np.argmax(r))
        out.append(BestOfN(prompt=prompt, best=cand[k], best_index=k, candidates=cand, rewards=r))
    return out
