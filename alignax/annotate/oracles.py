"""Preference oracles by name, all with one output format (the on-policy loops' `score` stage).

    oracle = oracles.build(name, options, context)
    judgements = oracle.judge(records, groups)      # groups[i]: the K responses to records[i]

Every judgement is {"scores": [K], "win_matrix": [K][K]} with win_matrix[i][j] = P(y_i ≻ y_j | x),
win_matrix[i][i] = ½ and P + Pᵀ = 1. How each kind of oracle fills it:

  * pointwise, Bradley–Terry (`reward_model`, `density_ratio`): s_i a scalar reward,
    P(y_i ≻ y_j) = σ(s_i − s_j) (SPPO's use of PairRM scores, METHODS.md §4, scripts/compute_prob.py);
  * pointwise, rule (`ifeval`): s_i = number of the prompt's instructions y_i follows
    (`alignax.evaluate.ifeval.num_followed`), P = 1 / 0 / ½ as s_i >, <, = s_j
    (`alignax.evaluate.ifeval.preference`);
  * pairwise (`pairwise`, `local_judge`, `http_judge`): P from the model or judge, symmetrized over
    the two presentation orders, P(i ≻ j) = ½[p(i, j) + 1 − p(j, i)] (RLHFlow's pair-preference
    model, METHODS.md §5); s_i = the row mean of P.

Registered names: reward_model (a trained Bradley–Terry head, alignax/annotate/reward_model.py),
pairwise (alignax/annotate/pairwise.py), density_ratio (CDR, alignax/annotate/density_ratio.py),
local_judge (alignax/evaluate/judges/local.py), http_judge (alignax/evaluate/judges/http.py, with
its concurrency limit and cache) and ifeval (alignax/evaluate/ifeval/scoring.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def decorator(fn):
        _REGISTRY[name] = fn
        return fn

    return decorator


def names() -> list[str]:
    return sorted(_REGISTRY)


@dataclasses.dataclass
class Context:
    """What oracles built from "the starting policy" need: its model and tokenizer, and a cache dir."""

    policy: Any = None
    tokenizer: Any = None
    cache_dir: str = ""
    dtype: str = "float32"


def build(name: str, options, context: Context):
    if name not in _REGISTRY:
        raise ValueError(f"unknown oracle {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name](options, context)


def win_probs(matrix) -> list[float]:
    """SPPO's P̂(y_i ≻ π_t) = (1/K) Σ_j P(y_i ≻ y_j), j = i included (½) (METHODS.md §4)."""
    return np.asarray(matrix, np.float64).mean(axis=1).tolist()


def _judgement(scores, matrix) -> dict:
    return {"scores": [float(s) for s in scores], "win_matrix": np.asarray(matrix, np.float64).tolist()}


