"""Sorted fine-tuning (SoFT; Kavehzadeh et al., 2024): NLL at several exit layers through the shared head.

  python -m experiments.soft --config configs/soft.py:cpu --workdir runs/soft

Presets: tiny (exits 1, 2 of a 2-layer model), cpu (SmolLM2's 30 layers: exits 10, 15, 20, 25, 30),
llama2_13b: Sorted LLaMA's setting (METHODS.md §8): LLaMA2-13B (40 layers) with the 8 nested
sub-models that exit at layers 12, 16, ..., 40 through the shared head, on Stanford Alpaca. No
official code: the optimizer follows the Stanford Alpaca recipe the paper fine-tunes with
(lr 2e-5, cosine, warmup 0.03, batch 128, 3 epochs, 512 tokens) [unverified against the paper].
Paper number (abstract): sub-models about 2x faster than the full model while matching or beating
it (PandaLM), up to 1.34x from self-speculative decoding.
The checkpoint is a hub id resolved through huggingface_hub's cache (alignax/models/hub.py): cached
or downloadable (meta-llama/* is gated). Data: local files, see configs/paper_data.py.
"""

from configs import base


def _tiny(c):
    c = base.tiny(c)
    c.data.eval = ""
    c.loss.hparams.exit_layers = (1, 2)
    return c


def _cpu(c):
    c = base.cpu(c)
    c.data.eval = ""
    c.loss.hparams.exit_layers = (10, 15, 20, 25, 30)
    return c


def _llama2(c):
    c = base.paper_scale(
        c,
        model="meta-llama/Llama-2-13b-hf",  # Sorted LLaMA: LLaMA2-13B (METHODS.md §8)
        learning_rate=2e-5,  # Stanford Alpaca recipe [unverified for SoFT]
        max_length=512,  # Stanford Alpaca model_max_length 512 [unverified for SoFT]
        max_prompt_length=384,
        train_data="alpaca/train.jsonl",  # tatsu-lab/alpaca (52,002 instructions)
        eval_data="",
        batch_size=128,  # Stanford Alpaca: 4 per GPU x 8 accumulation x 4 GPUs [unverified for SoFT]
        epochs=3.0,  # Stanford Alpaca: 3 epochs [unverified for SoFT]
    )
    c.optimizer.schedule, c.optimizer.warmup_ratio = "cosine", 0.03  # Stanford Alpaca recipe
    c.loss.hparams.exit_layers = (12, 16, 20, 24, 28, 32, 36, 40)  # 8 sub-models, METHODS.md §8
    c.loss.hparams.exit_reduction = "sum"  # SortedNet sums the sub-models' losses
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "llama2_13b": _llama2}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "soft"
    c.reference = "none"
    c.loss = base.loss_config("configs/soft.py", "soft")
    c.loss.hparams.exit_layers = (1,)
    c.loss.hparams.exit_reduction = "sum"
    c.data.train = "builtin:sft/train"
    c.data.eval = ""
    return base.apply_preset(c, preset, PRESETS)
