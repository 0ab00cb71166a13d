"""AlpacaFarm expert iteration (Dubois et al., NeurIPS 2023; METHODS.md §11): SFT on the best-of-n.

  python -m experiments.expert_iteration --config configs/expert_iteration.py:tiny --workdir /tmp/ei
  python -m experiments.expert_iteration --config configs/expert_iteration.py:cpu --workdir runs/ei
  python -m experiments.expert_iteration --config configs/expert_iteration.py:alpacafarm --workdir /ckpt/ei

Each iteration: n samples per prompt, the oracle's scores, the argmax as an SFT target (best-of-n,
as alignax/sample/best_of_n.py), SFT from the current iterate.

Paper preset `alpacafarm` (examples/scripts/expiter.sh): one round of best-of-16 on the "unlabeled"
split, then SFT with SFT10k's hyperparameters. Needs the SFT10k LLaMA-7B as a local HF folder, the
AlpacaFarm reward model trained with alignax (oracle.model) and the unlabeled instructions as JSONL
(format: configs/paper_data.py).
"""

from alignax.iterate import config as iterate_config
from configs import base


def _alpacafarm(c):
    c = base.paper_scale(
        c,
        model="alpaca_farm_sft10k",
        learning_rate=2e-5,  # SFT10k lr
        max_length=512,  # max length 512
        max_prompt_length=256,  # query_len 192 in AlpacaFarm's RLHF scripts; room for a 256-token answer
    )
    c.batch_size, c.grad_accum_steps = 128, 16  # 1 x 16 accumulation x 8 GPUs
    c.optimizer.warmup_ratio = 0.03  # warmup 3%
    it = c.iterate
    it.iterations = 1  # expiter.sh: one round
    it.prompts = "alpaca_farm_unlabeled.jsonl"
    it.prompts_per_iteration = 0
    it.num_samples = 16  # best-of-16
    it.temperature, it.top_p, it.max_new_tokens = 1.0, 1.0, 300  # examples/best_of_n.py
    it.epochs = 3.0  # SFT10k: 3 epochs
    it.oracle.name, it.oracle.model = "reward_model", "alpaca_farm_rm_alignax"
    it.heldout = "ifeval:2:541"
    return c


def _cpu(c):
    c = iterate_config.cpu(c)
    c.optimizer.learning_rate = 1e-5
    return c


def _tiny(c):
    c = iterate_config.tiny(base.tiny(c))
    # SFT keeps the whole prompt (chat template + IFEval instructions, ~100 tokens): room for both.
    c.data.max_length, c.data.max_prompt_length = 160, 128
    c.data.length_multiple = 160  # one row shape (iterate_config.tiny)
    return c


PRESETS = {"tiny": _tiny, "cpu": lambda c: _cpu(base.cpu(c)), "alpacafarm": _alpacafarm}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "sft"
    c.loss = base.loss_config("configs/sft.py", "sft")
    c.reference = "none"
    c.iterate = iterate_config.iterate_block("expert_iteration")
    c.iterate.temperature = 1.0  # AlpacaFarm best-of-n
    return base.apply_preset(c, preset, PRESETS)
