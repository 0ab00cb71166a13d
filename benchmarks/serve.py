"""Serving throughput: alignax.serve with continuous batching vs the same server one request at a
time, and vs transformers' `generate` on the same requests. SmolLM2-135M-Instruct, CPU.

    python -m benchmarks.serve                    # 32 clients x 64 new tokens, 3 timed rounds
    python -m benchmarks.serve --clients 16 --max-tokens 32 --repeats 3

Sides, each in its own process:
  batched  `python -m alignax.serve --max-batch <clients>`: every client's request decodes in one
           continuous batch (a request joins at the next decode step after its prefill).
  serial   the same server with `--max-batch 1`: one request at a time, the others queue.
  transformers  `model.generate` (4.53.3, torch CPU) on all the requests as one left-padded batch.
Both servers get `--warmup` (compiling the decode step and the prompts' prefill buckets) and one
untimed warm-up request before the timed rounds. A round: `clients` threads, each ONE streaming
chat request with the official `openai` client (greedy, `ignore_eos`, exactly max_tokens tokens,
so every side does the same work), all started together. tokens/s = clients x max_tokens / the
round's wall time; time to first token (TTFT) = request start -> first content chunk, median over
the round's requests. transformers: tokens/s from generate(max_new_tokens) on the batch; its TTFT
is the time of generate(max_new_tokens=1) on the same batch (every request's first token arrives
then). Medians over `--repeats` rounds. Prints `uptime` before and after (the machine is shared),
a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchmarks.sample import PROMPTS

MODEL = "smollm2-135m-instruct"
API_KEY = "bench-key"
SERVER_START_TIMEOUT_S = 900


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _prompts(clients: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(clients)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _start_server(max_batch: int, max_context: int, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "alignax.serve",
        "--model",
        MODEL,
        "--served-model-name",
        MODEL,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
        "--max-context",
        str(max_context),
        "--api-key",
        API_KEY,
        "--warmup",
        "32",
        "64",
    ]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false")
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read()[-4000:]}")
        try:
            if _get(f"http://127.0.0.1:{port}/health", timeout=2).get("ok"):
                return proc
        except OSError:
            time.sleep(1.0)
    proc.kill()
    raise RuntimeError("server did not come up in time")


def _one_request(client, prompt: str, max_tokens: int, t0: float, out: dict) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    text, first = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            out["completion_tokens"] = chunk.usage.completion_tokens
    out.update(ttft=first - t0, end=time.perf_counter(), text=text)


def _round(client, prompts: list[str], max_tokens: int) -> dict:
    """All clients at once; returns wall time, tokens, per-request TTFTs and texts."""
    results = [dict() for _ in prompts]
    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=_one_request, args=(client, p, max_tokens, t0, r)) for p, r in zip(prompts, results)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    if any("end" not in r for r in results):
        raise RuntimeError("a request did not complete")
    wall = max(r["end"] for r in results) - t0
    tokens = sum(r["completion_tokens"] for r in results)
    return {
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "ttft_median_s": statistics.median(r["ttft"] for r in results),
        "ttft_max_s": max(r["ttft"] for r in results),
        "texts": [r["text"] for r in results],
    }


def run_server_side(max_batch: int, args) -> dict:
    import openai

    port = _free_port()
    t_start = time.perf_counter()
    proc = _start_server(max_batch, args.max_context, port)
    startup_s = time.perf_counter() - t_start
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0, timeout=3600)
        prompts = _prompts(args.clients)
        _round(client, prompts[:1], 4)  # warm-up: first request through every path
        rounds = [_round(client, prompts, args.max_tokens) for _ in range(args.repeats)]
        metrics = _get(f"http://127.0.0.1:{port}/debug/metrics")
        with open(f"/proc/{proc.pid}/status") as f:
            peak_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"startup_s": startup_s, "rounds": rounds, "metrics": metrics, "peak_rss_mb": peak_mb}


def run_transformers(args) -> dict:
    import torch
    import transformers

    from benchmarks.sample import _gguf

    folder, gguf = _gguf()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, torch_dtype=torch.float32)
    model.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in _prompts(args.clients)
    ]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    model.generation_config.eos_token_id = None  # exactly max_tokens tokens, as ignore_eos on the server
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id, use_cache=True)
    ttfts, times = [], []
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=2, **kw)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.generate(**enc, max_new_tokens=1, **kw)
            ttfts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = model.generate(**enc, max_new_tokens=args.max_tokens, **kw)
            times.append(time.perf_counter() - t0)
    new = out[:, enc["input_ids"].shape[1] :]
    tokens = int(new.numel())
    return {
        "ttft_s": ttfts,
        "times_s": times,
        "tokens": tokens,
        "texts": [tok.decode(row, skip_special_tokens=False) for row in new.tolist()],
        "torch_threads": torch.get_num_threads(),
    }


def _child(side: str, args) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.serve",
        "--side",
        side,
        "--clients",
        str(args.clients),
        "--max-tokens",
        str(args.max_tokens),
        "--repeats",
        str(args.repeats),
        "--max-context",
        str(args.max_context),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if proc.returncode != 0:
        raise RuntimeError(f"{side} side failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(side: dict) -> dict:
    if "rounds" in side:
        rounds = side["rounds"]
        return {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rounds),
            "ttft_s": statistics.median(r["ttft_median_s"] for r in rounds),
            "ttft_max_s": statistics.median(r["ttft_max_s"] for r in rounds),
            "wall_s": statistics.median(r["wall_s"] for r in rounds),
        }
    wall = statistics.median(side["times_s"])
    return {
        "tokens_per_s": side["tokens"] / wall,
        "ttft_s": statistics.median(side["ttft_s"]),
        "ttft_max_s": statistics.median(side["ttft_s"]),
        "wall_s": wall,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-context", type=int, default=512)
    parser.add_argument("--side", choices=["batched", "serial", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        run = {
            "batched": lambda: run_server_side(args.clients, args),
            "serial": lambda: run_server_side(1, args),
            "transformers": lambda: run_transformers(args),
        }[args.side]
        print(json.dumps(run()))
        return

    uptime_start = _uptime()
    print(f"uptime before: {uptime_start}", flush=True)
    sides = {}
    for side in ("batched", "serial", "transformers"):
        sides[side] = _child(side, args)
        print(f"{side} done; uptime: {_uptime()}", flush=True)
    uptime_end = _uptime()
    print(f"uptime after: {uptime_end}")
    rows = {side: _summary(r) for side, r in sides.items()}
    print(
        f"{args.clients} concurrent chat requests x {args.max_tokens} new tokens (greedy, ignore_eos), "
        f"SmolLM2-135M-Instruct float32, {os.cpu_count()} CPUs, median of {args.repeats} rounds"
    )
    print(f"{'':14s} {'tokens/s':>9s} {'wall s':>8s} {'TTFT median s':>14s} {'TTFT max s':>11s}")
    for side, r in rows.items():
        print(f"{side:14s} {r['tokens_per_s']:9.1f} {r['wall_s']:8.2f} {r['ttft_s']:14.2f} {r['ttft_max_s']:11.2f}")
    batched_texts = sides["batched"]["rounds"][-1]["texts"]
    same_serial = sum(a == b for a, b in zip(batched_texts, sides["serial"]["rounds"][-1]["texts"]))
    same_hf = sum(a == b for a, b in zip(batched_texts, sides["transformers"]["texts"]))
    metrics = sides["batched"]["metrics"]
    print(
        f"speed-up batched/serial: {rows['batched']['tokens_per_s'] / rows['serial']['tokens_per_s']:.2f}x; "
        f"batched/transformers: {rows['batched']['tokens_per_s'] / rows['transformers']['tokens_per_s']:.2f}x; "
        f"identical texts batched vs serial {same_serial}/{args.clients}, vs transformers {same_hf}/{args.clients}"
    )
    print(
        f"batched server: max rows in one decode step {metrics['max_rows_in_step']}, mean "
        f"{metrics['mean_rows_per_step']:.1f}; compiled programs {metrics['compiled_programs']}"
    )
    print(
        json.dumps(
            {
                "clients": args.clients,
                "max_tokens": args.max_tokens,
                "repeats": args.repeats,
                "batched_tokens_per_s": rows["batched"]["tokens_per_s"],
                "serial_tokens_per_s": rows["serial"]["tokens_per_s"],
                "peer_tokens_per_s": rows["transformers"]["tokens_per_s"],
                "speedup_vs_serial": rows["batched"]["tokens_per_s"] / rows["serial"]["tokens_per_s"],
                "ratio_vs_transformers": rows["batched"]["tokens_per_s"] / rows["transformers"]["tokens_per_s"],
                "batched_ttft_s": rows["batched"]["ttft_s"],
                "serial_ttft_s": rows["serial"]["ttft_s"],
                "peer_ttft_s": rows["transformers"]["ttft_s"],
                "batched_peak_rss_mb": sides["batched"]["peak_rss_mb"],
                "serial_peak_rss_mb": sides["serial"]["peak_rss_mb"],
                "identical_texts_vs_serial": same_serial,
                "identical_texts_vs_transformers": same_hf,
                "max_rows_in_step": metrics["max_rows_in_step"],
                "compiled_programs": metrics["compiled_programs"],
                "uptime_start": uptime_start,
                "uptime_end": uptime_end,
            }
        )
    )


if __name__ == "__main__":
    main()
