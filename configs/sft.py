"""Supervised fine-tuning: token-mean NLL on assistant tokens (correct under gradient accumulation).

  python -m experiments.sft --config configs/sft.py:cpu --workdir runs/sft

Data: records with `messages` (built-in: builtin:sft/train). Presets: tiny, cpu, mistral7b: the
Zephyr SFT model that SimPO, DPO, IPO and KTO's Mistral-Base presets start from
(alignment-handbook recipes/zephyr-7b-beta/sft/config_full.yaml): mistralai/Mistral-7B-v0.1 on
HuggingFaceH4/ultrachat_200k train_sft, lr 2e-5, cosine, warmup 0.1, one epoch, batch 16 per GPU
x 8 GPUs = 128, 2048 tokens. Its result is published as alignment-handbook/zephyr-7b-sft-full
(SimPO README: AlpacaEval 2 LC 8.4, Arena-Hard 1.3).
The checkpoint is a hub id resolved through huggingface_hub's cache (alignax/models/hub.py): cached
or downloadable. Data: local files, see configs/paper_data.py.
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
    # alignment-handbook recipes/zephyr-7b-beta/sft/config_full.yaml
    c = base.paper_scale(
        c,
        model="mistralai/Mistral-7B-v0.1",  # model_name_or_path
        learning_rate=2e-5,  # learning_rate: 2.0e-05
        max_length=2048,  # max_seq_length: 2048
        max_prompt_length=1024,  # alignax keeps the prompt's last 1024 tokens (the recipe has no prompt cap)
        train_data="ultrachat_200k/train_sft.jsonl",  # HuggingFaceH4/ultrachat_200k train_sft
        eval_data="ultrachat_200k/test_sft.jsonl",
        batch_size=128,  # per_device_train_batch_size 16 x accumulation 1 x 8 GPUs
        epochs=1.0,  # num_train_epochs: 1
    )
    c.optimizer.schedule, c.optimizer.warmup_ratio = "cosine", 0.1  # lr_scheduler_type, warmup_ratio
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
