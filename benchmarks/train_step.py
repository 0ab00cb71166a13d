"""Train-step throughput and peak memory: alignax's one jitted step beside TRL 0.19.1's trainers.

    python -m benchmarks.train_step [--batch 4 --seq 128 --iters 3 --methods sft,dpo,simpo]

Model: SmolLM2-135M-Instruct, float32, from the same Q4_1 GGUF on both sides
(`alignax.models.load("smollm2-135m-instruct")` / transformers `from_pretrained(dir, gguf_file=...)`).
Batch: `--batch` examples of `--seq` tokens — SFT: batch sequences; DPO and SimPO: batch pairs, i.e.
2 x batch sequences, each a `seq/2`-token prompt + a `seq/2`-token response (random token ids, the
same on both sides). A step = loss + gradient + global-norm clip 1.0 + AdamW update; DPO also runs
the frozen reference forward (on the fly: no precomputed log-probs on either side).

  alignax: `alignax.train.step.make_train_step` (the engine's step: chunked log-probs, donation)
           with each experiment's cpu-preset loss hyperparameters, jitted; one compiling warm-up.
  TRL:     SFTTrainer / DPOTrainer (loss_type="sigmoid") / CPOTrainer (loss_type="simpo"):
           `trainer.training_step(model, batch)` (forward, loss, backward through accelerate),
           `clip_grad_norm_`, the trainer's AdamW `step()` and `zero_grad()`; one warm-up step.

Each (side, method) runs in its own subprocess, so peak RSS (`ru_maxrss`: loading, compilation and
the steps) is its own. tokens/s = sequences x seq / median step time. Prints a table, then one
JSON line with every figure.
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
METHODS = ("sft", "dpo", "simpo")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _token_ids(args, vocab_size: int):
    """[sequences, seq] ids: rows [0, B) chosen (or SFT), [B, 2B) rejected, sharing each pair's prompt."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    half = args.seq // 2
    prompts = rng.integers(0, vocab_size, size=(args.batch, half))
    chosen = rng.integers(0, vocab_size, size=(args.batch, args.seq - half))
    rejected = rng.integers(0, vocab_size, size=(args.batch, args.seq - half))
    return prompts.astype(np.int32), chosen.astype(np.int32), rejected.astype(np.int32)


def _time_steps(step, iters: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    step()  # warm-up: compiles (alignax) / allocates optimizer state (torch)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return warmup_s, times


def run_alignax(args) -> dict:
    import importlib

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import alignax.models as models
    from alignax.train.methods import get_method
    from alignax.train.optim import make_optimizer
    from alignax.train.step import TrainState, make_train_step

    config = importlib.import_module(f"configs.{args.method}").get_config("cpu")
    start = time.perf_counter()
    model, _ = models.load(PRESET)
    load_s = time.perf_counter() - start
    prompts, chosen, rejected = _token_ids(args, model.cfg.vocab_size)
    responses = [chosen] if args.method == "sft" else [chosen, rejected]
    ids = np.concatenate([np.concatenate([prompts, r], axis=1) for r in responses])
    rows, length = ids.shape
    loss_mask = np.zeros_like(ids)
    loss_mask[:, prompts.shape[1]:] = 1
    batch = {  # the engine's layout, one micro-batch: [1, rows, ...]
        "input_ids": ids, "segment_ids": np.ones_like(ids), "positions": np.tile(np.arange(length), (rows, 1)),
        "loss_mask": loss_mask, "sequence_index": np.arange(rows)[:, None],
    }
    batch = {k: jnp.asarray(v[None], jnp.int32) for k, v in batch.items()}

    ref_graphdef, ref_params = None, None
    if config.reference == "on_the_fly":
        ref_graphdef, ref_params = nnx.split(model)
        ref_params = jax.tree.map(jnp.copy, ref_params)
    graphdef, params, non_trainable = nnx.split(model, nnx.Param, ...)
    optimizer, schedule = make_optimizer(config.optimizer, 1000)
    step_fn = make_train_step(
        graphdef=graphdef, non_trainable=non_trainable, method_fn=get_method(config.method),
        method_kwargs=dict(loss_name=config.loss.name, hparams=config.loss.hparams.to_dict(),
                           chunk_size=config.logprob_chunk_size,
                           vocab_chunk_size=config.logprob_vocab_chunk_size or None, batch_size=args.batch),
        optimizer=optimizer, schedule=schedule, grad_accum_steps=1, ref_graphdef=ref_graphdef)
    step_fn = jax.jit(step_fn, donate_argnums=(0,))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=jax.jit(optimizer.init)(params),
                       rng=jax.random.key_data(jax.random.PRNGKey(0)))
    del model, params

    def step():
        nonlocal state
        state, metrics = step_fn(state, batch, ref_params)
        jax.block_until_ready(metrics["loss"])

    warmup_s, times = _time_steps(step, args.iters)
    return {"side": "alignax", "backend": f"jax {jax.__version__}", "rows": rows, "load_s": load_s,
            "warmup_s": warmup_s, "times_s": times}


