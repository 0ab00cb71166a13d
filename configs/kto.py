"""KTO (Ethayarajh et al., 2024): unpaired desirable/undesirable completions.

  python -m experiments.kto --config configs/kto.py:cpu --workdir runs/kto

Data: records with `prompt`, `completion`, `label` (built-in: builtin:arith_unpaired/train).
Presets: tiny, cpu, llama3_8b (beta 0.1, lambda_D = lambda_U = 1, lr 5e-7).
"""

from configs import base


def _tiny(c):
    c = base.tiny(c)
    c.data.eval = ""
    return c


def _cpu(c):
    c = base.cpu(c)
    c.data.eval = ""
    return c


def _llama(c):
    c = base.paper_scale(c, model="meta-llama/Meta-Llama-3-8B-Instruct", learning_rate=5e-7)
    c.data.train = "ultrafeedback_unpaired/train.jsonl"
    c.data.eval = ""
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "llama3_8b": _llama}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "kto"
    c.reference = "on_the_fly"
    c.loss = base.loss_config("configs/kto.py", "kto")
    c.loss.hparams.beta = 0.1
    c.loss.hparams.desirable_weight = 1.0
    c.loss.hparams.undesirable_weight = 1.0
    c.data.train = "builtin:arith_unpaired/train"
    return base.apply_preset(c, preset, PRESETS)
