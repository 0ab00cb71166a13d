"""SimPO (Meng, Xia & Chen, NeurIPS 2024): reference-free, length-normalized, target margin gamma.

  python -m experiments.simpo --config configs/simpo.py:cpu --workdir runs/simpo
  python -m experiments.simpo --config configs/simpo.py:llama3_8b --workdir /ckpt/simpo   # one 8-chip host

Paper presets (princeton-nlp/SimPO training_configs/*.yaml and README, METHODS.md §2), one epoch,
cosine, warmup 0.1, batch 128 (the README: "keep the total batch size fixed at 128"):
  mistral7b   the "Mistral-Base" setting: from the Zephyr SFT model alignment-handbook/zephyr-7b-sft-full
              on HuggingFaceH4/ultrafeedback_binarized; beta 2.0, gamma/beta 0.8, lr 3e-7, 1024/512 tokens.
              Paper number: AlpacaEval 2 LC 21.4, Arena-Hard 16.6 (README v0.1 table).
  llama3_8b_base  the "Llama-3-Base" setting: from princeton-nlp/Llama-3-Base-8B-SFT on
              UltraFeedback-binarized; beta 2.0, gamma/beta 0.5, lr 6e-7, 2048/1800 tokens. Paper
              number: AlpacaEval 2 LC 22.0, Arena-Hard 23.4 (README v0.1 table).
  llama3_8b   the "Llama-3-Instruct v0.2" setting: from meta-llama/Meta-Llama-3-8B-Instruct on its own
              on-policy samples annotated by ArmoRM (princeton-nlp/llama3-ultrafeedback-armorm);
              beta 10, gamma/beta 0.3, lr 1e-6, 2048/1800 tokens. Paper number: AlpacaEval 2 LC 53.7,
              Arena-Hard 36.5 (README v0.2 table). The v0.2 hyperparameters belong to the on-policy
              ArmoRM data; on UltraFeedback-binarized (off-policy) they are not the paper's setting.
The checkpoints are Hugging Face hub ids, resolved through huggingface_hub's cache
(alignax/models/hub.py): they must be cached locally or downloadable (meta-llama/* is gated: accept
the licence and set HF_TOKEN). The data are local files: configs/paper_data.py says which data set
and split to write where.
"""

from configs import base


def _paper(model, *, beta, gamma_beta_ratio, learning_rate, max_length, max_prompt_length, train_data, eval_data):
    def preset(c):
        c = base.paper_scale(
            c,
            model=model,
            learning_rate=learning_rate,
            max_length=max_length,
            max_prompt_length=max_prompt_length,
            train_data=train_data,
            eval_data=eval_data,
            batch_size=128,  # SimPO README: total batch size 128
            epochs=1.0,  # num_train_epochs: 1 (training_configs/*.yaml)
        )
        c.optimizer.schedule = "cosine"  # lr_scheduler_type: cosine
        c.optimizer.warmup_ratio = 0.1  # warmup_ratio: 0.1
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
    # training_configs/mistral-7b-base-simpo.yaml: model_name_or_path alignment-handbook/zephyr-7b-sft-full,
    # dataset HuggingFaceH4/ultrafeedback_binarized (train_prefs/test_prefs), beta 2.0, gamma 1.6
    # (= gamma/beta 0.8, the README table), learning_rate 3.0e-7, max_length 1024, max_prompt_length 512.
    "mistral7b": _paper(
        "alignment-handbook/zephyr-7b-sft-full",
        beta=2.0,
        gamma_beta_ratio=0.8,
        learning_rate=3e-7,
        max_length=1024,
        max_prompt_length=512,
        train_data="ultrafeedback_binarized/train_prefs.jsonl",
        eval_data="ultrafeedback_binarized/test_prefs.jsonl",
    ),
    # training_configs/llama-3-8b-base-simpo.yaml: princeton-nlp/Llama-3-Base-8B-SFT (Llama-3-8B after SFT
    # on UltraChat-200k), HuggingFaceH4/ultrafeedback_binarized, beta 2.0, gamma_beta_ratio 0.5,
    # learning_rate 6.0e-7, max_length 2048, max_prompt_length 1800.
    "llama3_8b_base": _paper(
        "princeton-nlp/Llama-3-Base-8B-SFT",
        beta=2.0,
        gamma_beta_ratio=0.5,
        learning_rate=6e-7,
        max_length=2048,
        max_prompt_length=1800,
        train_data="ultrafeedback_binarized/train_prefs.jsonl",
        eval_data="ultrafeedback_binarized/test_prefs.jsonl",
    ),
    # training_configs/llama-3-8b-instruct-simpo-v2.yaml: meta-llama/Meta-Llama-3-8B-Instruct,
    # princeton-nlp/llama3-ultrafeedback-armorm (train/test), beta 10, gamma_beta_ratio 0.3,
    # learning_rate 1.0e-6, max_length 2048, max_prompt_length 1800.
    "llama3_8b": _paper(
        "meta-llama/Meta-Llama-3-8B-Instruct",
        beta=10.0,
        gamma_beta_ratio=0.3,
        learning_rate=1e-6,
        max_length=2048,
        max_prompt_length=1800,
        train_data="llama3_ultrafeedback_armorm/train.jsonl",
        eval_data="llama3_ultrafeedback_armorm/test.jsonl",
    ),
}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.reference = "none"
    # simpo and cpo; unset hyperparameters take the loss's defaults (SimPO: beta 2.0, gamma/beta 0.25).
    c.loss = base.loss_config("configs/simpo.py", "simpo")
    return base.apply_preset(c, preset, PRESETS)
