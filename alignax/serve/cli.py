"""`python -m alignax.serve`: load a model, serve it until interrupted."""

from __future__ import annotations

import argparse
import logging
import os

API_KEY_ENV = "ALIGNAX_API_KEY"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m alignax.serve", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a preset (smollm2-135m-instruct), a .gguf file or an HF folder")
    p.add_argument("--served-model-name", help="the name clients send as `model` (default: --model's base name)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=16, help="decode slots: rows in one decode step")
    p.add_argument("--max-context", type=int, help="tokens per slot, prompt + completion (default min(model, 2048))")
    p.add_argument("--dtype", help="compute dtype, e.g. bfloat16 (default float32)")
    p.add_argument(
        "--warmup",
        type=int,
        nargs="*",
        default=[],
        metavar="PROMPT_LEN",
        help="compile the decode step and these prompt lengths' prefill buckets before serving",
    )
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from alignax.serve.loading import load_for_serving
    from alignax.serve.server import make_server

    model, tokenizer = load_for_serving(args.model, dtype=args.dtype)
    if tokenizer is None:
        raise SystemExit(f"{args.model} has no tokenizer; the server needs one")
    name = args.served_model_name or os.path.basename(os.path.normpath(args.model))
    server = make_server(
        model,
        tokenizer,
        model_name=name,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_context=args.max_context,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        warmup_prompt_lengths=args.warmup,
    )
    logging.getLogger(__name__).info(
        "serving %s at %s/v1 (%d slots x %d tokens)", name, server.url, args.max_batch, server.limits.max_context
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
