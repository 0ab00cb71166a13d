"""DPO (Rafailov et al., 2023) and every TRL loss type by `loss.name` (sigmoid, ipo, hinge, robust, ...).

  python -m experiments.dpo --config configs/dpo.py:cpu --workdir runs/dpo
  python -m experiments.dpo --config configs/dpo.py:cpu --workdir runs/hinge --config.loss.name=hinge
  python -m experiments.dpo --config configs/dpo.py:llama3_8b --workdir /ckpt/dpo   # one 8-chip host

Presets: tiny (random tiny model, tests), cpu (SmolLM2-135M-Instruct), mistral7b, llama3_8b.
Paper-scale hyperparameters: beta 0.01 and lr 5e-7 / 7e-7 (the SimPO README's best DPO settings,
METHODS.md §2), cosine, warmup 0.1, batch 128, one epoch.
"""

from configs import base


def _paper(model, learning_rate):
    def preset(c):
        c = base.paper_scale(c, model=model, learning_rate=learning_rate)
        c.loss.hparams.beta = 0.01
        return c

    return preset


PRESETS = {
    "tiny": base.tiny,
    "cpu": base.cpu,
    "mistral7b": _paper("mistralai/Mistral-7B-v0.1", 5e-7),
    "llama3_8b": _paper("meta-llama/Meta-Llama-3-8B-Instruct", 7e-7),
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    # Every loss of the DPO family, plus the Nash-style (sppo, sppo_single, inpo, dno) and CGPO/FSPO
    # pair losses; unset hyperparameters take each loss's own default (alignax.losses.info).
    c.loss = base.loss_config("configs/dpo.py", "sigmoid")
    c.reference = "on_the_fly"
    return base.apply_preset(c, preset, PRESETS)
