"""Judges: pairwise/pointwise interface, benchmark prompts, HTTP (OpenAI-compatible) and local-model backends.

  base     PairwiseJudge / PointwiseJudge, verdicts, prompt-based judges over a chat backend
  prompts  AlpacaEval, WildBench, Arena-Hard and MT-Bench judge prompts and answer parsers
  http     OpenAIChatClient: retries with backoff, concurrency limit, on-disk cache, usage/cost
  local    LocalModelJudge: verdict-token probabilities from an alignax model

Submodules are imported on use (`from alignax.evaluate.judges import http`), so the HTTP client
does not pull in JAX and the local judge does not need network code.
"""
