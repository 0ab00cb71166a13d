"""SPPO: Self-Play Preference Optimization (Wu et al., ICLR 2025; METHODS.md §4), T on-policy iterations.

  python -m experiments.sppo --config configs/sppo.py:tiny --workdir /tmp/sppo      # ~1 min, CPU
  python -m experiments.sppo --config configs/sppo.py:cpu --workdir runs/sppo       # SmolLM2, ~15 min
  python -m experiments.sppo --config configs/sppo.py:mistral7b_pairrm --workdir /ckpt/sppo

Each iteration t: K samples per prompt from π_t; the oracle's P(y_i ≻ y_j); P̂(y ≻ π_t) = the mean
over the K samples (self included); pairs y_w = argmax, y_l = argmin score with their P̂; the `sppo`
loss ½[(ρ_w − η(P̂_w − ½))² + (ρ_l − η(P̂_l − ½))²], β = 1/η, against π_t (reference on_the_fly =
the iteration's starting model). alignax/iterate/ runs it; DIR/summary.json holds the held-out
metric per iteration.

Paper preset `mistral7b_pairrm` (uclaml/SPPO scripts/pipeline.sh, run_sppo_mistral.sh; METHODS.md §4):
it needs mistralai/Mistral-7B-Instruct-v0.2 as a local HF folder, UltraFeedback prompts as a local
JSONL of {"id", "prompt"}, and a pairwise preference model in alignax's format as `oracle.model`
(alignax/annotate/pairwise.py; PairRM itself is a DeBERTa model alignax does not load: train one
with the engine, or use oracle.name=http_judge). The policy's hub id is resolved through huggingface_hub's cache (alignax/models/hub.py): cached
locally or downloadable; the prompt file's format is declared in configs/paper_data.py.
"""

from alignax.iterate import config as iterate_config
from configs import base


def _mistral7b_pairrm(c):
    c = base.paper_scale(
        c,
        model="mistralai/Mistral-7B-Instruct-v0.2",
        learning_rate=5e-7,  # run_sppo_mistral.sh
        max_length=1024,
        max_prompt_length=512,
    )  # pipeline.sh
    c.loss.hparams.beta = 0.001  # β = 1/η, pipeline.sh
    c.batch_size, c.grad_accum_steps = 64, 8  # 8 per device x 8 GPUs, config_full.yaml
    c.optimizer.schedule = "linear"  # config_full.yaml (the paper uses rmsprop; alignax has adamw)
    c.optimizer.warmup_ratio = 0.1  # config_full.yaml
    it = c.iterate
    it.iterations = 3  # README: iter1..iter3
    it.prompts = "ultrafeedback_prompts.jsonl"  # ~60k UltraFeedback prompts, bring as JSONL
    it.prompts_per_iteration = 20000  # three disjoint splits (UCLA-AGI/data-mistral-7b-instruct-sppo-iter{1,2,3})
    it.num_samples = 5  # K = 5, scripts/generate.py
    it.temperature, it.top_p, it.max_new_tokens = 0.7, 0.9, 2048  # scripts/generate.py
    it.epochs = 1.0  # run_sppo_mistral.sh passes --num 1
    it.oracle.name, it.oracle.model = "pairwise", "pairrm_alignax"  # PairRM's role; a local folder
    it.heldout, it.eval.metrics = "ifeval:2:541", "ifeval"  # IFEval-size held-out set
    return c


PRESETS = {
    "tiny": lambda c: iterate_config.tiny(base.tiny(c)),
    "cpu": lambda c: _cpu(base.cpu(c)),
    "mistral7b_pairrm": _mistral7b_pairrm,
}


def _cpu(c):
    c = iterate_config.cpu(c)
    c.loss.hparams.beta = 0.1  # η = 10: targets η(P̂ − ½) within ±5 nats for 135M (1000 diverges)
    # 2e-5 diverged at step 3 of 4 (loss 3.4 -> 55, gradient norm 2006; docs/reproductions.md):
    # SPPO's squared loss toward targets of up to ±5 nats overshoots where DNO's sigmoid did not.
    c.optimizer.learning_rate = 5e-6
    return c


def get_config(preset: str = "cpu"):
    c = base.base_config()
    c.method = "pairwise"
    c.loss = base.loss_config("configs/dpo.py", "sppo")
    c.reference = "on_the_fly"  # π_t: the model this iteration's training starts from
    c.iterate = iterate_config.iterate_block("sppo")
    return base.apply_preset(c, preset, PRESETS)
