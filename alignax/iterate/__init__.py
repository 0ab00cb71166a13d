"""Iterated on-policy training: sample -> score -> build -> train -> evaluate, T times.

  alignax.iterate.loop.run(config, workdir)   # configs/{sppo,inpo,dno,iterative_dpo,expert_iteration}.py

Modules, one job each: stages (directories, DONE markers, progress), prompts (sources and
per-iteration splits), sample, score (preference oracles: alignax/annotate/oracles.py), build
(training sets by method name), learn (build + train stages on the engine), evaluate (held-out
metrics), report (lines, summary.json, PNG), loop (the driver), config (the `iterate` block).
"""
