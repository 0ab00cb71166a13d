"""IPO (Azar et al., 2023): squared loss of the (length-normalized, as TRL) log-ratio margin vs 1/(2 tau).

  python -m experiments.ipo --config configs/ipo.py:cpu --workdir runs/ipo
  python -m experiments.ipo --config configs/ipo.py:cpu --workdir runs/ipo_seq --config.loss.hparams.length_normalize=False

Presets: tiny, cpu, mistral7b (tau 0.01, lr 5e-7; METHODS.md §1.2).
"""

from configs import base


def _mistral(c):
    c = base.paper_scale(c, model="mistralai/Mistral-7B-v0.1", learning_rate=5e-7)
    c.loss.hparams.beta = 0.01
    return c


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "on_the_fly"
    c.loss = base.loss_config("configs/ipo.py", "ipo")
    c.loss.hparams.beta = 0.1
    c.loss.hparams.length_normalize = True
    return base.apply_preset(c, preset, PRESETS)
