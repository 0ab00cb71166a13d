"""Bradley–Terry reward model (AlpacaFarm; METHODS.md §11): backbone + scalar head on the last token.

  python -m experiments.reward_model --config configs/reward_model.py:cpu --workdir runs/rm

Reports reward accuracy on held-out pairs. Presets: tiny, cpu, llama3_8b (lr 1e-5, one epoch).
"""

from configs import base


def _llama(c):
    return base.paper_scale(c, model="meta-llama/Meta-Llama-3-8B-Instruct", learning_rate=1e-5)


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "llama3_8b": _llama}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "reward_model"
    c.reference = "none"
    c.loss = base.loss_config("configs/reward_model.py", "reward_bt")
    return base.apply_preset(c, preset, PRESETS)
