"""Keys every experiment config has (DESIGN.md contract), with CPU-friendly defaults.

Experiment configs start from `base_config()` and set their method, loss and presets. Unknown keys
given on the command line (`--config.nope=1`) are errors: ConfigDicts here are locked.
"""

import ml_collections

SMOLLM2 = "smollm2-135m-instruct"


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.method = "pairwise"  # how batches become loss inputs: alignax.train.methods (sft, soft, pairwise, kto, ...)
    c.loss = loss_config("configs/dpo.py", "sigmoid")
    c.reference = "on_the_fly"  # on_the_fly (frozen copy of the start) | precomputed (one pass, cached) | none
    c.reference_cache_dir = ""  # precomputed reference log-probs; "" = ~/.cache/alignax/reference_logps

    c.model = SMOLLM2  # preset name, .gguf file or HF folder
    c.random_init = ml_collections.ConfigDict(
        {
            "enabled": False,  # a tiny random Llama with `model`'s tokenizer (tests, `tiny` presets)
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
    )
    # LoRA adapters (alignax/models/lora.py; Hu et al., 2021, PEFT's layout): rank 0 = off (full
    # fine-tuning). With rank > 0 only the adapters train and DPO's reference is the base model.
    c.lora = ml_collections.ConfigDict(
        {
            "rank": 0,
            "alpha": 16.0,
            "dropout": 0.0,
            "target": "q_proj|v_proj",  # regex searched in module paths, e.g. model.layers.0.self_attn.q_proj
            "init": "kaiming",  # kaiming (PEFT's default: A ~ kaiming-uniform, B = 0) | gaussian
            "use_rslora": False,  # scale alpha / sqrt(rank) instead of alpha / rank
        }
    )
    c.dtype = "float32"  # compute dtype: float32 on CPU, bfloat16 on accelerators
    c.remat = False
    c.scan_layers = False

    c.data = ml_collections.ConfigDict(
        {
            "train": "builtin:arith_pairs/train",
            "eval": "builtin:arith_pairs/eval",
            "max_length": 256,
            "max_prompt_length": 128,
            "length_multiple": 32,  # rows are padded to a multiple of this (few compiled shapes)
            "packing": True,  # several sequences per row (first-fit decreasing), kept apart by segment ids
            "shuffle": True,
            "on_error": "error",  # error | skip (skipped records are counted and reported)
        }
    )

    c.total_steps = 100
    c.batch_size = 8  # examples (pairs) per optimizer step, over all hosts and micro-batches
    c.grad_accum_steps = 1
    c.eval_batch_size = 8
    c.eval_batches = 4
    c.eval_every = 0  # 0 = only at the end
    c.seed = 0
    # Axis sizes (-1 = the remaining devices); num_devices: use the first n devices (-1 = all).
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "num_devices": -1})
    c.distributed = ml_collections.ConfigDict({"coordinator_address": "", "num_processes": 1, "process_id": 0})

    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "learning_rate": 1e-5,
            "schedule": "cosine",
            "warmup_ratio": 0.1,
            "warmup_steps": -1,  # -1 = use warmup_ratio
            "final_lr_fraction": 0.0,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "grad_clip_norm": 1.0,
        }
    )
    c.logprob_chunk_size = 256  # tokens per chunk of the log-prob kernel
    # vocabulary columns per slice of its online logsumexp (0 = whole vocabulary per chunk): the
    # [tokens, V] float32 logits never exist, even per chunk (benchmarks/logprobs.py).
    c.logprob_vocab_chunk_size = 8192
    c.nan_policy = "stop"  # stop | skip
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    c.async_checkpointing = True
    c.log_every = 1
    c.export = True
    return c