class PointwiseOracle:
    """Scores each response alone; `link` turns scores into P: "bt" (σ(s_i − s_j)) or "rule"."""

    link = "bt"

    def scores(self, records: Sequence[dict], responses: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def judge(self, records: Sequence[dict], groups: Sequence[Sequence[str]]) -> list[dict]:
        flat_records = [r for r, g in zip(records, groups) for _ in g]
        flat = np.asarray(self.scores(flat_records, [y for g in groups for y in g]), np.float64)
        out, start = [], 0
        for g in groups:
            s = flat[start : start + len(g)]
            start += len(g)
            diff = s[:, None] - s[None, :]
            matrix = 1.0 / (1.0 + np.exp(-diff)) if self.link == "bt" else 0.5 * (1.0 + np.sign(diff))
            out.append(_judgement(s, matrix))
        return out


class PairwiseOracle:
    """Compares ordered pairs, `prob(records, a, b) -> P(a ≻ b)`; both orders are averaged."""

    def prob(self, records: Sequence[dict], responses_a: Sequence[str], responses_b: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def judge(self, records: Sequence[dict], groups: Sequence[Sequence[str]]) -> list[dict]:
        triples = [(n, i, j) for n, g in enumerate(groups) for i in range(len(g)) for j in range(len(g)) if i != j]
        p = np.asarray(
            self.prob(
                [records[n] for n, _, _ in triples],
                [groups[n][i] for n, i, _ in triples],
                [groups[n][j] for n, _, j in triples],
            ),
            np.float64,
        )
        raw = [np.full((len(g), len(g)), 0.5) for g in groups]
        for (n, i, j), value in zip(triples, p):
            raw[n][i, j] = value
        out = []
        for m in raw:
            matrix = 0.5 * (m + 1.0 - m.T)
            out.append(_judgement(matrix.mean(axis=1), matrix))
        return out


def _prompt(record: dict) -> Any:
    return record["prompt"]


# ------------------------------------------------------------------------------------------ oracles


class _RewardModelOracle(PointwiseOracle):
    def __init__(self, rm, tokenizer, batch_size):
        self.rm, self.tokenizer, self.batch_size = rm, tokenizer, batch_size

    def scores(self, records, responses):
        from alignax.annotate.reward_model import reward_model_rewards

        return reward_model_rewards(
            self.rm, self.tokenizer, [_prompt(r) for r in records], responses, batch_size=self.batch_size
        )


@register("reward_model")
def _reward_model(options, context: Context):
    from alignax.models.reward_head import RewardModel

    if not options.model:
        raise ValueError(
            "oracle reward_model needs oracle.model: a folder written by the reward-model run "
            "(python -m experiments.reward_model ... -> DIR/export)"
        )
    rm, tokenizer = RewardModel.from_pretrained(options.model, dtype=context.dtype)
    return _RewardModelOracle(rm, tokenizer or context.tokenizer, options.batch_size)


class _PairwiseModelOracle:
    def __init__(self, model):
        self.model = model

    def judge(self, records, groups):
        out = []
        for r, g in zip(records, groups):
            matrix = self.model.win_matrix(_prompt(r), list(g))
            out.append(_judgement(matrix.mean(axis=1), matrix))
        return out


@register("pairwise")
def _pairwise(options, context: Context):
    from alignax.annotate.pairwise import PairwisePreferenceModel

    if not options.model:
        raise ValueError(
            "oracle pairwise needs oracle.model: a folder trained on pairwise.training_records "
            "(alignax/annotate/pairwise.py)"
        )
    return _PairwiseModelOracle(
        PairwisePreferenceModel.load(
            options.model, dtype=context.dtype, batch_size=options.batch_size, tokenizer=context.tokenizer
        )
    )


class _DensityRatioOracle(PointwiseOracle):
    def __init__(self, strong, weak, tokenizer, customization, weak_instruction, batch_size):
        self.strong, self.weak, self.tokenizer = strong, weak, tokenizer
        self.customization, self.weak_instruction, self.batch_size = customization, weak_instruction, batch_size

    def scores(self, records, responses):
        from alignax.annotate.density_ratio import density_ratio_rewards

        kwargs = {"weak_instruction": self.weak_instruction} if self.weak_instruction else {}
        return density_ratio_rewards(
            self.strong,
            self.weak,
            self.tokenizer,
            [_prompt(r) for r in records],
            list(responses),
            customization=self.customization,
            batch_size=self.batch_size,
            **kwargs,
        ).rewards


@register("density_ratio")
def _density_ratio(options, context: Context):
    """CDR (METHODS.md §3): strong = oracle.model (default: the starting policy), weak = oracle.weak_model
    (default: the strong model under WEAK_INSTRUCTION, the single-model contrast)."""
    from alignax.annotate.density_ratio import Customization
    from alignax.models import load

    strong, tokenizer = (
        load(options.model, dtype=context.dtype) if options.model else (context.policy, context.tokenizer)
    )
    weak = load(options.weak_model, dtype=context.dtype)[0] if options.weak_model else strong
    return _DensityRatioOracle(
        strong,
        weak,
        tokenizer or context.tokenizer,
        Customization(mode=options.customization),
        options.weak_instruction,
        options.batch_size,
    )


class _IFEvalOracle(PointwiseOracle):
    link = "rule"

    def scores(self, records, responses):
        from alignax.evaluate.ifeval.scoring import num_followed

        for r in records:
            if "instruction_id_list" not in r:
                raise ValueError(
                    f"oracle ifeval: prompt {r.get('id')!r} has no instruction_id_list; use IFEval-style "
                    "prompts (prompt source ifeval:SEED)"
                )
        return np.asarray([num_followed(r, y) for r, y in zip(records, responses)], np.float64)


@register("ifeval")
def _ifeval(options, context: Context):
    return _IFEvalOracle()


class _JudgeOracle(PairwiseOracle):
    """Any `alignax.evaluate.judges.base.PairwiseJudge`: P(a ≻ b) = 2 − preference (AlpacaEval's scale)."""

    def __init__(self, judge, workers: int = 1):
        self.judge_, self.workers = judge, workers

    def prob(self, records, responses_a, responses_b):
        import concurrent.futures

        instructions = [_prompt(r) if isinstance(_prompt(r), str) else _prompt(r)[-1]["content"] for r in records]

        def one(args):
            return self.judge_.judge_pair(instruction=args[0], output_1=args[1], output_2=args[2])

        triples = list(zip(instructions, responses_a, responses_b))
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            verdicts = list(pool.map(one, triples))
        values = [2.0 - v.preference for v in verdicts]
        return np.asarray([v if math.isfinite(v) else 0.5 for v in values], np.float64)  # unparsed: a tie


class BucketedForward:
    """model(ids[None]) -> logits [1, T, V], prompts left-padded to multiples of `bucket` and jitted
    once per bucket (the local judge would otherwise run eagerly or recompile per prompt length)."""

    def __init__(self, model, bucket: int = 128):
        import jax
        from flax import nnx

        self.graphdef, self.state = nnx.split(model)
        self.bucket = bucket
        self._forward = jax.jit(lambda state, ids, seg: nnx.merge(self.graphdef, state)(ids, segment_ids=seg))

    def __call__(self, input_ids):
        import jax.numpy as jnp

        ids = np.asarray(input_ids)
        length = ids.shape[1]
        padded = int(math.ceil(length / self.bucket) * self.bucket)
        padded_ids, segment_ids = np.zeros((1, padded), np.int32), np.zeros((1, padded), np.int32)
        padded_ids[0, padded - length :] = ids[0]
        segment_ids[0, padded - length :] = 1
        return self._forward(self.state, jnp.asarray(padded_ids), jnp.asarray(segment_ids))[:, padded - length :]


@register("local_judge")
def _local_judge(options, context: Context):
    from alignax.evaluate.judges.local import LocalModelJudge
    from alignax.models import load

    model, tokenizer = (
        load(options.model, dtype=context.dtype) if options.model else (context.policy, context.tokenizer)
    )
    return _JudgeOracle(LocalModelJudge(BucketedForward(model), tokenizer or context.tokenizer))


@register("http_judge")
def _http_judge(options, context: Context):
    from alignax.evaluate.judges.base import AlpacaEvalJudge
    from alignax.evaluate.judges.http import OpenAIChatClient

    if not options.base_url or not options.judge_model:
        raise ValueError("oracle http_judge needs oracle.base_url and oracle.judge_model")
    cache = os.path.join(context.cache_dir, "http_judge_cache") if context.cache_dir else None
    client = OpenAIChatClient(
        base_url=options.base_url,
        model=options.judge_model,
        api_key_env=options.api_key_env,
        cache_dir=cache,
        max_concurrency=options.max_concurrency,
    )
    return _JudgeOracle(AlpacaEvalJudge(client), workers=options.max_concurrency)


def option_defaults() -> dict:
    """The keys of a config's `oracle` block (configs/sppo.py and friends)."""
    return {
        "name": "density_ratio",
        "model": "",
        "weak_model": "",
        "weak_instruction": "",
        "customization": "none",
        "batch_size": 8,
        "base_url": "",
        "judge_model": "",
        "api_key_env": "OPENAI_API_KEY",
        "max_concurrency": 8,
    }
