"""CUT: Contrastive Unlikelihood Training (Xu et al., "Reasons to Reject? Aligning Language Models
with Judgments", ACL Findings 2024; wwxu21/CUT; METHODS.md section 7).

  python -m experiments.cut --config configs/cut.py:cpu --workdir runs/cut
  python -m experiments.cut --config configs/cut.py:llama2_13b_chat --workdir /ckpt/cut   # one 8-chip host

Data: records with `prompt`, `response`, `judgment` (natural language) and an optional `score`
(task "judgment"; built-in: builtin:judgment/train and /eval). A record with score >= 7 is positive
(plain MLE on the response); below 7 or without a score it is negative: MLE on the response given
the judgment-conditioned prompt, and unlikelihood on the response tokens whose probability the
judgment raises by more than `threshold` (alignax/losses/cut.py, alignax/train/methods.py `cut`).

Presets:
  tiny             a tiny random model on the built-in judgments (tests; full fine-tuning).
  cpu              SmolLM2-135M-Instruct with LoRA r=16 on the paper's targets (minutes on a CPU).
  llama2_13b_chat  the paper's online setting; every value from the wwxu21/CUT README command
                   (METHODS.md section 7): LLaMA2-chat-13B, LoRA r=16, alpha 16, dropout 0.05 on
                   gate_proj/down_proj/up_proj, lr 4e-4 cosine with 100 warmup steps, batch 8
                   (micro-batch 1 = 8 accumulation steps), one epoch, cutoff 2048, threshold 1.1,
                   unlikelihood weight 1 (offline Shepherd setting: 1.2 and 0.5). Bring the
                   judgments as JSONL (`data.train`; format: configs/paper_data.py). Not reproduced: the paper's downsampling of
                   positive examples to 0.25 x #negative (prepare the data that way).
                   The checkpoint is a hub id resolved through huggingface_hub's cache
                   (alignax/models/hub.py): cached or downloadable (meta-llama/* is gated).
"""

import ml_collections

from configs import base

PAPER_TARGET = "gate_proj|down_proj|up_proj"  # the CUT README's --lora_target_modules


def _tiny(c):
    c = base.tiny(c)
    c.data.max_length = 160  # the judgment prompt (template + judgment) is ~100 tokens
    c.data.max_prompt_length = 128
    return c


def _cpu(c):
    c = base.cpu(c)
    c.lora.update(dict(rank=16, alpha=16.0, dropout=0.05, target=PAPER_TARGET))
    c.optimizer.learning_rate = 1e-3  # LoRA on a 135M model; the paper's 4e-4 is for 13B
    c.optimizer.warmup_ratio = 0.05
    c.data.max_length = 192
    c.data.max_prompt_length = 160
    c.eval_batches = 2
    return c


def _llama2_13b_chat(c):
    c = base.paper_scale(
        c,
        model="meta-llama/Llama-2-13b-chat-hf",  # LLaMA2-chat-13B (README, online setting)
        learning_rate=4e-4,  # --learning_rate 4e-4
        max_length=2048,  # --cutoff_len 2048
        max_prompt_length=1536,
        train_data="judgments/train.jsonl",  # bring the judgments as JSONL (configs/paper_data.py)
        eval_data="",
        batch_size=8,  # --batch_size 8
        epochs=1.0,  # --num_epochs 1: 165 steps over the offline set's 1,317 judgments
    )
    c.lora.update(dict(rank=16, alpha=16.0, dropout=0.05, target=PAPER_TARGET))  # --lora_r/alpha/dropout/target
    c.grad_accum_steps = 8  # --micro_batch_size 1: 8 accumulation steps
    c.eval_batch_size = 8
    c.optimizer.schedule = "cosine"  # cosine
    c.optimizer.warmup_steps = 100  # --warmup_steps 100
    c.loss.hparams.threshold = 1.1  # --threshold 1.1 (online)
    c.loss.hparams.unlikelihood_weight = 1.0  # --weight_unlike 1 (online)
    return c


PRESETS = {"tiny": _tiny, "cpu": _cpu, "llama2_13b_chat": _llama2_13b_chat}


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "cut"
    c.reference = "none"  # CUT contrasts two contexts of one model: no reference model
    c.loss = base.loss_config("configs/cut.py", "cut")
    c.data.train = "builtin:judgment/train"
    c.data.eval = "builtin:judgment/eval"
    # Records with score >= positive_score are positive (METHODS.md section 7: score >= 7).
    c.judgment = ml_collections.ConfigDict({"positive_score": 7.0})
    return base.apply_preset(c, preset, PRESETS)
