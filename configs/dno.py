"""DNO-Prct: Direct Nash Optimization, the practical algorithm (Rosset et al., 2024; METHODS.md §6).

  python -m experiments.dno --config configs/dno.py:tiny --workdir /tmp/dno
  python -m experiments.dno --config configs/dno.py:cpu --workdir runs/dno
  python -m experiments.dno --config configs/dno.py:orca7b_gpt4 --workdir /ckpt/dno

Each iteration t (batched on-policy): K samples from π_t on this iteration's prompt slice, the
oracle's win rates P̂(y ≻ π_t), y⁺ / y⁻ = highest / lowest win rate, kept when the gap exceeds
`iterate.margin` (the large-margin filter), then the `dno` loss −log σ(η[log π/π_t(y⁺) − log π/π_t(y⁻)])
with π_t the engine's on-the-fly reference. The gold teacher response of the paper is not added.

Paper preset `orca7b_gpt4`: no official code; values tagged [MEM] in METHODS.md §6 are unverified.
It needs the policy as a local HF folder (Orca-2.5 7B is not public: any Mistral-7B SFT), GPT-4-Turbo
behind an OpenAI-compatible endpoint (oracle.base_url, key in $OPENAI_API_KEY) and UltraFeedback
prompts as a local JSONL (format: configs/paper_data.py). `orca-2.5-7b` names that local folder.
"""

from alignax.iterate import config as iterate_config
from configs import base


def _orca(c):
    c = base.paper_scale(c, model="orca-2.5-7b", learning_rate=5e-7)  # lr [MEM]
    c.loss.hparams.beta = 0.1  # η placeholder, METHODS.md §6
    it = c.iterate
    it.iterations = 6  # T = 6 [MEM]
    it.prompts = "ultrafeedback_prompts.jsonl"
    it.prompts_per_iteration = 10000  # non-overlapping splits [MEM]
    it.num_samples = 5  # K = 5 [MEM]
    it.margin = 0.25  # large-margin filter, threshold unverified
    it.oracle.name = "http_judge"  # GPT-4-Turbo as annotator
    it.oracle.base_url, it.oracle.judge_model = "https://api.openai.com/v1", "gpt-4-turbo"
    it.heldout = "ifeval:2:541"
    return c


def _cpu(c):
    c = iterate_config.cpu(c)
    c.loss.hparams.beta = 0.1
    c.optimizer.learning_rate = 2e-5  # 4 steps per iteration: a visible move within the budget
    c.iterate.margin = 0.1
    return c


PRESETS = {
    "tiny": lambda c: iterate_config.tiny(base.tiny(c)),
    "cpu": lambda c: _cpu(base.cpu(c)),
    "orca7b_gpt4": _orca,
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.loss = base.loss_config("configs/dpo.py", "dno")
    c.reference = "on_the_fly"  # π_t
    c.iterate = iterate_config.iterate_block("dno")
    return base.apply_preset(c, preset, PRESETS)