def loss_config(config_file: str, default_loss: str) -> ml_collections.ConfigDict:
    """`loss.name` and one typed, unset (None) placeholder per hyperparameter of the losses that
    `config_file` trains (`alignax.losses.trained_by`), so that `--config.loss.name=ipo
    --config.loss.hparams.length_normalize=False` parses. Unset hyperparameters take the loss's
    declared default; one the chosen loss does not take is an error naming it
    (`alignax.train.validate`)."""
    from alignax import losses

    placeholders = {}
    for name in losses.trained_by(config_file):
        for key, value_type in losses.info(name).hparam_types.items():
            placeholders.setdefault(key, ml_collections.FieldReference(None, field_type=value_type))
    return ml_collections.ConfigDict({"name": default_loss, "hparams": ml_collections.ConfigDict(placeholders)})


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `tiny` preset: a tiny random model on built-in data, seconds on a 2-core CPU."""
    c.random_init.enabled = True
    c.total_steps = 6
    c.batch_size = 4
    c.eval_batch_size = 4
    c.eval_batches = 1
    c.checkpoint_every = 3
    c.data.max_length = 64
    c.data.max_prompt_length = 48
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_ratio = 0.0
    c.logprob_chunk_size = 32
    c.async_checkpointing = False
    return c


def cpu(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `cpu` preset: SmolLM2-135M-Instruct on a 2-core CPU in minutes."""
    c.model = SMOLLM2
    c.random_init.enabled = False
    c.total_steps = 40
    c.batch_size = 8
    c.eval_batch_size = 8
    c.eval_batches = 5
    c.checkpoint_every = 20
    c.data.max_length = 96
    c.data.max_prompt_length = 64
    c.optimizer.learning_rate = 5e-6
    return c


def apply_preset(c: ml_collections.ConfigDict, preset: str, presets: dict) -> ml_collections.ConfigDict:
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(sorted(presets))}")
    c = presets[preset](c)
    c.lock()
    return c


# What every paper preset declares it runs on: one host with 8 accelerators of at least 80 GB
# (8xH100 / A100-80GB, the SimPO, SPPO and alignment-handbook setups). tests/test_paper_presets.py
# builds each preset's mesh on 8 devices and checks that its parameters and optimizer state, split
# by the FSDP rules, fit PAPER_DEVICE_MEMORY_GB per device.
PAPER_DEVICES = 8
PAPER_DEVICE_MEMORY_GB = 80


