"""Sorted fine-tuning (SoFT; Kavehzadeh et al., 2024): NLL at several exit layers through the shared head.

  python -m experiments.soft --config configs/soft.py:cpu --workdir runs/soft

Presets: tiny (exits 1, 2 of a 2-layer model), cpu (SmolLM2's 30 layers: exits 10, 15, 20, 25, 30),
llama2_7b (exits 12, 16, ..., 32 — the paper's sub-models of Llama-2-7B; METHODS.md §8).
"""

from configs import base


def _tiny(c):
    c = base.tiny(c)
    c.data.eval = ""
    c.loss.hparams.exit_layers = (1, 2)
    return c


def _cpu(c):
    c = base.cpu(c)
    c.data.eval = ""
    c.loss.hparams.exit_layers = (10, 15, 20, 25, 30)
    return c


def _llama2(c):
    c = base.paper_scale(c, model="meta-llama/Llama-2-7b-hf", learning_rate=2e-5, max_length=2048)
    c.data.train = "alpaca/train.jsonl"
    c.data.eval = ""
    c.loss.hparams.exit_layers = (12, 16, 20, 24, 28, 32)
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "llama2_7b": _llama2}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "soft"
    c.reference = "none"
    c.loss = base.loss_config("configs/soft.py", "soft")
    c.loss.hparams.exit_layers = (1,)
    c.loss.hparams.exit_reduction = "sum"
    c.data.train = "builtin:sft/train"
    c.data.eval = ""
    return base.apply_preset(c, preset, PRESETS)
