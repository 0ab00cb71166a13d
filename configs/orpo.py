"""ORPO (Hong, Lee & Thorne, 2024): NLL on chosen + lambda x odds-ratio term; no reference model.

  python -m experiments.orpo --config configs/orpo.py:cpu --workdir runs/orpo

Presets: tiny, cpu, mistral7b (lambda 0.1, lr 5e-6, linear decay, warmup 100 steps, as the paper's
Mistral-ORPO; METHODS.md §1.7).
"""

from configs import base


def _mistral(c):
    c = base.paper_scale(c, model="mistralai/Mistral-7B-v0.1", learning_rate=5e-6)
    c.optimizer.schedule = "linear"
    c.optimizer.warmup_steps = 100
    return c


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "none"
    c.loss = base.loss_config("configs/orpo.py", "orpo")
    c.loss.hparams.beta = 0.1
    return base.apply_preset(c, preset, PRESETS)