def run_peer(args) -> dict:
    import datasets
    import torch
    import transformers
    import trl

    import alignax.models.presets as presets

    torch.manual_seed(args.seed)
    path = presets.resolve(PRESET)
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    load_s = time.perf_counter() - start
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts, chosen, rejected = (torch.from_numpy(a.astype("int64")) for a in _token_ids(args, model.config.vocab_size))
    ones = torch.ones_like
    common = dict(output_dir=os.path.join(args.tmpdir, args.method), per_device_train_batch_size=args.batch,
                  learning_rate=1e-5, max_grad_norm=1.0, report_to=[], logging_steps=1000, save_strategy="no",
                  bf16=False, fp16=False, use_cpu=True)
    tiny_text = datasets.Dataset.from_dict({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]})
    if args.method == "sft":
        trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(max_length=args.seq, **common),
                                 train_dataset=datasets.Dataset.from_dict({"text": ["a b", "c d"]}),
                                 processing_class=tokenizer)
        ids = torch.cat([prompts, chosen], dim=1)
        labels = ids.clone()
        labels[:, : prompts.shape[1]] = -100  # loss on the response only, as alignax's mask
        inputs = {"input_ids": ids, "attention_mask": ones(ids), "labels": labels}
        rows = ids.shape[0]
    elif args.method == "dpo":
        trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(beta=0.1, loss_type="sigmoid", max_length=args.seq,
                                                                 max_prompt_length=args.seq // 2, **common),
                                 train_dataset=tiny_text, processing_class=tokenizer)
        inputs = {"prompt_input_ids": prompts, "prompt_attention_mask": ones(prompts),
                  "chosen_input_ids": chosen, "chosen_attention_mask": ones(chosen),
                  "rejected_input_ids": rejected, "rejected_attention_mask": ones(rejected)}
        rows = 2 * args.batch
    else:
        trainer = trl.CPOTrainer(model=model, args=trl.CPOConfig(loss_type="simpo", cpo_alpha=0.0, beta=2.0,
                                                                 simpo_gamma=0.5, max_length=args.seq,
                                                                 max_prompt_length=args.seq // 2, **common),
                                 train_dataset=tiny_text, processing_class=tokenizer)
        inputs = {}
        for side, response in (("chosen", chosen), ("rejected", rejected)):
            ids = torch.cat([prompts, response], dim=1)
            labels = ids.clone()
            labels[:, : prompts.shape[1]] = -100
            inputs.update({f"{side}_input_ids": ids, f"{side}_attention_mask": ones(ids), f"{side}_labels": labels})
        rows = 2 * args.batch
    trainer.create_optimizer()
    model = trainer.model
    model.train()

    def step():
        trainer.training_step(model, inputs)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    warmup_s, times = _time_steps(step, args.iters)
    return {"side": "trl", "backend": f"trl {trl.__version__}, torch {torch.__version__} ({torch.get_num_threads()} thr)",
            "rows": rows, "load_s": load_s, "warmup_s": warmup_s, "times_s": times}


def _run_child(side: str, method: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--side", side, "--methods", method, "--batch",
           str(args.batch), "--seq", str(args.seq), "--iters", str(args.iters), "--seed", str(args.seed),
           "--tmpdir", args.tmpdir]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{side}/{method} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="SFT sequences / DPO, SimPO pairs per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence (half prompt, half response)")
    parser.add_argument("--iters", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tmpdir", default="/tmp/alignax_bench_train_step")
    parser.add_argument("--side", choices=["alignax", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    methods = args.methods.split(",")

    if args.side:  # child: one side, one method, one JSON line
        args.method = methods[0]
        result = run_alignax(args) if args.side == "alignax" else run_peer(args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result), flush=True)
        return result

    print(f"SmolLM2-135M-Instruct train step, float32, batch {args.batch} x {args.seq} tokens "
          f"(DPO/SimPO: {args.batch} pairs), median of {args.iters} steps after a warm-up; {os.cpu_count()} CPUs")
    header = (f"{'method':<6} {'side':<8} {'backend':<38} {'load s':>7} {'warm-up s':>10} {'step s':>7} "
              f"{'tokens/s':>9} {'peak RSS MB':>12}")
    print(header)
    print("-" * len(header))
    summary: dict = {"batch": args.batch, "seq": args.seq}
    for method in methods:
        for side in ("alignax", "trl"):
            row = _run_child(side, method, args)
            row["median_s"] = statistics.median(row["times_s"])
            row["tokens_per_s"] = row["rows"] * args.seq / row["median_s"]
            print(f"{method:<6} {side:<8} {row['backend']:<38} {row['load_s']:>7.1f} {row['warmup_s']:>10.1f} "
                  f"{row['median_s']:>7.2f} {row['tokens_per_s']:>9.0f} {row['peak_rss_mb']:>12.0f}", flush=True)
            prefix = "alignax" if side == "alignax" else "peer"
            summary[f"{method}_{prefix}_tokens_per_s"] = round(row["tokens_per_s"], 1)
            summary[f"{method}_{prefix}_peak_rss_mb"] = round(row["peak_rss_mb"], 1)
        summary[f"{method}_ratio"] = round(summary[f"{method}_alignax_tokens_per_s"] / summary[f"{method}_peer_tokens_per_s"], 3)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
