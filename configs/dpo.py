"""DPO (Rafailov et al., 2023) and every TRL loss type by `loss.name` (sigmoid, ipo, hinge, robust, ...).

  python -m experiments.dpo --config configs/dpo.py:cpu --workdir runs/dpo
  python -m experiments.dpo --config configs/dpo.py:cpu --workdir runs/hinge --config.loss.name=hinge
  python -m experiments.dpo --config configs/dpo.py:llama3_8b --workdir /ckpt/dpo   # one 8-chip host

Presets: tiny (random tiny model, tests), cpu (SmolLM2-135M-Instruct), and two paper presets. The
DPO paper (Rafailov et al., 2023) tunes GPT-2/Pythia-scale models on IMDb, TL;DR and Anthropic-HH;
the chat-model settings reproduced here are the ones its successors publish and SimPO compares to:
  mistral7b   Zephyr-7B-beta's DPO (alignment-handbook recipes/zephyr-7b-beta/dpo/config_full.yaml):
              from alignment-handbook/zephyr-7b-sft-full on HuggingFaceH4/ultrafeedback_binarized,
              beta 0.01, lr 5e-7, cosine, warmup 0.1, batch 8 x 2 accumulation x 8 GPUs = 128, one
              epoch, 1024/512 tokens. Paper number (SimPO README v0.1, "Mistral Base 7B DPO (Zephyr)"):
              AlpacaEval 2 LC 15.1, Arena-Hard 10.4.
  llama3_8b   SimPO's Llama-3-Instruct DPO baseline (v0.1): from meta-llama/Meta-Llama-3-8B-Instruct on
              princeton-nlp/llama3-ultrafeedback (on-policy, PairRM), beta 0.01, 2048/1800 tokens as
              SimPO's Llama-3-Instruct configs; lr 7e-7 [unverified: SimPO README advises 3e-7..7e-7
              for DPO]. Paper number: AlpacaEval 2 LC 40.3, Arena-Hard 32.6 (README v0.1 table).
Checkpoints are hub ids resolved through huggingface_hub's cache (alignax/models/hub.py): cached
locally or downloadable (meta-llama/* is gated). Data: local files, see configs/paper_data.py.
"""

from configs import base


def _zephyr(c):
    # alignment-handbook recipes/zephyr-7b-beta/dpo/config_full.yaml
    c = base.paper_scale(
        c,
        model="alignment-handbook/zephyr-7b-sft-full",  # model_name_or_path
        learning_rate=5e-7,  # learning_rate: 5.0e-7
        max_length=1024,  # max_length: 1024
        max_prompt_length=512,  # max_prompt_length: 512
        train_data="ultrafeedback_binarized/train_prefs.jsonl",  # HuggingFaceH4/ultrafeedback_binarized
        eval_data="ultrafeedback_binarized/test_prefs.jsonl",
        batch_size=128,  # per_device_train_batch_size 8 x gradient_accumulation_steps 2 x 8 GPUs
        epochs=1.0,  # num_train_epochs: 1
    )
    c.optimizer.schedule, c.optimizer.warmup_ratio = "cosine", 0.1  # lr_scheduler_type, warmup_ratio
    c.loss.hparams.beta = 0.01  # beta: 0.01
    return c


def _llama3_instruct(c):
    c = base.paper_scale(
        c,
        model="meta-llama/Meta-Llama-3-8B-Instruct",  # SimPO README v0.1: Llama3 Instruct 8B DPO
        learning_rate=7e-7,  # [unverified] SimPO README: DPO best at lr 3e-7..7e-7
        max_length=2048,  # SimPO training_configs/llama-3-8b-instruct-*.yaml
        max_prompt_length=1800,
        train_data="llama3_ultrafeedback/train.jsonl",  # princeton-nlp/llama3-ultrafeedback (README v0.1)
        eval_data="llama3_ultrafeedback/test.jsonl",
        batch_size=128,  # SimPO README: total batch size 128
        epochs=1.0,
    )
    c.loss.hparams.beta = 0.01  # METHODS.md §2: the SimPO README's best DPO beta
    return c


PRESETS = {
    "tiny": base.tiny,
    "cpu": base.cpu,
    "mistral7b": _zephyr,
    "llama3_8b": _llama3_instruct,
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    # Every loss of the DPO family, plus the Nash-style (sppo, sppo_single, inpo, dno) and CGPO/FSPO
    # pair losses; unset hyperparameters take each loss's own default (alignax.losses.info).
    c.loss = base.loss_config("configs/dpo.py", "sigmoid")
    c.reference = "on_the_fly"
    return base.apply_preset(c, preset, PRESETS)
