"""Command line of `python -m alignax.merge` (the work is in alignax/merge/pipeline.py).

python -m alignax.merge --base A --models B C --method ties --weights 1 1 --density 0.5 --seed 0 --out D
"""

from __future__ import annotations

import argparse
import sys

from alignax.merge import methods, pipeline


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alignax.merge", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="Hugging Face folder of the base (pre-trained) model")
    p.add_argument("--models", required=True, nargs="+", help="fine-tuned model folders to merge into the base")
    p.add_argument("--method", required=True, choices=sorted(methods.METHODS))
    p.add_argument("--weights", type=float, nargs="+", help="one weight per model (default 1 each)")
    p.add_argument(
        "--density",
        type=float,
        nargs="+",
        help="kept fraction in (0, 1], one value or one per model (ties, dare_*); drop rate = 1 - density",
    )
    p.add_argument("--seed", type=int, default=0, help="DARE mask seed (masks depend on seed, model position, tensor)")
    p.add_argument("--lambda", dest="lam", type=float, default=1.0, help="scale of the merged delta (default 1)")
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="divide by the (sign-masked) weight sum; default: on for ties, off otherwise (as mergekit)",
    )
    p.add_argument(
        "--block-elements",
        type=int,
        default=pipeline.DEFAULT_BLOCK_ELEMENTS,
        help="elements per read block (memory/speed trade-off)",
    )
    p.add_argument("--out", required=True, help="output folder (created; must not hold a model)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = pipeline.make_spec(
            args.method, len(args.models), args.weights, args.density, args.seed, args.lam, args.normalize
        )
        out = pipeline.merge(
            args.base, args.models, spec, args.out, args.block_elements, log=lambda line: print(line, file=sys.stderr)
        )
    except pipeline.MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(args.models)} model(s) into {args.base} with {args.method}: {out}")
    return 0
