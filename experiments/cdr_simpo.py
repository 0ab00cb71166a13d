"""CDR -> SimPO on a real model: sample, annotate with density ratios, train, evaluate (configs/cdr_simpo.py).

  python -m experiments.cdr_simpo --config configs/cdr_simpo.py --workdir runs/demo

Writes DIR/annotate/ (samples, scored, preferences.jsonl, summary.json), DIR/train/ (a full training
run: metrics.jsonl, checkpoints, export/, curves.png), DIR/eval/ (held-out generations of both
models, per-prompt scores), DIR/report.md, DIR/demo.png and DIR/summary.json. Every stage resumes:
run the same command again after an interruption.

Held-out evaluation uses rewards the training never saw:
  * `heldout_density_ratio`: the same model under a DIFFERENT contrast than training (no domain
    customization; a weak persona that rambles and goes off-topic instead of the training one),
    summed over response tokens — a paired comparison of tuned vs starting responses per prompt;
  * `judge_winrate` (optional): the starting model as an AlpacaEval-style pairwise judge reading the
    probabilities of its verdict tokens, both presentation orders averaged (position bias cancels).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

import numpy as np

from alignax.files import write_atomic
from experiments._main import run

EVAL_WEAK_INSTRUCTION = (
    "You are a distracted assistant. Ramble, repeat yourself, drift off-topic and never give a "
    "direct, well-organized answer to what was asked."
)


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()) if values.size else float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


class _BucketedForward:
    """model(ids[None]) -> logits [1, T, V] with prompts left-padded to a few lengths, jitted once per
    bucket (the local judge would otherwise run the model eagerly or recompile per prompt length)."""

    def __init__(self, model, bucket: int = 128):
        import jax
        from flax import nnx

        self.graphdef, self.state = nnx.split(model)
        self.bucket = bucket

        @jax.jit
        def forward(state, ids, segment_ids):
            return nnx.merge(self.graphdef, state)(ids, segment_ids=segment_ids)

        self._forward = forward

    def __call__(self, input_ids):
        import jax.numpy as jnp

        ids = np.asarray(input_ids)
        length = ids.shape[1]
        padded = int(math.ceil(length / self.bucket) * self.bucket)
        padded_ids = np.zeros((1, padded), np.int32)
        segment_ids = np.zeros((1, padded), np.int32)
        padded_ids[0, padded - length :] = ids[0]
        segment_ids[0, padded - length :] = 1
        logits = self._forward(self.state, jnp.asarray(padded_ids), jnp.asarray(segment_ids))
        return logits[:, padded - length :]


def _load_prompts(source: str, limit: int) -> list[dict]:
    from alignax.data import readers

    loaded = readers.load_dataset(source, task="prompts")
    records = []
    for index, example in enumerate(loaded.examples):
        prompt = example.prompt
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        records.append({"id": example.id or f"{source}-{index}", "prompt": text})
    return records[:limit] if limit else records


def _generate_or_load(path: str, model, tokenizer, prompts: list[dict], *, max_new_tokens: int) -> list[str]:
    """Greedy responses to the held-out prompts, cached in `path` (resume)."""
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if [r["id"] for r in cached] == [p["id"] for p in prompts]:
            return [r["response"] for r in cached]
    from alignax.sample.sampler import generate

    generations = generate(
        model,
        tokenizer,
        [p["prompt"] for p in prompts],
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        batch_size=16,
        seed=0,
    )
    responses = [g.text for g in generations]
    records = [{"id": p["id"], "prompt": p["prompt"], "response": r} for p, r in zip(prompts, responses)]
    write_atomic(path, json.dumps(records, indent=1))
    return responses


def _before_after_rewards(policy, tokenizer, prompts, before, after, **reward_options) -> dict[str, np.ndarray]:
    """Single-model density-ratio rewards of both models' responses, scored in one call so that
    the two responses to a prompt share one pass over it (alignax/sample/prefix_scoring.py)."""
    from alignax.annotate.density_ratio import density_ratio_rewards

    rewards = density_ratio_rewards(policy, policy, tokenizer, prompts * 2, before + after, **reward_options).rewards
    rewards = np.asarray(rewards, np.float64)
    return {"before": rewards[: len(prompts)], "after": rewards[len(prompts) :]}


def pipeline(config, workdir: str) -> dict:
    from alignax.annotate.density_ratio import Customization, density_ratio_rewards
    from alignax.annotate.job import AnnotateConfig, annotate
    from alignax.models import load
    from alignax.train import modeling
    from alignax.train.loop import train

    os.makedirs(workdir, exist_ok=True)
    stage_seconds: dict[str, float] = {}
    started = time.time()

    # --- the starting policy ------------------------------------------------------------------------
    mesh = modeling.make_mesh(config.mesh)
    policy, tokenizer = modeling.build_model(config, mesh)
    stage_seconds["load_model"] = time.time() - started

    # --- stages 1+2: on-policy samples, density-ratio rewards, preference pairs ------------------------
    t0 = time.time()
    ann = config.annotate
    train_prompts = _load_prompts(config.data.train, ann.num_prompts)
    customization = Customization(mode=ann.customization)

    def reward_fn(prompts, responses):
        return density_ratio_rewards(policy, policy, tokenizer, prompts, responses, customization=customization)

    annotate_dir = os.path.join(workdir, "annotate")
    print(
        f"[1/4] sampling {ann.num_samples} responses x {len(train_prompts)} prompts and scoring them "
        f"with density ratios -> {annotate_dir}"
    )
    annotation = annotate(
        policy,
        tokenizer,
        train_prompts,
        reward_fn,
        annotate_dir,
        config=AnnotateConfig(
            num_samples=ann.num_samples,
            max_new_tokens=ann.max_new_tokens,
            temperature=ann.temperature,
            top_p=ann.top_p,
            pair_strategy=ann.pair_strategy,
            seed=config.seed,
            batch_size=ann.batch_size,
        ),
    )
    stage_seconds["sample_and_annotate"] = time.time() - t0

    # --- stage 3: SimPO on the pairs ---------------------------------------------------------------------
    t0 = time.time()
    train_config = copy.deepcopy(config)
    train_config.unlock()
    train_config.data.train = os.path.join(annotate_dir, "preferences.jsonl")
    train_config.data.eval = ""
    train_dir = os.path.join(workdir, "train")
    print(f"[2/4] SimPO for {config.total_steps} steps on {annotation.get('num_pairs', '?')} pairs -> {train_dir}")
    train_summary = train(train_config, train_dir)
    stage_seconds["train"] = time.time() - t0

    # --- stage 4: held-out comparison ---------------------------------------------------------------------
    t0 = time.time()
    evaluation = config.evaluation
    eval_dir = os.path.join(workdir, "eval")
    os.makedirs(eval_dir, exist_ok=True)
    heldout = _load_prompts(config.data.eval, evaluation.num_prompts)
    tuned, _ = load(os.path.join(train_dir, "export"), dtype=config.dtype)
    print(f"[3/4] generating on {len(heldout)} held-out prompts with the starting and the tuned model")
    before = _generate_or_load(
        os.path.join(eval_dir, "before.json"), policy, tokenizer, heldout, max_new_tokens=evaluation.max_new_tokens
    )
    after = _generate_or_load(
        os.path.join(eval_dir, "after.json"), tuned, tokenizer, heldout, max_new_tokens=evaluation.max_new_tokens
    )
    stage_seconds["generate_heldout"] = time.time() - t0

    t0 = time.time()
    print("[4/4] scoring with held-out rewards")
    prompts = [p["prompt"] for p in heldout]
    heldout_reward = _before_after_rewards(
        policy,
        tokenizer,
        prompts,
        before,
        after,
        domain="chat",
        customization=Customization(mode="none"),
        weak_instruction=EVAL_WEAK_INSTRUCTION,
    )
    diff = heldout_reward["after"] - heldout_reward["before"]
    # The training reward itself on the held-out prompts: did what was learned generalize beyond
    # the training prompts? (Not an independent check — the held-out reward above is that.)
    training_reward = _before_after_rewards(policy, tokenizer, prompts, before, after, customization=customization)
    figures = {
        "heldout_density_ratio": {
            "before": _mean_se(heldout_reward["before"]),
            "after": _mean_se(heldout_reward["after"]),
            "paired_difference": _mean_se(diff),
            "after_better_fraction": float(np.mean(diff > 0)),
        },
        "training_reward_on_heldout_prompts": {
            "before": _mean_se(training_reward["before"]),
            "after": _mean_se(training_reward["after"]),
            "paired_difference": _mean_se(training_reward["after"] - training_reward["before"]),
        },
        "avg_length_chars": {"before": _mean_se([len(r) for r in before]), "after": _mean_se([len(r) for r in after])},
    }
    judge_name = "none"
    if evaluation.judge:
        from alignax.evaluate.judges.local import LocalModelJudge

        judge = LocalModelJudge(_BucketedForward(policy), tokenizer)
        judge_name = f"{config.model} (starting model) as AlpacaEval-style pairwise judge, both orders"
        wins = []
        for prompt, b, a in zip(prompts, before, after):
            # preference in [1, 2]: 2 means output_2 preferred; average the two presentation orders.
            p_after_second = judge.judge_pair(instruction=prompt, output_1=b, output_2=a).preference - 1.0
            p_after_first = 2.0 - judge.judge_pair(instruction=prompt, output_1=a, output_2=b).preference
            wins.append(0.5 * (p_after_second + p_after_first))
        figures["judge_winrate_after_vs_before"] = _mean_se(wins)
    stage_seconds["score_heldout"] = time.time() - t0

    mean_diff, se_diff = figures["heldout_density_ratio"]["paired_difference"]
    if math.isfinite(se_diff) and mean_diff > 2 * se_diff:
        verdict = (
            f"REAL EFFECT: the tuned model's held-out reward is higher by {mean_diff:.2f} +- {se_diff:.2f} (> 2 SE)"
        )
    elif math.isfinite(se_diff) and mean_diff < -2 * se_diff:
        verdict = f"WORSE: the tuned model's held-out reward is lower by {-mean_diff:.2f} +- {se_diff:.2f}"
    else:
        verdict = f"NO CLEAR EFFECT: held-out reward difference {mean_diff:.2f} +- {se_diff:.2f} is within 2 SE"

    train_diff, train_se = figures["training_reward_on_heldout_prompts"]["paired_difference"]
    verdict += (
        f"; the training reward itself rose by {train_diff:.2f} +- {train_se:.2f} on the held-out prompts "
        "(generalization of what was learned, not an independent check)"
    )
    summary = {
        "model": config.model,
        "verdict": verdict,
        "figures": figures,
        "heldout_reward": "density ratio, same model, no domain customization, weak persona: " + EVAL_WEAK_INSTRUCTION,
        "training_reward": f"density ratio, same model, customization={ann.customization}, the CDR weak instruction",
        "judge": judge_name,
        "annotation": annotation,
        "train": train_summary,
        "stage_seconds": stage_seconds,
        "wall_seconds": time.time() - started,
    }
    _write_report(workdir, summary, heldout_reward)
    return summary


def _write_report(workdir: str, summary: dict, heldout_reward: dict) -> None:
    figures = summary["figures"]
    rows = [
        (
            "held-out density ratio (mean +- SE)",
            figures["heldout_density_ratio"]["before"],
            figures["heldout_density_ratio"]["after"],
        ),
        (
            "training reward on held-out prompts",
            figures["training_reward_on_heldout_prompts"]["before"],
            figures["training_reward_on_heldout_prompts"]["after"],
        ),
        ("response length, chars", figures["avg_length_chars"]["before"], figures["avg_length_chars"]["after"]),
    ]
    lines = ["| metric | starting model | tuned model |", "|---|---|---|"]
    for name, (b, bse), (a, ase) in rows:
        lines.append(f"| {name} | {b:.2f} +- {bse:.2f} | {a:.2f} +- {ase:.2f} |")
    diff, diff_se = figures["heldout_density_ratio"]["paired_difference"]
    lines.append(f"| held-out reward: paired difference (tuned - start) | | {diff:.2f} +- {diff_se:.2f} |")
    tdiff, tdiff_se = figures["training_reward_on_heldout_prompts"]["paired_difference"]
    lines.append(f"| training reward: paired difference (tuned - start) | | {tdiff:.2f} +- {tdiff_se:.2f} |")
    if "judge_winrate_after_vs_before" in figures:
        w, wse = figures["judge_winrate_after_vs_before"]
        lines.append(f"| judge win rate of tuned vs start | 0.50 | {w:.3f} +- {wse:.3f} |")
    table = "\n".join(lines)
    times = ", ".join(f"{k} {v:.0f}s" for k, v in summary["stage_seconds"].items())
    report = (
        f"# CDR -> SimPO demo on {summary['model']}\n\n{table}\n\n**{summary['verdict']}**\n\n"
        f"Held-out reward: {summary['heldout_reward']}\n\nJudge: {summary['judge']}\n\n"
        f"Stage times: {times}; total {summary['wall_seconds']:.0f}s\n"
    )
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    print("\n" + table + "\n\n" + summary["verdict"] + f"\nstage times: {times}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    bins = np.histogram_bin_edges(np.concatenate([heldout_reward["before"], heldout_reward["after"]]), bins=15)
    axes[0].hist(heldout_reward["before"], bins=bins, alpha=0.6, label="starting model")
    axes[0].hist(heldout_reward["after"], bins=bins, alpha=0.6, label="tuned (SimPO on CDR pairs)")
    axes[0].set_title("held-out density-ratio reward")
    axes[0].legend()
    diff = heldout_reward["after"] - heldout_reward["before"]
    axes[1].bar(range(len(diff)), np.sort(diff))
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_title("per-prompt difference (tuned - start), sorted")
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "demo.png"), dpi=100)
    plt.close(fig)


def main_fn(config, workdir):
    return pipeline(config, workdir)


if __name__ == "__main__":
    run("configs/cdr_simpo.py:cpu", main_fn=main_fn)
