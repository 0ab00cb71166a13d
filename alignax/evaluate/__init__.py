"""Evaluation metrics the papers report, computed from judge outputs.

Benchmarks (one module each, imported lazily so `import alignax.evaluate` stays light):
  alpaca_eval  AlpacaEval 2 raw and length-controlled win rates
  arena_hard   Arena-Hard-Auto Bradley-Terry scores, bootstrap CIs, style control
  wildbench    WB-Reward and WB-Score
  mt_bench     MT-Bench single-answer and pairwise scores
  leval        L-Eval exact match / F1 / ROUGE
  ruler        Ruler Precise / Flexible Match
  rewardbench  RewardBench subset and section accuracies
  report       leaderboard tables and charts
Command line: `python -m alignax.evaluate <benchmark> --help`.
"""
