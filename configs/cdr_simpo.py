"""The CDR -> SimPO pipeline (Xu et al., 2024, "Customizable Density Ratios"; METHODS.md §3), alignax's main job.

  python -m experiments.cdr_simpo --config configs/cdr_simpo.py --workdir runs/demo      # `make demo`
  python -m experiments.cdr_simpo --config configs/cdr_simpo.py:tiny --workdir /tmp/cdr  # tests

Stages: (1) sample `annotate.num_samples` on-policy responses per built-in training prompt with
SmolLM2-135M-Instruct; (2) reward each with the density ratio log pi_strong(y|x~) - log pi_weak(y|x~)
where strong and weak are the SAME model under contrasting instructions (the single-model case the
CPU allows; router + domain system prompts + exemplars, as the paper); best vs worst -> preference
pairs; (3) SimPO on those pairs; (4) on held-out prompts, generate with the starting and the tuned
model and compare them with rewards the training never saw (see `evaluation`).
"""

import ml_collections

from configs import base


def _common(c):
    c.method = "pairwise"
    c.reference = "none"
    c.loss = base.loss_config("configs/simpo.py", "simpo")
    c.loss.hparams.beta = 2.5
    c.loss.hparams.gamma_beta_ratio = 0.1
    c.data.train = "builtin:prompts/train"  # prompts to sample from; the pairs are written by stage 2
    c.data.eval = "builtin:prompts/heldout"  # held-out prompts for stage 4
    c.data.on_error = "skip"  # a sampled response can be empty: skip (and count) such pairs
    c.annotate = ml_collections.ConfigDict(
        {
            "num_prompts": 64,  # 0 = all
            "num_samples": 4,
            "max_new_tokens": 64,
            "temperature": 0.8,
            "top_p": 0.95,
            "pair_strategy": "worst",  # best vs worst (SimPO's on-policy recipe)
            "batch_size": 64,  # rows per sampling batch (each row's draws do not depend on it)
            "customization": "vanilla_domain",  # none | domain | vanilla_domain (the paper's best)
        }
    )
    c.evaluation = ml_collections.ConfigDict(
        {
            "num_prompts": 39,  # held-out prompts (0 = all)
            "max_new_tokens": 64,
            # Also the starting model as an AlpacaEval-style pairwise judge (both orders). Off by default:
            # a 135M judge's verdict-token probabilities barely move (measured 0.501 +- 0.000).
            "judge": False,
        }
    )
    return c


def _cpu(c):
    c = base.cpu(_common(c))
    c.total_steps = 32  # two epochs over the 64 pairs
    c.batch_size = 4
    c.eval_batches = 0
    c.checkpoint_every = 8
    c.data.max_length = 160
    c.data.max_prompt_length = 96
    c.optimizer.learning_rate = 1e-5
    c.optimizer.warmup_ratio = 0.1
    return c


def _tiny(c):
    c = base.tiny(_common(c))
    c.eval_batches = 0
    c.annotate.num_prompts = 4
    c.annotate.num_samples = 2
    c.annotate.max_new_tokens = 8
    c.annotate.batch_size = 8
    c.evaluation.num_prompts = 4
    c.evaluation.max_new_tokens = 8
    c.evaluation.judge = True  # exercised in tests
    return c


PRESETS = {"cpu": _cpu, "tiny": _tiny}


def get_config(preset: str = "cpu"):
    return base.apply_preset(base.base_config(), preset, PRESETS)
