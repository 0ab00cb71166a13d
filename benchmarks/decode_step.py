"""Time of one decode step against the KV cache's length: where long generations and judges go.

    python -m benchmarks.decode_step --batch-size 64 --cache-slots 192,1088
    python -m benchmarks.decode_step --batch-size 8 --cache-slots 1088,4160

SmolLM2-135M-Instruct (float32) decodes `--steps` tokens per call after a 64-token prefill into a
cache of `slots` slots (64 prompt + slots - 64 new), so the step reads the weights plus every slot
of the cache (attention reads the whole cache whatever the filled length). Calls the sampler's own
jitted `_prefill` / `_decode` (alignax/sample/sampler.py); the decode time excludes the prefill.
One warm-up call (compiles), then the median of `--repeats` calls; prints ms per step, the
cache's bytes per step and the load average (`os.getloadavg`): numbers taken under load are not
a quiet machine's. Each (batch, slots) pair runs in this one process, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

PROMPT_SLOTS = 64


def decode_ms_per_step(model, batch_size: int, slots: int, steps: int, repeats: int) -> float:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from alignax.sample import SamplingParams, sampler

    graphdef, state = nnx.split(model)
    ids = jnp.ones((batch_size, PROMPT_SLOTS), jnp.int32)
    kw = dict(params=SamplingParams(temperature=0.0), eos_ids=(), pad_id=0)
    rows = (ids, jnp.ones_like(ids), jnp.zeros((batch_size, 2), jnp.uint32), jnp.zeros((batch_size,), bool))

    def one_call() -> float:
        decode_state = sampler._prefill(graphdef, state, *rows, max_new_tokens=slots - PROMPT_SLOTS, **kw)
        jax.block_until_ready(decode_state)
        start = time.perf_counter()
        decode_state = sampler._decode(graphdef, state, decode_state, jnp.int32(steps + 1), **kw)
        jax.block_until_ready(decode_state)
        return time.perf_counter() - start

    one_call()  # compiles
    return 1000 * statistics.median(one_call() for _ in range(repeats)) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-slots", default="192,1088", help="comma-separated cache lengths (> 64)")
    parser.add_argument("--steps", type=int, default=64, help="decode steps timed per call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from alignax.models import load

    model, _ = load("smollm2-135m-instruct")
    cfg = model.cfg
    rows = []
    for slots in (int(s) for s in args.cache_slots.split(",")):
        if slots <= PROMPT_SLOTS + args.steps:
            parser.error(f"--cache-slots {slots} must exceed {PROMPT_SLOTS} prompt slots + {args.steps} steps")
        ms = decode_ms_per_step(model, args.batch_size, slots, args.steps, args.repeats)
        cache_mb = (
            2 * cfg.num_hidden_layers * args.batch_size * slots * cfg.num_key_value_heads * cfg.head_dim * 4 / 1e6
        )
        rows.append(dict(batch_size=args.batch_size, slots=slots, ms_per_step=round(ms, 1), cache_mb=round(cache_mb)))
        print(
            f"batch {args.batch_size:3d}  slots {slots:5d}  {ms:8.1f} ms/step  cache {cache_mb:7.0f} MB/step"
            f"  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(json.dumps({"rows": rows, "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
