"""Training on K scored samples per prompt: SPPO's per-sample regression and CGPO's CRRAFT.

  python -m experiments.scored_samples --config configs/scored_samples.py:cpu --workdir runs/sppo_sample
  python -m experiments.scored_samples --config configs/scored_samples.py:tiny --workdir /tmp/crraft \
      --config.loss.name=crraft

Data: task "multi_sample" records, `prompt`, `responses` (K strings) and per-response number lists
named like the loss's data inputs (`alignax.losses.info(name).inputs`): `win_probs` for sppo_sample;
`rewards`, `baseline_rewards`, `feasible` for crraft. Built-in: builtin:arith_samples/train (K = 3,
scored by a correctness oracle, alignax/data/builtin/make_builtin.py).

Presets: tiny (random tiny model, tests), cpu (SmolLM2-135M-Instruct). SPPO's paper runs (Mistral-7B-
Instruct-v0.2, PairRM, K = 5, beta 0.001, lr 5e-7) are on-policy loops: those presets belong to the
iteration driver, which produces this data every iteration.
"""

from configs import base


def _tiny(c):
    c = base.tiny(c)
    c.data.eval = ""
    c.batch_size = 2
    return c


def _cpu(c):
    c = base.cpu(c)
    c.data.eval = ""
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "multi_sample"
    c.reference = "on_the_fly"
    c.loss = base.loss_config("configs/scored_samples.py", "sppo_sample")
    c.data.train = "builtin:arith_samples/train"
    c.data.eval = ""
    return base.apply_preset(c, preset, PRESETS)
