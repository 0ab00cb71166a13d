"""CDR density-ratio scoring as the demo runs it: one pass per (prompt, response) against a shared prompt.

    python -m benchmarks.cdr_scoring            # --prompts 8 --samples 4 --repeats 3

`make demo` scores every sampled response twice (log π(y|x̃_strong), log π(y|x̃_weak)), in calls of
8 prompts × 4 samples. This script builds that workload with SmolLM2-135M-Instruct (float32): the
first `--prompts` built-in training prompts, `--samples` responses each sampled as the demo does
(64 new tokens, T 0.8, top-p 0.95, seed 0; not timed), the demo's "vanilla_domain" customization,
then times two ways of computing the same [N] sums of response log-probs:

  full    one forward pass per row over prompt + response, rows right-padded to a multiple of 64
          tokens, per-token log-probs of the response from the chunked head over every position
          (what alignax/annotate/density_ratio.py did before alignax/sample/prefix_scoring.py);
  shared  `density_ratio.sequence_logprobs`: each distinct prompt prefilled once into a KV cache,
          its responses scored against it (alignax/sample/prefix_scoring.py).

Both in this one process, alternating, one warm-up call each (compiles), then the median of
`--repeats`; prints seconds per call, prompt and response tokens, the largest difference between
the two paths' sums, and the load average (figures under load are not a quiet machine's).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

import jax


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _full_forward_sums(graphdef, state, ids, segment_ids, response_mask):
    import jax.numpy as jnp
    from flax import nnx

    from alignax import ops

    model = nnx.merge(graphdef, state)
    hidden = model.hidden_states(ids, segment_ids=segment_ids)
    labels = jnp.concatenate([ids[:, 1:], jnp.zeros_like(ids[:, :1])], axis=1)
    label_mask = jnp.concatenate([response_mask[:, 1:], jnp.zeros_like(response_mask[:, :1])], axis=1)
    return jnp.sum(ops.token_logprobs(hidden, model.lm_head_weight(), labels, label_mask, chunk_size=128), axis=-1)


def full_forward_logprobs(model, tokenizer, messages_list, responses, *, batch_size=8):
    """The baseline: a forward pass over each whole row (see the module docstring)."""
    import numpy as np
    from flax import nnx

    from alignax.annotate.density_ratio import response_token_ids

    seqs = [response_token_ids(tokenizer, m, r) for m, r in zip(messages_list, responses)]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
    graphdef, state = nnx.split(model)
    sums = np.zeros(len(seqs), np.float64)
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        length = max(64, -(-max(len(seqs[i][0]) for i in idx) // 64) * 64)
        ids, seg, resp = (np.zeros((batch_size, length), np.int32) for _ in range(3))
        for row in range(batch_size):
            full, start = seqs[idx[min(row, len(idx) - 1)]]
            ids[row, : len(full)], seg[row, : len(full)], resp[row, start : len(full)] = full, 1, 1
        sums[idx] = np.asarray(_full_forward_sums(graphdef, state, ids, seg, resp), np.float64)[: len(idx)]
    return sums


def _workload(model, tokenizer, num_prompts: int, num_samples: int):
    from alignax.annotate import density_ratio as dr
    from alignax.sample import generate
    from experiments.cdr_simpo import _load_prompts

    prompts = [p["prompt"] for p in _load_prompts("builtin:prompts/train", num_prompts)]
    generations = generate(
        model, tokenizer, prompts, max_new_tokens=64, temperature=0.8, top_p=0.95, num_samples=num_samples, seed=0
    )
    responses = [g.text for g in generations]
    custom = dr.Customization(mode="vanilla_domain")
    messages = []
    for prompt in prompts:
        strong, _ = dr.contrast_prompts(prompt, dr.route_keyword(prompt), customization=custom)
        messages += [strong] * num_samples
    return messages, responses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from alignax.annotate.density_ratio import response_token_ids, sequence_logprobs
    from alignax.models import load

    model, tokenizer = load("smollm2-135m-instruct")
    messages, responses = _workload(model, tokenizer, args.prompts, args.samples)
    seqs = [response_token_ids(tokenizer, m, r) for m, r in zip(messages, responses)]
    prompt_tokens = sum(start for _, start in seqs[:: args.samples])
    response_tokens = sum(len(full) - start for full, start in seqs)
    paths = {
        "full": lambda: full_forward_logprobs(model, tokenizer, messages, responses),
        "shared": lambda: sequence_logprobs(model, tokenizer, messages, responses)[0],
    }
    sums, warmup = {}, {}
    for name, fn in paths.items():  # warm-up: compiles (the persistent compilation cache is off here)
        start = time.perf_counter()
        sums[name] = fn()
        warmup[name] = time.perf_counter() - start
    times = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    load = os.getloadavg()[0]
    print(
        f"{len(responses)} rows ({args.prompts} prompts x {args.samples} samples): {prompt_tokens} distinct prompt "
        f"tokens, {response_tokens} response tokens; load average {load:.1f}"
    )
    for name, seconds in medians.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:7s} {seconds:7.2f} s per call (runs: {runs}); first call {warmup[name]:.1f} s")
    max_diff = float(np.max(np.abs(sums["full"] - sums["shared"])))
    print(f"  speed-up {medians['full'] / medians['shared']:.2f}x; largest |difference| of the sums {max_diff:.2e}")
    print(
        json.dumps(
            {
                "full_s": round(medians["full"], 3),
                "shared_s": round(medians["shared"], 3),
                "speedup": round(medians["full"] / medians["shared"], 3),
                "full_first_call_s": round(warmup["full"], 1),
                "shared_first_call_s": round(warmup["shared"], 1),
                "max_abs_diff": max_diff,
                "load_average": load,
            }
        )
    )


if __name__ == "__main__":
    main()
