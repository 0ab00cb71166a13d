"""The floor under a SmolLM2 decode step on this CPU: its weight matmuls alone, as XLA runs them.

    python -m benchmarks.matmul_floor --batch-size 64      # then: python -m benchmarks.decode_step

One decode step of SmolLM2-135M multiplies a [B, 576] activation by every weight matrix once: per
layer q [576, 576], k and v [576, 192], o [576, 576], gate and up [576, 1536], down [1536, 576]
(30 layers), then the tied head [49152, 576]. This script chains exactly those products (random
float32 weights, SiLU gating, a residual) in a jitted `fori_loop` of `--steps` steps, with no
attention over a cache, no norms, no RoPE and no sampling, and prints ms per step: what a decode
step cannot go below with XLA's CPU matmuls at this batch. `benchmarks.decode_step` times the real
step; the difference is the attention over the cache plus everything else. Prints the load average:
a figure taken under load is not a quiet machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

HIDDEN, KV_WIDTH, MLP, VOCAB, LAYERS = 576, 192, 1536, 49152, 30


def floor_ms_per_step(batch_size: int, steps: int, repeats: int) -> tuple[float, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)

    def weight(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.02)

    shapes = {
        "q": (HIDDEN, HIDDEN),
        "k": (HIDDEN, KV_WIDTH),
        "v": (HIDDEN, KV_WIDTH),
        "o": (HIDDEN, HIDDEN),
        "gate": (HIDDEN, MLP),
        "up": (HIDDEN, MLP),
        "down": (MLP, HIDDEN),
    }
    layers = [{name: weight(*shape) for name, shape in shapes.items()} for _ in range(LAYERS)]
    head = weight(VOCAB, HIDDEN)

    @jax.jit
    def run(x, layers, head):
        def step(_, x):
            h = x
            for w in layers:
                # k and v feed a scalar so that XLA keeps their products (no cache to write them to).
                kv = jnp.sum(h @ w["k"]) + jnp.sum(h @ w["v"])
                h = h + ((h @ w["q"]) * (kv * 1e-6)) @ w["o"]
                h = h + (jax.nn.silu(h @ w["gate"]) * (h @ w["up"])) @ w["down"]
            next_token = jnp.argmax(h @ head.T, axis=-1)
            return x + next_token[:, None].astype(x.dtype) * 1e-9

        return jax.lax.fori_loop(0, steps, step, x)

    x = weight(batch_size, HIDDEN)
    jax.block_until_ready(run(x, layers, head))  # compiles

    def one_call() -> float:
        start = time.perf_counter()
        jax.block_until_ready(run(x, layers, head))
        return time.perf_counter() - start

    ms = 1000 * statistics.median(one_call() for _ in range(repeats)) / steps
    flops = 2 * batch_size * (LAYERS * sum(a * b for a, b in shapes.values()) + VOCAB * HIDDEN)
    return ms, flops / (ms / 1000) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    ms, gflops = floor_ms_per_step(args.batch_size, args.steps, args.repeats)
    load = os.getloadavg()[0]
    print(f"batch {args.batch_size:>3}  weight matmuls only  {ms:7.1f} ms/step  {gflops:6.1f} GFLOP/s  load {load:.1f}")
    result = {"batch_size": args.batch_size, "ms_per_step": round(ms, 1), "gflops": round(gflops, 1)}
    print(json.dumps({**result, "load_average": load}))
    return result


if __name__ == "__main__":
    main()
