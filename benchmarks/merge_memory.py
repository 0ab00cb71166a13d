"""Peak memory of `python -m alignax.merge` on a synthetic multi-shard model (base + 2 models, >= 1 GB each).

    python -m benchmarks.merge_memory                        # 1.1 GB bf16 models, 256 MB shards, all methods
    python -m benchmarks.merge_memory --methods ties --layers 4

Builds, in a temporary folder, three Llama-shaped bfloat16 checkpoints (embeddings, `--layers` decoder
layers, lm_head; `config.json` + sharded safetensors + index) of the same size, the models being the base plus
noise. A measuring subprocess (stdlib only) then runs each method's merge as its own subprocess: its peak RSS
is that child's `ru_maxrss` (os.wait4), and the figure of record is the measurer's
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` after all runs (the largest over every merge). The measurer
exists because Linux hands a process's high-water RSS on to children it spawns (vfork + exec), so merges
spawned by the process that built 3 GB of checkpoints would report its peak, not theirs. An import-only child
(`import alignax.merge.pipeline`) gives the floor. The claim checked: peak RSS < 2 x the largest input shard,
whatever the model size, because the merge streams tensor by tensor in fixed-size row blocks
(alignax/merge/pipeline.py). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

MB = 1 << 20


def llama_shapes(vocab: int, hidden: int, intermediate: int, layers: int) -> dict[str, tuple[int, ...]]:
    """HF Llama tensor names and shapes (kv heads = heads, no tying)."""
    shapes = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (vocab, hidden),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
        shapes.update({p + f"self_attn.{n}_proj.weight": (hidden, hidden) for n in "qkvo"})
        shapes.update(
            {
                p + "mlp.gate_proj.weight": (intermediate, hidden),
                p + "mlp.up_proj.weight": (intermediate, hidden),
                p + "mlp.down_proj.weight": (hidden, intermediate),
            }
        )
    return shapes


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def plan_shards(shapes: dict[str, tuple[int, ...]], shard_bytes: int) -> list[list[str]]:
    """Greedy grouping in name order into shards of at most `shard_bytes` (bf16) unless one tensor is larger."""
    shards, current, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = numel(shape) * 2
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    return shards + [current]


def write_model(folder: pathlib.Path, shapes, shards, pool, seed: int, noise: float) -> None:
    """One checkpoint: tensor values are slices of a shared float32 pool (base) plus `noise` * another slice."""
    import ml_dtypes
    import numpy as np
    import safetensors.numpy

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    rng = np.random.default_rng(seed)
    weight_map = {}
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for j, name in enumerate(names):
            n = numel(shapes[name])
            base = np.resize(np.roll(pool, 7919 * (i + j)), n)
            if noise:
                base = base + noise * np.resize(np.roll(pool, int(rng.integers(pool.size))), n)
            tensors[name] = base.reshape(shapes[name]).astype(ml_dtypes.bfloat16)
            weight_map[name] = file
        safetensors.numpy.save_file(tensors, str(folder / file), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def run_merge(root: pathlib.Path, method: str, density: float) -> tuple[float, float]:
    """(peak RSS MB of the merge child, seconds); `method` "import" only imports the merge pipeline."""
    out = root / f"out_{method}"
    cmd = [
        sys.executable,
        "-m",
        "alignax.merge",
        "--base",
        str(root / "base"),
        "--models",
        str(root / "m1"),
        str(root / "m2"),
        "--method",
        method,
        "--weights",
        "0.6",
        "0.4",
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    if method == "import":
        cmd = [sys.executable, "-c", "import alignax.merge.pipeline"]
    elif method != "task_arithmetic":
        cmd += ["--density", str(density)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{method}: merge failed: {child.stderr.read().decode()}")
    child.stderr.close()
    if out.exists():
        for file in out.iterdir():
            file.unlink()
        out.rmdir()
    return usage.ru_maxrss / 1024, seconds


def measure(root: pathlib.Path, methods: list[str], density: float) -> dict:
    """In the measuring subprocess: each merge in turn, then RUSAGE_CHILDREN over all of them."""
    floor_mb, _ = run_merge(root, "import", density)
    merges_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = {m: run_merge(root, m, density) for m in methods}
    return {
        "import_only_rss_mb": floor_mb,
        "before_mb": merges_before,
        "rows": rows,
        "rusage_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def build(root: pathlib.Path, args) -> tuple[int, float]:
    """Writes base, m1, m2 under `root`; returns (number of shards, seconds)."""
    import numpy as np

    shapes = llama_shapes(args.vocab, args.hidden, args.intermediate, args.layers)
    shards = plan_shards(shapes, args.shard_mb * MB)
    pool = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32) * 0.02
    start = time.perf_counter()
    for name, seed, noise in (("base", 0, 0.0), ("m1", 1, 0.05), ("m2", 2, 0.05)):
        write_model(root / name, shapes, shards, pool, seed, noise)
    return len(shards), time.perf_counter() - start


def report(args, root: pathlib.Path, n_shards: int, build_s: float, measured: dict) -> dict:
    model_mb = sum(f.stat().st_size for f in (root / "base").glob("*.safetensors")) / MB
    largest_mb = max(f.stat().st_size for d in ("base", "m1", "m2") for f in (root / d).glob("*.safetensors")) / MB
    peak_mb = measured["rusage_children_mb"]
    print(
        f"model {model_mb:.0f} MB x 3 (bf16, {n_shards} shards, largest {largest_mb:.0f} MB); built in "
        f"{build_s:.0f} s; import-only child {measured['import_only_rss_mb']:.0f} MB"
    )
    print("| method | peak RSS MB | / largest shard | time s |\n|---|---:|---:|---:|")
    for method, (rss_mb, seconds) in measured["rows"].items():
        print(f"| {method} | {rss_mb:.0f} | {rss_mb / largest_mb:.2f} | {seconds:.1f} |")
    return {
        "model_mb": round(model_mb, 1),
        "largest_shard_mb": round(largest_mb, 1),
        "shards": n_shards,
        "peak_rss_mb": round(peak_mb, 1),
        "peak_over_largest_shard": round(peak_mb / largest_mb, 3),
        "under_2x": peak_mb < 2 * largest_mb,
        "import_only_rss_mb": round(measured["import_only_rss_mb"], 1),
        "per_method_peak_rss_mb": {m: round(r, 1) for m, (r, _) in measured["rows"].items()},
        "per_method_seconds": {m: round(s, 1) for m, (_, s) in measured["rows"].items()},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--shard-mb", type=int, default=256)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--methods", default="task_arithmetic,ties,dare_linear,dare_ties")
    parser.add_argument("--tmp", default=None, help="where to put the temporary folder (needs ~3.5 model sizes)")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(pathlib.Path(args.measure), args.methods.split(","), args.density)))
        return {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = pathlib.Path(tmp)
        n_shards, build_s = build(root, args)
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.merge_memory",
            "--measure",
            str(root),
            "--methods",
            args.methods,
            "--density",
            str(args.density),
        ]
        measured = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        summary = report(args, root, n_shards, build_s, measured)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
