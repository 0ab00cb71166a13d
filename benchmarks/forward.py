"""Forward-pass throughput and peak memory: alignax (jax.jit) beside transformers (torch, no_grad).

    python -m benchmarks.forward [--batch 4 --seq 256 --iters 3]

Both sides run SmolLM2-135M-Instruct dequantized to float32 from the same GGUF
(``alignax.models.load("smollm2-135m-instruct")`` / ``AutoModelForCausalLM.from_pretrained(...,
gguf_file=...)``) on the same token ids (numpy default_rng(seed), uniform over the vocabulary).
Each side runs in its own subprocess so its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``,
loading and compilation included) is its own. Throughput = batch * seq / median wall time of one
forward after a warm-up call (which compiles, for alignax). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PRESET = "smollm2-135m-instruct"


def _input_ids(batch: int, seq: int, vocab_size: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, vocab_size, size=(batch, seq), dtype=np.int32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _time_calls(fn, iters: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    fn()  # warm-up: compiles (alignax) / allocates (torch)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return warmup_s, times


def run_alignax(args) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import alignax.models as models

    start = time.perf_counter()
    model, _ = models.load(PRESET)
    load_s = time.perf_counter() - start
    graphdef, state = nnx.split(model)
    ids = jnp.asarray(_input_ids(args.batch, args.seq, model.cfg.vocab_size, args.seed))

    @jax.jit
    def forward(state, ids):
        return nnx.merge(graphdef, state)(ids)

    warmup_s, times = _time_calls(lambda: forward(state, ids).block_until_ready(), args.iters)
    return {
        "side": "alignax",
        "backend": f"jax {jax.__version__} ({jax.default_backend()})",
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
    }


def run_peer(args) -> dict:
    import torch
    import transformers

    import alignax.models.presets as presets

    path = presets.resolve(PRESET)
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32
    )
    model.eval()
    load_s = time.perf_counter() - start
    ids = torch.from_numpy(_input_ids(args.batch, args.seq, model.config.vocab_size, args.seed).astype("int64"))

    def forward():
        with torch.no_grad():
            return model(ids).logits

    warmup_s, times = _time_calls(forward, args.iters)
    return {
        "side": "transformers",
        "backend": f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
    }


def _run_side(side: str, args) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.forward",
        "--side",
        side,
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--iters",
        str(args.iters),
        "--seed",
        str(args.seed),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", choices=["alignax", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:  # child process: one side, one JSON line
        result = run_alignax(args) if args.side == "alignax" else run_peer(args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result), flush=True)
        return result

    tokens = args.batch * args.seq
    rows = [_run_side("alignax", args), _run_side("peer", args)]
    for row in rows:
        row["median_s"] = statistics.median(row["times_s"])
        row["tokens_per_s"] = tokens / row["median_s"]
    print(
        f"SmolLM2-135M-Instruct forward, float32, batch {args.batch} x {args.seq} tokens, "
        f"median of {args.iters} after warm-up; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'side':<13} {'backend':<28} {'load s':>7} {'warm-up s':>10} {'fwd s':>7} {'tokens/s':>9} {'peak RSS MB':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['side']:<13} {row['backend']:<28} {row['load_s']:>7.1f} {row['warmup_s']:>10.1f} "
            f"{row['median_s']:>7.2f} {row['tokens_per_s']:>9.0f} {row['peak_rss_mb']:>12.0f}"
        )
    ours, peer = rows
    summary = {
        "alignax_tokens_per_s": round(ours["tokens_per_s"], 1),
        "peer_tokens_per_s": round(peer["tokens_per_s"], 1),
        "ratio": round(ours["tokens_per_s"] / peer["tokens_per_s"], 3),
        "alignax_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "peer_peak_rss_mb": round(peer["peak_rss_mb"], 1),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
