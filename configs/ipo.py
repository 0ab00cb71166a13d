"""IPO (Azar et al., 2023): squared loss of the (length-normalized, as TRL) log-ratio margin vs 1/(2 tau).

  python -m experiments.ipo --config configs/ipo.py:cpu --workdir runs/ipo
  python -m experiments.ipo --config configs/ipo.py:cpu --workdir runs/ipo_seq --config.loss.hparams.length_normalize=False

Presets: tiny, cpu, mistral7b: SimPO's IPO baseline in the "Mistral-Base" setting (the IPO paper,
Azar et al. 2023, has no chat-scale recipe): from the Zephyr SFT model
alignment-handbook/zephyr-7b-sft-full on HuggingFaceH4/ultrafeedback_binarized, batch 128, one
epoch, cosine, warmup 0.1, 1024/512 tokens, length-normalized (TRL's form, METHODS.md §1.2);
tau 0.01 and lr 5e-7 [unverified: SimPO's paper appendix lists the searched grid]. Paper number
(SimPO README v0.1, princeton-nlp/Mistral-7B-Base-SFT-IPO): AlpacaEval 2 LC 11.8, Arena-Hard 7.5.
The checkpoint is a hub id resolved through huggingface_hub's cache (alignax/models/hub.py): cached
or downloadable. Data: local files, see configs/paper_data.py.
"""

from configs import base


def _mistral(c):
    c = base.paper_scale(
        c,
        model="alignment-handbook/zephyr-7b-sft-full",  # SimPO Mistral-Base: every method starts from Zephyr SFT
        learning_rate=5e-7,  # [unverified]
        max_length=1024,  # SimPO training_configs/mistral-7b-base-simpo.yaml
        max_prompt_length=512,
        train_data="ultrafeedback_binarized/train_prefs.jsonl",  # SimPO README: Mistral Base on UF-binarized
        eval_data="ultrafeedback_binarized/test_prefs.jsonl",
        batch_size=128,  # SimPO README: total batch size 128
        epochs=1.0,
    )
    c.loss.hparams.beta = 0.01  # tau [unverified]
    c.loss.hparams.length_normalize = True  # TRL's IPO (METHODS.md §1.2)
    return c


PRESETS = {"tiny": base.tiny, "cpu": base.cpu, "mistral7b": _mistral}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "on_the_fly"
    c.loss = base.loss_config("configs/ipo.py", "ipo")
    c.loss.hparams.beta = 0.1
    c.loss.hparams.length_normalize = True
    return base.apply_preset(c, preset, PRESETS)
