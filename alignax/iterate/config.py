"""The `iterate` block shared by the on-policy configs (configs/sppo.py, inpo, dno, iterative_dpo,
expert_iteration) and its tiny / cpu sizes."""

from __future__ import annotations

import ml_collections

from alignax.annotate import oracles


def iterate_block(method: str, *, reference: str = "previous") -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "method": method,  # training-set builder (alignax/iterate/build.py)
            "iterations": 3,
            "prompts": "ifeval:1:600",  # prompt pool (alignax/iterate/prompts.py)
            "prompts_per_iteration": 200,  # disjoint slice per iteration (0 = all every iteration)
            "heldout": "ifeval:2:100",
            "num_samples": 5,  # K
            "max_new_tokens": 128,
            "temperature": 0.7,
            "top_p": 0.9,
            "batch_size": 16,  # sampler rows per batch
            "prompts_per_chunk": 8,  # sampled prompts per atomic append
            "score_chunk": 8,  # prompts per oracle call (and append)
            "epochs": 1.0,  # > 0: total_steps = ceil(epochs * records / batch_size); 0 = config.total_steps
            "margin": 0.0,  # dno: keep pairs whose win-rate gap exceeds this
            "reference": reference,  # previous (π_t, the engine's on-the-fly reference) | initial (π_ref as data)
            "seed": 0,
            "oracle": ml_collections.ConfigDict(oracles.option_defaults()),
            "eval": ml_collections.ConfigDict(
                {"metrics": "ifeval", "max_new_tokens": 128, "batch_size": 16, "num_prompts": 0}
            ),
        }
    )


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Seconds per stage on a 2-core CPU: the tiny random model, 4 prompts x 4 samples of 12 tokens."""
    it = c.iterate
    it.iterations = 2
    it.prompts, it.prompts_per_iteration, it.heldout = "ifeval:1:8", 4, "ifeval:2:4"
    it.num_samples, it.max_new_tokens, it.batch_size = 4, 12, 16
    it.top_p = 1.0  # no nucleus filter: the cheapest sampling step
    it.prompts_per_chunk, it.score_chunk = 2, 2
    it.epochs = 0.0
    it.oracle.name = "density_ratio"
    it.eval.max_new_tokens, it.eval.batch_size = 12, 4
    c.total_steps = 4
    c.checkpoint_every = 2
    c.batch_size = 2
    # One sequence per row, every row max_length long: one compiled train step for all iterations.
    c.data.packing = False
    c.data.length_multiple = c.data.max_length
    c.data.on_error = "skip"
    return c


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """SmolLM2-135M-Instruct on 2 shared CPU cores, about 10 minutes for 2 iterations (measured
    figures: docs/reproductions.md): IFEval-style prompts, the CDR density ratio of the starting
    model as the oracle, IFEval instruction-following accuracy on 32 held-out prompts as the metric
    (the oracle never reads the checkers).

    Sized for a loaded 2-core machine (sampling ~0.3 s per decode step of 16 rows, a train step of
    8 pairs ~20 s): 16 fresh prompts per iteration x K = 4 samples of 48 tokens, 4 steps of 8 pairs
    (about 2 epochs) per iteration. Every shape is fixed across iterations (one row length, a fixed
    step count, so one learning-rate schedule): iteration 2 reuses iteration 1's compiled programs."""
    it = c.iterate
    it.iterations = 2
    it.prompts, it.prompts_per_iteration, it.heldout = "ifeval:1:32", 16, "ifeval:2:32"
    it.num_samples, it.max_new_tokens, it.batch_size = 4, 48, 32
    it.prompts_per_chunk, it.score_chunk = 8, 8
    it.epochs = 0.0  # config.total_steps per iteration
    it.oracle.name = "density_ratio"
    it.oracle.customization = "none"
    it.eval.max_new_tokens, it.eval.batch_size = 64, 32
    c.total_steps = 4
    c.batch_size = 8
    c.checkpoint_every = 2
    c.data.max_length = 176
    c.data.max_prompt_length = 128
    c.data.packing, c.data.length_multiple = False, 176  # one row shape
    c.data.on_error = "skip"
    c.optimizer.warmup_ratio = 0.0
    return c
