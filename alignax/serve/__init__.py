"""An OpenAI-compatible HTTP server over the KV-cache sampler, with continuous batching.

    python -m alignax.serve --model smollm2-135m-instruct --port 8000 --max-batch 16

engine.py: jitted step-level API (prefill a prompt into free slots, one decode step for all slots);
batcher.py: the engine thread (admission, steps, finishing); sequences.py: requests, choices,
events and the stop-string text rules; protocol.py: request validation; responses.py: OpenAI's
JSON shapes; server.py: HTTP routes, auth, streaming; cli.py: the command line.
"""

from alignax.serve.server import OpenAIServer, make_server  # noqa: F401
