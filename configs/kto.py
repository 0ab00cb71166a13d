"""KTO (Ethayarajh et al., 2024): unpaired desirable/undesirable completions.

  python -m experiments.kto --config configs/kto.py:cpu --workdir runs/kto

Data: records with `prompt`, `completion`, `label` (built-in: builtin:arith_unpaired/train).
Presets: tiny, cpu, mistral7b: KTO on the Zephyr SFT model (the KTO paper's Zephyr-beta-SFT + KTO
setting, also SimPO's KTO baseline "Mistral Base 7B KTO"): from alignment-handbook/zephyr-7b-sft-full
on HuggingFaceH4/ultrafeedback_binarized split into unpaired examples (each pair gives one
desirable and one undesirable completion, as the paper does with paired data); beta 0.1,
lambda_D = lambda_U = 1 (TRL KTOConfig defaults, METHODS.md §1.6), one epoch, cosine, warmup 0.1,
batch 128, 1024/512 tokens; lr 5e-7 [unverified]. Paper number (SimPO README v0.1,
princeton-nlp/Mistral-7B-Base-SFT-KTO): AlpacaEval 2 LC 13.1, Arena-Hard 5.6.
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
    return c


def _mistral(c):
    c = base.paper_scale(
        c,
        model="alignment-handbook/zephyr-7b-sft-full",  # Zephyr SFT, as the SimPO Mistral-Base baselines
        learning_rate=5e-7,  # [unverified]
        max_length=1024,
        max_prompt_length=512,
        train_data="ultrafeedback_unpaired/train.jsonl",  # UF-binarized pairs split in two (paper_data.py)
        eval_data="",
        batch_size=128,
        epochs=1.0,
    )
    c.loss.hparams.beta = 0.1  # KTO default beta (TRL KTOConfig; METHODS.md §1.6)
    c.loss.hparams.desirable_weight = 1.0  # lambda_D: n_D = n_U here, inside the paper's [1, 4/3] range
    c.loss.hparams.undesirable_weight = 1.0  # lambda_U
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "kto"
    c.reference = "on_the_fly"
    c.loss = base.loss_config("configs/kto.py", "kto")
    c.loss.hparams.beta = 0.1
    c.loss.hparams.desirable_weight = 1.0
    c.loss.hparams.undesirable_weight = 1.0
    c.data.train = "builtin:arith_unpaired/train"
    return base.apply_preset(c, preset, PRESETS)
