"""SimPO (Meng, Xia & Chen, 2024): reference-free, length-normalized, target margin gamma.

  python -m experiments.simpo --config configs/simpo.py:cpu --workdir runs/simpo
  python -m experiments.simpo --config configs/simpo.py:llama3_8b --workdir /ckpt/simpo   # one 8-chip host

Paper-scale presets use the released models' settings (METHODS.md §2): Mistral-7B-Base beta 2.0,
gamma/beta 0.8, lr 3e-7, 1024/512 tokens; Llama-3-8B-Instruct v0.2 beta 10, gamma/beta 0.3, lr 1e-6,
2048/1800 tokens; cosine, warmup 0.1, batch 128, one epoch.
"""

from configs import base


def _paper(model, *, beta, gamma_beta_ratio, learning_rate, max_length, max_prompt_length):
    def preset(c):
        c = base.paper_scale(
            c, model=model, learning_rate=learning_rate, max_length=max_length, max_prompt_length=max_prompt_length
        )
        c.loss.hparams.beta = beta
        c.loss.hparams.gamma_beta_ratio = gamma_beta_ratio
        return c

    return preset


def _cpu(c):
    c = base.cpu(c)
    c.optimizer.learning_rate = 1e-5
    return c


PRESETS = {
    "tiny": base.tiny,
    "cpu": _cpu,
    "mistral7b": _paper(
        "mistralai/Mistral-7B-v0.1",
        beta=2.0,
        gamma_beta_ratio=0.8,
        learning_rate=3e-7,
        max_length=1024,
        max_prompt_length=512,
    ),
    "llama3_8b": _paper(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        beta=10.0,
        gamma_beta_ratio=0.3,
        learning_rate=1e-6,
        max_length=2048,
        max_prompt_length=1800,
    ),
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "none"
    # simpo and cpo; unset hyperparameters take the loss's defaults (SimPO: beta 2.0, gamma/beta 0.25).
    c.loss = base.loss_config("configs/simpo.py", "simpo")
    return base.apply_preset(c, preset, PRESETS)
