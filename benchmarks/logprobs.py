"""Peak memory and time of per-token log-probs (value + grad): chunked kernel vs naive full logits.

    python -m benchmarks.logprobs            # memory table (compile only) + timings that fit
    python -m benchmarks.logprobs --quick    # small shapes, for a smoke run

Memory is XLA's compiled memory analysis of `jax.value_and_grad` w.r.t. hidden and head
(`jax.jit(f).lower(...).compile().memory_analysis()`: temp = scratch buffers the program
allocates besides its arguments and outputs; no execution needed, so the naive program is
measured even where it would not be run). Time is the median wall time of the compiled
function on random inputs. The last line is one JSON object with the figures; the "peer" is
the naive full-logits computation (what `log_softmax(logits)` + gather in TRL/transformers does).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from alignax import ops

MB = 1024 * 1024


def _value_and_grad(fn):
    def run(hidden, head, labels):
        return jax.value_and_grad(lambda h, w: fn(h, w, labels).sum(), argnums=(0, 1))(hidden, head)

    return run


def _specs(batch, length, dim, vocab, dtype):
    return (
        jax.ShapeDtypeStruct((batch, length, dim), dtype),
        jax.ShapeDtypeStruct((dim, vocab), dtype),
        jax.ShapeDtypeStruct((batch, length), jnp.int32),
    )


def compiled_memory(fn, specs):
    compiled = jax.jit(_value_and_grad(fn)).lower(*specs).compile()
    analysis = compiled.memory_analysis()
    return compiled, {
        "temp_mb": analysis.temp_size_in_bytes / MB,
        "args_mb": analysis.argument_size_in_bytes / MB,
        "out_mb": analysis.output_size_in_bytes / MB,
    }


def time_compiled(compiled, specs, repeats):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], specs[0].shape, specs[0].dtype)
    head = (jax.random.normal(keys[1], specs[1].shape, jnp.float32) / specs[1].shape[0] ** 0.5).astype(specs[1].dtype)
    labels = jax.random.randint(keys[2], specs[2].shape, 0, specs[1].shape[1])
    jax.block_until_ready(compiled(hidden, head, labels))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(hidden, head, labels))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=512, help="positions per chunk (per row)")
    parser.add_argument("--vocab-chunk-size", type=int, default=8192)
    parser.add_argument(
        "--time-naive-max-gb",
        type=float,
        default=6.0,
        help="run the naive program only if its compiled temp memory is below this",
    )
    parser.add_argument("--no-time-large", action="store_true", help="skip timing the Llama-3-sized config")
    args = parser.parse_args(argv)

    batch, length = (2, 128) if args.quick else (2, 2048)  # 4,096 tokens
    configs = [("smollm2", 49_152, 576), ("llama3", 128_256, 2048)]
    if args.quick:
        configs = [("smollm2", 4096, 64), ("llama3", 8192, 128)]
    dtype = jnp.float32
    chunked = functools.partial(ops.token_logprobs, chunk_size=args.chunk_size, vocab_chunk_size=args.vocab_chunk_size)
    seq_only = functools.partial(ops.token_logprobs, chunk_size=args.chunk_size)

    print(
        f"# per-token log-probs, value+grad w.r.t. hidden and head; {batch}x{length} = {batch * length} tokens, "
        f"fp32; jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cpus, {platform.machine()})"
    )
    rows, figures = [], {}
    for name, vocab, dim in configs:
        specs = _specs(batch, length, dim, vocab, dtype)
        full_logits_mb = batch * length * vocab * 4 / MB
        variants = [
            ("naive", ops.token_logprobs_naive, "full [B,T,V] logits"),
            (f"seq-chunk {args.chunk_size}", seq_only, f"[B,{args.chunk_size},V]"),
            (
                f"seq {args.chunk_size} x vocab {args.vocab_chunk_size}",
                chunked,
                f"[B,{args.chunk_size},{args.vocab_chunk_size}]",
            ),
        ]
        for label, fn, note in variants:
            compiled, mem = compiled_memory(fn, specs)
            seconds = None
            skip_reason = ""
            is_naive = fn is ops.token_logprobs_naive
            if is_naive and mem["temp_mb"] > args.time_naive_max_gb * 1024:
                skip_reason = f"not run: needs {mem['temp_mb'] / 1024:.1f} GiB temp (> {args.time_naive_max_gb} GiB budget on a shared 24 GiB box)"
            elif name == "llama3" and (args.no_time_large or fn is not chunked):
                skip_reason = "not timed (memory only)"
            else:
                seconds = time_compiled(compiled, specs, args.repeats)
            rows.append((name, vocab, dim, label, mem["temp_mb"], full_logits_mb, seconds, skip_reason or note))
            key = {"naive": "naive", f"seq-chunk {args.chunk_size}": "seqchunk"}.get(label, "chunked")
            figures[f"{key}_temp_mb_v{vocab}"] = round(mem["temp_mb"], 1)
            if seconds is not None:
                figures[f"{key}_s_v{vocab}"] = round(seconds, 3)

    print(
        f"\n{'model':8} {'vocab':>7} {'D':>5}  {'kernel':30} {'temp MiB':>10} {'[B,T,V] f32 MiB':>16} "
        f"{'[D,V] f32 MiB':>14} {'time s':>8}  note"
    )
    for name, vocab, dim, label, temp, full, seconds, note in rows:
        t = f"{seconds:8.2f}" if seconds is not None else f"{'-':>8}"
        print(
            f"{name:8} {vocab:>7} {dim:>5}  {label:30} {temp:10.1f} {full:16.1f} {dim * vocab * 4 / MB:14.1f} {t}  {note}"
        )
    print(
        "(naive temp holds [B,T,V] float32 logits and their gradient; the sequence-chunked kernel holds "
        "[B,C,V] per chunk; the vocabulary-chunked kernel [B,C,Vc] slices)"
    )

    # Growth with the chunk, not the vocabulary: sweep chunk sizes at both vocabularies.
    print(f"\nchunked temp MiB (value+grad) by (positions per chunk x vocab slice), {batch * length} tokens:")
    sweep = [(128, 4096), (256, 4096), (512, 4096), (512, 8192), (1024, 8192)]
    if args.quick:
        sweep = [(32, 512), (64, 512), (64, 1024)]
    print(f"{'chunk':>6} {'vslice':>7} " + " ".join(f"{'V=' + str(v):>12}" for _, v, _ in configs))
    for chunk, vslice in sweep:
        temps = []
        for _name, vocab, dim in configs:
            fn = functools.partial(ops.token_logprobs, chunk_size=chunk, vocab_chunk_size=vslice)
            _, mem = compiled_memory(fn, _specs(batch, length, dim, vocab, dtype))
            temps.append(mem["temp_mb"])
            figures[f"sweep_temp_mb_c{chunk}_v{vslice}_V{vocab}"] = round(mem["temp_mb"], 1)
        print(f"{chunk:>6} {vslice:>7} " + " ".join(f"{t:12.1f}" for t in temps))

    v_small = configs[0][1]
    if f"chunked_s_v{v_small}" in figures and f"naive_s_v{v_small}" in figures:
        figures["alignax_s_per_step"] = figures[f"chunked_s_v{v_small}"]
        figures["peer_s_per_step"] = figures[f"naive_s_v{v_small}"]
        figures["time_ratio"] = round(figures["alignax_s_per_step"] / figures["peer_s_per_step"], 3)
    figures["alignax_temp_mb"] = figures[f"chunked_temp_mb_v{v_small}"]
    figures["peer_temp_mb"] = figures[f"naive_temp_mb_v{v_small}"]
    figures["memory_ratio"] = round(figures["alignax_temp_mb"] / max(figures["peer_temp_mb"], 1e-9), 4)
    figures["tokens"] = batch * length
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