def paper_scale(
    c: ml_collections.ConfigDict,
    *,
    model: str,
    learning_rate: float,
    max_length: int = 1024,
    max_prompt_length: int = 512,
    train_data: str = "ultrafeedback_binarized/train_prefs.jsonl",
    eval_data: str = "ultrafeedback_binarized/test_prefs.jsonl",
    batch_size: int = 128,
    epochs: float = 1.0,
) -> ml_collections.ConfigDict:
    """A paper-scale run on PAPER_DEVICES chips of one host: FSDP over the chips, bf16 compute, remat.

    `model` is the checkpoint the paper starts from, usually a Hugging Face hub id:
    `alignax.models.load` resolves hub ids through huggingface_hub's cache (alignax/models/hub.py),
    so the checkpoint must be in the local cache (`HF_HUB_CACHE`) or downloadable (network, and for
    gated repositories such as meta-llama/* an accepted licence and `HF_TOKEN`); with
    `HF_HUB_OFFLINE=1` it must already be cached. A plain name (e.g. `alpaca_farm_sft10k`) is a
    local folder to bring. `alignax.models.presets.PAPER_CHECKPOINTS` declares each checkpoint's
    architecture so its shapes are known without it.

    `train_data` / `eval_data` are local files named in configs/paper_data.py (which says which hub data set
    and split to write there, and in which record format); `total_steps` is `epochs` over the
    declared row count at `batch_size` (pairs or examples per step, all chips and accumulation
    steps together). Micro-batches of 32 examples: `grad_accum_steps` = batch_size / 32."""
    from configs import paper_data

    c.model = model
    c.random_init.enabled = False
    c.dtype = "bfloat16"
    c.remat = True
    c.batch_size = batch_size
    c.grad_accum_steps = max(1, batch_size // 32)
    c.total_steps = paper_data.steps(train_data, batch_size, epochs)
    c.eval_batch_size = 32
    c.eval_batches = 16 if eval_data else 0
    c.data.train = train_data
    c.data.eval = eval_data
    c.data.max_length = max_length
    c.data.max_prompt_length = max_prompt_length
    c.optimizer.learning_rate = learning_rate
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_ratio = 0.1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.mesh.num_devices = PAPER_DEVICES
    c.logprob_chunk_size = 1024
    c.checkpoint_every = 100
    c.eval_every = 100 if eval_data else 0
    return c


# One-line meanings of the keys, shown by `--help` (experiments/cli_help.py).
KEY_HELP = {
    "method": "how batches become loss inputs (alignax.train.methods): sft, soft, pairwise, kto, multi_sample, "
    "reward_model",
    "loss.name": "the objective (alignax.losses.names()); it must be one the method trains",
    "loss.hparams.*": "a hyperparameter of the loss; None = the loss's own default (alignax.losses.info)",
    "reference": "on_the_fly: a frozen copy of the starting model; precomputed: its log-probs in one cached pass "
    "before training, no reference in memory (pairwise, multi_sample); none: no reference (SimPO, ORPO)",
    "reference_cache_dir": "where precomputed reference log-probs are cached ('' = ~/.cache/alignax/reference_logps)",
    "model": "preset name (smollm2-135m-instruct), .gguf file or Hugging Face folder",
    "random_init.enabled": "replace the weights by a tiny random Llama of the sizes below (tests, tiny presets)",
    "random_init.*": "a size of the tiny random model",
    "lora.rank": "LoRA adapter rank (0 = off: full fine-tuning); with rank > 0 only the adapters train",
    "lora.alpha": "LoRA alpha: the adapter output is scaled by alpha / rank (alpha / sqrt(rank) with use_rslora)",
    "lora.dropout": "dropout on the adapter's input while training (PEFT's lora_dropout)",
    "lora.target": "regex searched in projection paths (model.layers.0.self_attn.q_proj): which get adapters",
    "lora.init": "kaiming (A ~ kaiming-uniform, B = 0; PEFT's default) or gaussian (A ~ N(0, 1/rank))",
    "lora.use_rslora": "rank-stabilised scaling alpha / sqrt(rank)",
    "judgment.positive_score": "CUT (configs/cut.py): a judged record with score >= this is positive (plain MLE)",
    "dtype": "compute dtype: float32 on CPU, bfloat16 on accelerators",
    "remat": "recompute activations in the backward pass (less memory, more FLOPs)",
    "scan_layers": "run the layers under jax.lax.scan (faster compiles for deep models)",
    "data.train": "training data: JSONL/Parquet path or glob, tfds:DIR, builtin:NAME/SPLIT, or hf://ORG/NAME[:SPLIT]",
    "data.eval": "evaluation data (same forms); empty = no evaluation",
    "data.max_length": "tokens per sequence, prompt + response, after truncation",
    "data.max_prompt_length": "prompt tokens kept (truncated from the left)",
    "data.length_multiple": "rows are padded to a multiple of this (few compiled shapes)",
    "data.packing": "pack several sequences per row (rows of the bucket with least padding, docs/batches.md); false = one per row",
    "data.shuffle": "shuffle the training data by (seed, epoch)",
    "data.on_error": "bad records: error (stop, naming file and line) or skip (counted and reported)",
    "total_steps": "optimizer steps",
    "batch_size": "examples (pairs) per optimizer step, over all hosts and micro-batches",
    "grad_accum_steps": "micro-batches per step (gradient accumulation)",
    "eval_batch_size": "examples per evaluation batch",
    "eval_batches": "batches per evaluation (0 = no evaluation)",
    "eval_every": "evaluate every N steps (0 = only at the end)",
    "seed": "data order and initialisation seed",
    "mesh.*": "device mesh axis size (-1 = the remaining devices); num_devices: use the first n (-1 = all)",
    "distributed.*": "multi-host: jax.distributed coordinator address, process count and this process's id",
    "optimizer.*": "AdamW and its schedule (cosine or linear with warmup); grad_clip_norm 0 disables clipping",
    "logprob_chunk_size": "tokens per chunk of the log-prob kernel",
    "logprob_vocab_chunk_size": "vocabulary columns per slice of the log-prob kernel (0 = whole vocabulary)",
    "nan_policy": "a non-finite loss or gradient: stop (keep the last checkpoint) or skip the update",
    "checkpoint_every": "save an Orbax checkpoint every N steps (and at the end)",
    "keep_checkpoints": "checkpoints kept on disk",
    "async_checkpointing": "save checkpoints in the background",
    "log_every": "write metrics every N steps",
    "export": "write the final model as a Hugging Face folder DIR/export",
}
