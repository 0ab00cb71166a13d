"""Train-step throughput and peak memory on real data: alignax's engine beside TRL 0.19.1's trainers.

    python -m benchmarks.train_step [--batch 8 --iters 3 --methods sft,dpo,simpo]

Model: SmolLM2-135M-Instruct, float32 on both sides, from the same GGUF. Data: the built-in sets,
whose prompt and response lengths are real and uneven — builtin:sft/train for SFT,
builtin:arith_pairs/train for DPO and SimPO — the same first `batch * (iters + 1)` examples, in
order, through each side's OWN data path with the chat template:

  alignax: the engine's feed (`alignax.train.feed`: packed rows) and its jitted step
           (`alignax.train.step.make_train_step`); DPO with `reference: precomputed` (the cached
           starting-model log-probs are data: no reference forward in the step).
  TRL:     SFTTrainer / DPOTrainer (sigmoid) / CPOTrainer (simpo) with their own tokenization and
           padding collators; `trainer.training_step` + `clip_grad_norm_(1.0)` + AdamW `step()`.
           DPO twice: the default (reference forward every step) and `precompute_ref_log_probs`
           (the step reads `ref_*_logps` from the batch, as TRL's precomputed path does).

A step = loss + gradient + clip + AdamW update over `--batch` examples. tokens/s counts the REAL
(non-padding) tokens of the step's sequences, the same on both sides, over the median step time;
padded tokens processed are reported beside. The useful FLOP rate is 6 x params x real tokens
(+ 2 x params x tokens for a reference forward) per second, against the float32 matmul peak this
script measures (a 2048^3 jitted matmul). Each (side, method) runs in its own subprocess, so peak RSS
(`ru_maxrss`: loading, compilation and the steps) is its own. Prints `uptime`, a table, then one
JSON line: `dpo_ratio`, `simpo_ratio`, `sft_ratio` (alignax tokens/s over TRL's default),
`dpo_ratio_vs_precomputed`, `dpo_rss_ratio`, `simpo_rss_ratio`, and every figure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PRESET = "smollm2-135m-instruct"
METHODS = ("sft", "dpo", "simpo")
DATA = {"sft": "builtin:sft/train", "dpo": "builtin:arith_pairs/train", "simpo": "builtin:arith_pairs/train"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_now_mb() -> float:
    """Resident set size now (VmRSS), to say which stage holds the memory (ru_maxrss is the peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0


def _records(method: str, count: int) -> list[dict]:
    from alignax.data.builtin import builtin_path

    with open(builtin_path(DATA[method][len("builtin:") :])) as f:
        return [json.loads(line) for line in f][:count]


def _time_steps(steps, iters: int) -> tuple[float, list[float]]:
    """Warm up on every batch first (alignax compiles once per distinct packed shape; torch allocates
    its optimizer state), then time the steps on batches 1..iters."""
    start = time.perf_counter()
    for i in range(iters + 1):
        steps(i)
    warmup_s = time.perf_counter() - start
    times = []
    for i in range(1, iters + 1):
        start = time.perf_counter()
        steps(i)
        times.append(time.perf_counter() - start)
    return warmup_s, times


def matmul_peak_gflops() -> float:
    """float32 matmul peak of this machine: a jitted 2048^3 matmul, best of 5."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = min(_timed(lambda: matmul(a, a).block_until_ready()) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_alignax(args) -> dict:
    import importlib

    import jax
    from flax import nnx

    from alignax.train import feed as feed_lib
    from alignax.train import loop, modeling, validate
    from alignax.train.methods import get_method
    from alignax.train.optim import make_optimizer
    from alignax.train.step import TrainState, make_train_step

    config = importlib.import_module(f"configs.{args.method}").get_config("cpu")
    path = os.path.join(args.tmpdir, f"{args.method}.jsonl")
    os.makedirs(args.tmpdir, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in _records(args.method, args.batch * (args.iters + 1)))
    config.update_from_flattened_dict(
        {
            "data.train": path,
            "data.eval": "",
            "data.shuffle": False,
            "batch_size": args.batch,
            "mesh.num_devices": 1,
            "reference": "precomputed" if args.method == "dpo" else config.reference,
            "reference_cache_dir": os.path.join(args.tmpdir, "refcache"),
            "remat": bool(args.remat),
        }
    )
    if args.lora_rank:  # LoRA-DPO's reference is the base model under the adapters: on the fly, no copy
        config.update_from_flattened_dict(
            {
                "lora.rank": args.lora_rank,
                "lora.alpha": float(args.lora_rank),
                "lora.target": "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj",
                "reference": "on_the_fly" if args.method == "dpo" else config.reference,
            }
        )
    hparams = validate.check_config(config)
    start = time.perf_counter()
    mesh = modeling.make_mesh(config.mesh)
    model, tokenizer = modeling.build_model(config, mesh)
    load_s = time.perf_counter() - start
    stages = {"loaded": (_rss_now_mb(), _peak_rss_mb())}
    from alignax.models import lora

    graphdef, params, non_trainable = nnx.split(model, lora.TRAINABLE if args.lora_rank else nnx.Param, ...)
    splits = {"train": feed_lib.load_split(config, tokenizer, split="train")}
    if config.reference == "precomputed":
        loop.precompute_reference(config, model, splits)
    feed = feed_lib.make_feed(
        config,
        tokenizer,
        split="train",
        rows_multiple=1,
        required_fields=validate.data_inputs(config),
        tokenized=splits["train"],
    )
    batches = [loop._global_batch(next(feed), mesh, 1) for _ in range(args.iters + 1)]
    stages["reference + batches"] = (_rss_now_mb(), _peak_rss_mb())
    optimizer, schedule = make_optimizer(config.optimizer, 1000)
    step_fn = jax.jit(
        make_train_step(
            graphdef=graphdef,
            non_trainable=non_trainable,
            method_fn=get_method(config.method),
            method_kwargs=dict(
                loss_name=config.loss.name,
                hparams=hparams,
                chunk_size=config.logprob_chunk_size,
                vocab_chunk_size=config.logprob_vocab_chunk_size or None,
                batch_size=args.batch,
                num_sides=feed.num_sides,
            ),
            optimizer=optimizer,
            schedule=schedule,
            grad_accum_steps=1,
            base_reference=bool(args.lora_rank) and validate.uses_reference(config),
        ),
        donate_argnums=(0,),
    )
    state = TrainState(
        step=jax.numpy.zeros((), jax.numpy.int32),
        params=params,
        opt_state=jax.jit(optimizer.init)(params),
        rng=jax.random.key_data(jax.random.PRNGKey(0)),
    )
    del model, params
    stages["optimizer state"] = (_rss_now_mb(), _peak_rss_mb())

    def steps(i):
        nonlocal state
        state, metrics = step_fn(state, batches[i], None, non_trainable)
        jax.block_until_ready(metrics["loss"])
        if "first step (compile + run)" not in stages:
            stages["first step (compile + run)"] = (_rss_now_mb(), _peak_rss_mb())
            # What of that is live and what is freed memory the C allocator kept (compilation's)?
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            stages["after malloc_trim"] = (_rss_now_mb(), _peak_rss_mb())

    warmup_s, times = _time_steps(steps, args.iters)
    stages["steps"] = (_rss_now_mb(), _peak_rss_mb())
    real = [int((b["segment_ids"] > 0).sum()) for b in batches[1:]]
    padded = [int(b["segment_ids"].size) for b in batches[1:]]
    return {
        "side": "alignax",
        "backend": f"jax {jax.__version__}",
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "real_tokens": real,
        "padded_tokens": padded,
        "reference_forward": validate.uses_reference(config),
        "params": int(sum(x.size for x in jax.tree.leaves((state.params, non_trainable)))),
        # (RSS now, peak so far) in MB after each stage: where the memory goes
        "rss_stages_mb": {name: [round(now), round(peak)] for name, (now, peak) in stages.items()},
    }


def _trl_trainer(args, model, tokenizer, records):
    import datasets
    import trl

    common = dict(
        output_dir=os.path.join(args.tmpdir, args.method),
        per_device_train_batch_size=args.batch,
        learning_rate=1e-5,
        max_grad_norm=1.0,
        report_to=[],
        logging_steps=1000,
        save_strategy="no",
        bf16=False,
        fp16=False,
        use_cpu=True,
    )
    if args.method == "sft":
        data = datasets.Dataset.from_list([{"messages": r["messages"]} for r in records])
        return trl.SFTTrainer(
            model=model,
            args=trl.SFTConfig(max_length=96, assistant_only_loss=False, **common),
            train_dataset=data,
            processing_class=tokenizer,
        )
    data = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in records
        ]
    )
    if args.method == "dpo":
        config = trl.DPOConfig(
            beta=0.1,
            loss_type="sigmoid",
            max_length=96,
            max_prompt_length=64,
            precompute_ref_log_probs=args.precomputed,
            **common,
        )
        return trl.DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    config = trl.CPOConfig(
        loss_type="simpo", cpo_alpha=0.0, beta=2.0, simpo_gamma=0.5, max_length=96, max_prompt_length=64, **common
    )
    return trl.CPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def _real_tokens(batch, method: str) -> tuple[int, int]:
    """(real, padded) tokens the model runs on in TRL's step, counted as alignax counts its own (every
    token of every sequence the forward pass sees). DPOTrainer pads prompts and completions apart and
    runs prompt + chosen and prompt + rejected: the prompt counts twice. CPOTrainer's chosen and
    rejected masks already cover prompt + response (its separate prompt mask is not run)."""
    if method == "sft":
        mask = batch["attention_mask"]
        return int(mask.sum()), int(mask.numel())
    chosen, rejected = batch["chosen_attention_mask"], batch["rejected_attention_mask"]
    rows, width = chosen.shape[0], max(chosen.shape[1], rejected.shape[1])  # both padded to one width
    real, padded = int(chosen.sum() + rejected.sum()), 2 * rows * width
    if method == "dpo":
        prompt = batch["prompt_attention_mask"]
        real, padded = real + 2 * int(prompt.sum()), padded + 2 * int(prompt.numel())
    return real, padded


def run_peer(args) -> dict:
    import torch
    import transformers
    import trl
    from torch.utils.data import DataLoader

    import alignax.models.presets as presets

    torch.manual_seed(args.seed)
    path = presets.resolve(PRESET)
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    load_s = time.perf_counter() - start
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    trainer = _trl_trainer(args, model, tokenizer, _records(args.method, args.batch * (args.iters + 1)))
    loader = DataLoader(trainer.train_dataset, batch_size=args.batch, shuffle=False, collate_fn=trainer.data_collator)
    batches = [trainer._prepare_inputs(b) if hasattr(trainer, "_prepare_inputs") else b for b in loader]
    if args.precomputed:  # TRL's precomputed path reads these from the batch (values do not change the cost)
        for b in batches:
            b["ref_chosen_logps"] = torch.zeros(args.batch)
            b["ref_rejected_logps"] = torch.zeros(args.batch)
    trainer.create_optimizer()
    model = trainer.model
    model.train()

    def steps(i):
        trainer.training_step(model, batches[i])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    warmup_s, times = _time_steps(steps, args.iters)
    counts = [_real_tokens(b, args.method) for b in batches[1 : args.iters + 1]]
    return {
        "side": "trl",
        "backend": f"trl {trl.__version__}, torch {torch.__version__} ({torch.get_num_threads()} thr)",
        "load_s": load_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "real_tokens": [c[0] for c in counts],
        "padded_tokens": [c[1] for c in counts],
        "reference_forward": args.method == "dpo" and not args.precomputed,
        "params": int(sum(p.numel() for p in model.parameters())),
    }


def _run_child(side: str, method: str, args, precomputed: bool = False, lora_rank: int = 0) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.train_step",
        "--side",
        side,
        "--methods",
        method,
        "--batch",
        str(args.batch),
        "--iters",
        str(args.iters),
        "--seed",
        str(args.seed),
        "--tmpdir",
        args.tmpdir,
        "--lora-rank",
        str(lora_rank),
    ]
    cmd += ["--precomputed"] if precomputed else []
    cmd += ["--remat"] if args.remat else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side}/{method} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def _summarize(row: dict, peak_gflops: float) -> dict:
    row["median_s"] = statistics.median(row["times_s"])
    real = statistics.mean(row["real_tokens"])
    row["tokens_per_s"] = real / row["median_s"]
    flops = (6 + (2 if row["reference_forward"] else 0)) * row["params"] * real
    row["useful_gflops"] = flops / row["median_s"] / 1e9
    row["fraction_of_peak"] = row["useful_gflops"] / peak_gflops
    row["padding_fraction"] = 1 - real / statistics.mean(row["padded_tokens"])
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="SFT conversations / DPO, SimPO pairs per step")
    parser.add_argument("--iters", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tmpdir", default="/tmp/alignax_bench_train_step")
    parser.add_argument("--side", choices=["alignax", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--precomputed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=0,
        help="also run alignax with LoRA adapters of this rank on every projection (row alignax_lora; "
        "LoRA-DPO's reference: the base model on the fly)",
    )
    parser.add_argument(
        "--remat",
        action="store_true",
        help="alignax rows (full and LoRA alike) recompute each layer's activations in the backward pass",
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",")

    if args.side:  # child: one side, one method, one JSON line
        args.method = methods[0]
        result = run_alignax(args) if args.side == "alignax" else run_peer(args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result), flush=True)
        return result

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    peak = matmul_peak_gflops()
    print(f"uptime: {uptime}\nfloat32 matmul peak (jitted 2048^3): {peak:.0f} GFLOP/s; {os.cpu_count()} CPUs")
    print(
        f"SmolLM2-135M-Instruct train step, float32, batch {args.batch} built-in examples, median of {args.iters} "
        f"steps after a warm-up"
    )
    header = (
        f"{'method':<6} {'side':<16} {'step s':>7} {'tokens/s':>9} {'pad %':>6} {'GFLOP/s':>8} {'% peak':>7} "
        f"{'warm-up s':>10} {'peak RSS MB':>12}"
    )
    print(header + "\n" + "-" * len(header))
    summary: dict = {"batch": args.batch, "iters": args.iters, "matmul_peak_gflops": round(peak, 1), "uptime": uptime}
    for method in methods:
        sides = [("alignax", "alignax", False), ("trl", "peer", False)]
        sides += [("trl", "peer_precomputed", True)] if method == "dpo" else []
        sides += [("alignax", "alignax_lora", False)] if args.lora_rank else []
        for side, label, precomputed in sides:
            lora_rank = args.lora_rank if label == "alignax_lora" else 0
            row = _summarize(_run_child(side, method, args, precomputed, lora_rank), peak)
            print(
                f"{method:<6} {label:<16} {row['median_s']:>7.2f} {row['tokens_per_s']:>9.0f} "
                f"{100 * row['padding_fraction']:>5.0f}% {row['useful_gflops']:>8.1f} {100 * row['fraction_of_peak']:>6.0f}% "
                f"{row['warmup_s']:>10.1f} {row['peak_rss_mb']:>12.0f}",
                flush=True,
            )
            for key in ("tokens_per_s", "peak_rss_mb", "useful_gflops", "median_s", "warmup_s"):
                summary[f"{method}_{label}_{key}"] = round(row[key], 3)
            if "rss_stages_mb" in row:
                print(f"       RSS now / peak MB after each stage: {row['rss_stages_mb']}", flush=True)
                summary[f"{method}_{label}_rss_stages_mb"] = row["rss_stages_mb"]
        summary[f"{method}_ratio"] = round(
            summary[f"{method}_alignax_tokens_per_s"] / summary[f"{method}_peer_tokens_per_s"], 3
        )
        summary[f"{method}_rss_ratio"] = round(
            summary[f"{method}_alignax_peak_rss_mb"] / summary[f"{method}_peer_peak_rss_mb"], 3
        )
        if args.lora_rank:  # LoRA against full fine-tuning, both alignax
            summary[f"{method}_lora_rss_ratio"] = round(
                summary[f"{method}_alignax_lora_peak_rss_mb"] / summary[f"{method}_alignax_peak_rss_mb"], 3
            )
    if "dpo" in methods:
        summary["dpo_ratio_vs_precomputed"] = round(
            summary["dpo_alignax_tokens_per_s"] / summary["dpo_peer_precomputed_tokens_per_s"], 3
        )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
