"""Iterative (online) DPO: best vs worst of K on-policy samples each iteration, DPO against π_t.

  python -m experiments.iterative_dpo --config configs/iterative_dpo.py:tiny --workdir /tmp/idpo
  python -m experiments.iterative_dpo --config configs/iterative_dpo.py:cpu --workdir runs/idpo
  python -m experiments.iterative_dpo --config configs/iterative_dpo.py:llama3_sft_rm --workdir /ckpt/idpo

`iterate.reference`: previous (default; the engine's on-the-fly reference is the iteration's
start, π_t) or initial (the first model's log-probs stored in the records from iteration 2 on).

Paper preset `llama3_sft_rm` (RLHFlow Online-RLHF, Xiong et al. 2024 / Dong et al. 2024; values
[MEM], unverified): needs RLHFlow/LLaMA3-SFT as a local HF folder, a Bradley–Terry reward model
trained with alignax (oracle.model, experiments/reward_model.py) and the RLHFlow prompts as JSONL.
The policy's hub id is resolved through huggingface_hub's cache (alignax/models/hub.py): cached
locally or downloadable; the prompt file's format is declared in configs/paper_data.py.
"""

from alignax.iterate import config as iterate_config
from configs import base


def _llama3(c):
    c = base.paper_scale(c, model="RLHFlow/LLaMA3-SFT", learning_rate=5e-7)  # [MEM]
    c.loss.hparams.beta = 0.1  # [MEM]
    it = c.iterate
    it.iterations = 3  # [MEM]
    it.prompts = "rlhflow_iterative_prompts.jsonl"
    it.prompts_per_iteration = 20000  # [MEM]
    it.num_samples = 8  # [MEM]
    it.temperature, it.top_p, it.max_new_tokens = 1.0, 1.0, 2048
    it.oracle.name, it.oracle.model = "reward_model", "rm_llama3_alignax"
    it.heldout = "ifeval:2:541"
    return c


def _cpu(c):
    c = iterate_config.cpu(c)
    c.loss.hparams.beta = 0.1
    c.optimizer.learning_rate = 2e-5  # 4 steps per iteration: a visible move within the budget
    return c


PRESETS = {
    "tiny": lambda c: iterate_config.tiny(base.tiny(c)),
    "cpu": lambda c: _cpu(base.cpu(c)),
    "llama3_sft_rm": _llama3,
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.loss = base.loss_config("configs/dpo.py", "sigmoid")
    c.reference = "on_the_fly"
    c.iterate = iterate_config.iterate_block("iterative_dpo")
    return base.apply_preset(c, preset, PRESETS)
