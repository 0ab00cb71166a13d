"""ORPO (Hong, Lee & Thorne, 2024): NLL on chosen + lambda x odds-ratio term; no reference model.

  python -m experiments.orpo --config configs/orpo.py:cpu --workdir runs/orpo

Presets: tiny, cpu, mistral7b: Mistral-ORPO-beta (xfactlab/orpo scripts/run_mistral_orpo_beta.sh):
from the base model mistralai/Mistral-7B-v0.1 (ORPO has no SFT stage) on
argilla/ultrafeedback-binarized-preferences-cleaned, lambda 0.1, lr 5e-6, 200 warmup steps, 5
epochs, batch 8 per GPU x 4 A100 = 32, prompts up to 1792 and sequences up to 2048 tokens. The
script's inverse_sqrt schedule is not in alignax/train/optim.py: the preset decays linearly
instead (the nearest it has). Paper number (kaist-ai/mistral-orpo-beta card): AlpacaEval 2.0
12.20, MT-Bench 7.32.
The checkpoint is a hub id resolved through huggingface_hub's cache (alignax/models/hub.py): cached
or downloadable. Data: local files, see configs/paper_data.py.
"""

from configs import base


def _mistral(c):
    # xfactlab/orpo scripts/run_mistral_orpo_beta.sh
    c = base.paper_scale(
        c,
        model="mistralai/Mistral-7B-v0.1",  # --model_name
        learning_rate=5e-6,  # --lr 5e-6
        max_length=2048,  # --response_max_length 2048
        max_prompt_length=1792,  # --prompt_max_length 1792
        train_data="ultrafeedback_binarized_cleaned/train.jsonl",  # --data_name argilla/...-cleaned
        eval_data="",
        batch_size=32,  # --per_device_train_batch_size 8 x 4 A100 ("trained on 4 * A100s"), accumulation 1
        epochs=5.0,  # --num_train_epochs 5
    )
    c.optimizer.schedule = "linear"  # the script: inverse_sqrt (not available; see the docstring)
    c.optimizer.warmup_steps = 200  # --warmup_steps 200
    c.loss.hparams.beta = 0.1  # --alpha 0.1 (lambda)
    return c


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "none"
    c.loss = base.loss_config("configs/orpo.py", "orpo")
    c.loss.hparams.beta = 0.1
    return base.apply_preset(c, preset, PRESETS)
