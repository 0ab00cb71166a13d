"""Model FLOPs utilization of alignax's train step on an accelerator (or a smoke run on CPU).

    python -m benchmarks.mfu                                   # 1B-class Llama, bf16, on the default device
    python -m benchmarks.mfu --size tiny --seq 64 --batch 2    # CPU smoke run

The engine's own step (`alignax.train.step.make_train_step` + `alignax.train.methods`), on a random
Llama of the given size (params float32, compute bfloat16, remat per block), for SFT and DPO (the
frozen reference forward on the fly, as the DPO configs do). A step = loss + grads + AdamW.

Model FLOPs per step (the MaxText/PaLM convention; causal attention counted in full):
  policy (fwd+bwd): tokens x (6 N + 12 L T D)     reference (fwd, DPO): tokens x (2 N + 4 L T D)
with N the matmul parameters including the LM head. MFU = model FLOPs / step time / peak, with the
peak from --peak-tflops (default 989: H100 SXM dense bf16). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SIZES = {
    # A Llama-3.2-1B-like shape (vocab 128,256, tied head).
    "1b": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
        rope_theta=500000.0,
    ),
    # SmolLM2-135M's shape.
    "135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    ),
    "tiny": dict(
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}


def matmul_params(cfg) -> int:
    d, f, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    attention = d * cfg.num_attention_heads * cfg.head_dim * 2 + d * cfg.num_key_value_heads * cfg.head_dim * 2
    return layers * (attention + 3 * d * f) + d * cfg.vocab_size


def make_batch(cfg, *, pairs: int, seq: int, sides: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = pairs * sides
    ids = rng.integers(0, cfg.vocab_size, size=(rows, seq)).astype(np.int32)
    loss_mask = np.zeros((rows, seq), np.int32)
    loss_mask[:, seq // 2 :] = 1  # prompt half, response half
    return {
        "input_ids": ids[None],
        "segment_ids": np.ones((1, rows, seq), np.int32),
        "positions": np.broadcast_to(np.arange(seq, dtype=np.int32), (1, rows, seq)).copy(),
        "loss_mask": loss_mask[None],
        "sequence_index": np.arange(rows, dtype=np.int32).reshape(1, rows, 1),
    }


def run_method(method: str, args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from alignax.models.config import LlamaConfig
    from alignax.models.llama import Llama
    from alignax.train.methods import get_method
    from alignax.train.step import TrainState, make_train_step

    cfg = LlamaConfig(
        **SIZES[args.size],
        max_position_embeddings=max(4096, args.seq),
        dtype=args.dtype,
        param_dtype="float32",
        remat=args.remat,
    )
    model = Llama(cfg, rngs=nnx.Rngs(0))
    ref_graphdef, ref_params = nnx.split(model) if method == "dpo" else (None, None)
    if ref_params is not None:
        ref_params = jax.tree.map(jnp.copy, ref_params)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-6))
    schedule = optax.constant_schedule(1e-6)
    sides = 2 if method == "dpo" else 1
    method_kwargs = dict(
        loss_name="sigmoid" if method == "dpo" else "sft",
        hparams={"beta": 0.1} if method == "dpo" else {},
        chunk_size=args.chunk,
        vocab_chunk_size=args.vocab_chunk,
        batch_size=args.batch,
    )
    step = jax.jit(
        make_train_step(
            graphdef=graphdef,
            non_trainable=rest,
            method_fn=get_method("pairwise" if method == "dpo" else "sft"),
            method_kwargs=method_kwargs,
            optimizer=optimizer,
            schedule=schedule,
            grad_accum_steps=1,
            ref_graphdef=ref_graphdef,
        ),
        donate_argnums=(0,),
    )
    state = jax.jit(
        lambda p: TrainState(
            step=jnp.zeros((), jnp.int32),
            params=p,
            opt_state=optimizer.init(p),
            rng=jax.random.key_data(jax.random.PRNGKey(0)),
        )
    )(params)
    del params, model
    batch = jax.tree.map(jnp.asarray, make_batch(cfg, pairs=args.batch, seq=args.seq, sides=sides))

    start = time.perf_counter()
    state, metrics = step(state, batch, ref_params)
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        state, metrics = step(state, batch, ref_params)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)

    tokens = args.batch * sides * args.seq
    n = matmul_params(cfg)
    attention = cfg.num_hidden_layers * args.seq * cfg.hidden_size
    flops = tokens * (6 * n + 12 * attention)
    if method == "dpo":
        flops += tokens * (2 * n + 4 * attention)
    memory = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        memory = stats.get("peak_bytes_in_use")
    except Exception:  # noqa: BLE001 — CPU devices have no memory stats
        pass
    return {
        "method": method,
        "device": jax.devices()[0].device_kind,
        "params_m": round(n / 1e6, 1),
        "tokens_per_step": tokens,
        "compile_s": round(compile_s, 1),
        "step_s": round(step_s, 4),
        "tokens_per_s": round(tokens / step_s, 1),
        "tflops": round(flops / step_s / 1e12, 2),
        "mfu": round(flops / step_s / (args.peak_tflops * 1e12), 4),
        "peak_hbm_gb": round(memory / 2**30, 2) if memory else None,
        "loss": float(metrics["loss"]),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--batch", type=int, default=8, help="sequences (SFT) or pairs (DPO) per step")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--remat", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--chunk", type=int, default=1024, help="log-prob kernel: tokens per chunk")
    parser.add_argument("--vocab-chunk", type=int, default=16384, help="log-prob kernel: vocabulary slice")
    parser.add_argument("--methods", default="sft,dpo")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args(argv)
    results = [run_method(m, args) for m in args.methods.split(",")]
    header = f"{'method':6} {'device':>16} {'params M':>9} {'tok/step':>9} {'step s':>8} {'tok/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'HBM GB':>7}"
    print(header)
    for r in results:
        print(
            f"{r['method']:6} {r['device']:>16} {r['params_m']:9.1f} {r['tokens_per_step']:9d} {r['step_s']:8.3f} "
            f"{r['tokens_per_s']:10.0f} {r['tflops']:8.1f} {r['mfu']:6.1%} {str(r['peak_hbm_gb']):>7}"
        )
    print(
        json.dumps(
            {f"alignax_{r['method']}_{k}": r[k] for r in results for k in ("tokens_per_s", "mfu", "peak_hbm_gb")}
        )
    )


if __name__ == "__main__":
    main()
