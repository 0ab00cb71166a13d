"""Supervised fine-tuning: token-mean NLL on assistant tokens (correct under gradient accumulation).

  python -m experiments.sft --config configs/sft.py:cpu --workdir runs/sft

Data: records with `messages` (built-in: builtin:sft/train). Presets: tiny, cpu, mistral7b
(zephyr-style SFT: lr 2e-5, cosine, warmup 0.1).
"""

from configs import base


def _tiny(c):
    c = base.tiny(c)
    c.data.eval = ""
    return c


def _cpu(c):
    c = base.cpu(c)
    c.data.eval = ""
    c.optimizer.learning_rate = 1e-5
    return c


def _mistral(c):
    c = base.paper_scale(c, model="mistralai/Mistral-7B-v0.1", learning_rate=2e-5, max_length=2048)
    c.data.train = "ultrachat_200k/train_sft.jsonl"
    c.data.eval = "ultrachat_200k/test_sft.jsonl"
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "sft"
    c.reference = "none"
    c.loss = base.loss_config("configs/sft.py", "sft")
    c.loss.hparams.reduction = "token_mean"
    c.data.train = "builtin:sft/train"
    c.data.eval = ""
    return base.apply_preset(c, preset, PRESETS)
