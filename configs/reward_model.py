"""Bradley–Terry reward model (AlpacaFarm; METHODS.md §11): backbone + scalar head on the last token.

  python -m experiments.reward_model --config configs/reward_model.py:cpu --workdir runs/rm

Reports reward accuracy on held-out pairs. Presets: tiny, cpu, alpacafarm: AlpacaFarm's reward model
(tatsu-lab/alpaca_farm examples/scripts/reward_modeling.sh, METHODS.md §11): the SFT10k LLaMA-7B
backbone plus a scalar head on alpaca_noisy_multi_preference (simulated annotators with noise),
lr 3e-6, one epoch, batch 1 per GPU x 2 accumulation x 8 GPUs = 16, cosine, warmup 3%, 512 tokens,
no weight decay. The SFT10k checkpoint is a local folder (`alpaca_farm_sft10k`, recovered from
the weight diff tatsu-lab/alpaca-farm-sft10k-wdiff); data: see configs/paper_data.py.
"""

from configs import base


def _alpacafarm(c):
    c = base.paper_scale(
        c,
        model="alpaca_farm_sft10k",  # the SFT10k backbone (local folder)
        learning_rate=3e-6,  # reward modeling lr 3e-6 (METHODS.md §11)
        max_length=512,  # max length 512
        max_prompt_length=384,
        train_data="alpaca_farm_preference/train.jsonl",  # alpaca_noisy_multi_preference
        eval_data="",
        batch_size=16,  # 1 per GPU x 2 accumulation x 8 GPUs
        epochs=1.0,  # 1 epoch
    )
    c.grad_accum_steps = 2
    c.optimizer.schedule, c.optimizer.warmup_ratio = "cosine", 0.03  # cosine, warmup 3%
    c.optimizer.weight_decay = 0.0  # wd 0
    return c


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "alpacafarm": _alpacafarm}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "reward_model"
    c.reference = "none"
    c.loss = base.loss_config("configs/reward_model.py", "reward_bt")
    return base.apply_preset(c, preset, PRESETS)
