"""The on-policy loop: for t = 1..T, sample -> score -> build -> train -> evaluate (alignax/iterate).

    summary = run(config, workdir)

DIR/iter_0/evaluate holds the starting model's held-out evaluation; DIR/iter_<t>/<stage>/ each
stage of iteration t (stages.py: resumable, DONE.json when complete); DIR/summary.json and
DIR/metric.png are rewritten after every iteration. Rerunning the same command resumes.
"""

from __future__ import annotations

import os
import time

from alignax.annotate import oracles
from alignax.iterate import evaluate as evaluate_lib
from alignax.iterate import learn, report, stages
from alignax.iterate import prompts as prompts_lib
from alignax.iterate.sample import read_samples, sample_stage
from alignax.iterate.score import read_scored, score_stage


class Policies:
    """The starting model (built once) and each iterate's export, loaded only when a stage needs it."""

    def __init__(self, config):
        from alignax.train import modeling

        self.config, self._initial, self._loaded = config, None, {}
        self.mesh = modeling.make_mesh(config.mesh)

    def initial(self):
        if self._initial is None:
            from alignax.train import modeling

            self._initial = modeling.build_model(self.config, self.mesh)
        return self._initial

    def get(self, source: str):
        """ "" = the starting model; else an export folder (only the newest is kept in memory), placed on
        the same mesh as the starting model, so the sampler's compiled functions are reused."""
        if not source:
            return self.initial()
        if source not in self._loaded:
            from alignax.models import load

            self._loaded = {source: load(source, dtype=self.config.dtype, mesh=self.mesh)}
        return self._loaded[source]


def run(config, workdir: str) -> dict:
    it = config.iterate
    started = time.time()
    os.makedirs(workdir, exist_ok=True)
    pool = prompts_lib.load_prompts(it.prompts)
    heldout = prompts_lib.load_prompts(it.heldout, it.eval.num_prompts)
    policies = Policies(config)
    model, tokenizer = policies.initial()
    oracle = oracles.build(
        it.oracle.name,
        it.oracle,
        oracles.Context(policy=model, tokenizer=tokenizer, cache_dir=workdir, dtype=config.dtype),
    )
    context = {"initial_model": lambda: policies.initial()[0], "tokenizer": tokenizer}

    def evaluate(iteration, source, baseline):
        return stages.run_stage(
            workdir,
            iteration,
            "evaluate",
            lambda d: evaluate_lib.evaluate_stage(
                *policies.get(source),
                heldout,
                d,
                options=it.eval,
                iteration=iteration,
                oracle=oracle,
                baseline=baseline,
                context=context,
            ),
        )

    base = evaluate(0, "", None)
    rows = [{"iteration": 0, "metrics": base["metrics"], "wall_seconds": base["seconds"]}]
    summary = _summary(config, rows)
    source = ""
    for t in range(1, it.iterations + 1):
        row, source = _iteration(config, workdir, t, source, pool, policies, oracle, evaluate, base["responses"])
        rows.append(row)
        print(report.line(row, summary["metric"]))
        summary = _summary(config, rows, wall=time.time() - started)
        report.write_summary(workdir, summary)
        report.plot(workdir, summary)
    report.write_summary(workdir, summary)
    report.plot(workdir, summary)
    return summary


def _iteration(config, workdir, t, source, pool, policies, oracle, evaluate, baseline):
    it = config.iterate
    t0 = time.time()
    prompts = prompts_lib.iteration_split(pool, t, it.prompts_per_iteration)
    sampled = stages.run_stage(
        workdir,
        t,
        "sample",
        lambda d: sample_stage(*policies.get(source), prompts, d, options=it, seed=it.seed + 1000 * t, iteration=t),
    )
    scored = stages.run_stage(
        workdir,
        t,
        "score",
        lambda d: score_stage(
            oracle,
            prompts,
            read_samples(stages.stage_dir(workdir, t, "sample"), prompts),
            d,
            chunk_size=it.score_chunk,
            iteration=t,
        ),
    )
    reference_fn = None
    if it.reference == "initial" and t > 1:
        reference_fn = learn.initial_logps_fn(config, policies.initial()[0], os.path.join(workdir, "reference_cache"))
    built = stages.run_stage(
        workdir,
        t,
        "build",
        lambda d: learn.build_stage(
            read_scored(stages.stage_dir(workdir, t, "score"), prompts),
            d,
            config=config,
            iteration=t,
            reference_fn=reference_fn,
        ),
    )
    data_path = os.path.join(stages.stage_dir(workdir, t, "build"), learn.FILE)
    trained = stages.run_stage(
        workdir,
        t,
        "train",
        lambda d: learn.train_stage(
            d, config=config, data_path=data_path, start_model=source, num_records=built["num_records"]
        ),
    )
    evaluated = evaluate(t, trained["export"], baseline)
    row = {
        "iteration": t,
        "metrics": evaluated["metrics"],
        "tokens_sampled": sampled["tokens_sampled"],
        "num_records": built["num_records"],
        "mean_oracle_score": scored["mean_score"],
        "train": trained["train"],
        "wall_seconds": time.time() - t0,
        "stage_seconds": {
            name: r["seconds"]
            for name, r in (
                ("sample", sampled),
                ("score", scored),
                ("build", built),
                ("train", trained),
                ("evaluate", evaluated),
            )
        },
    }
    return row, trained["export"]


def _summary(config, rows, wall: float = 0.0) -> dict:
    it = config.iterate
    return {
        "method": it.method,
        "oracle": it.oracle.name,
        "metric": it.eval.metrics.split(",")[0].strip(),
        "model": config.model,
        "loss": config.loss.name,
        "iterations": rows,
        "wall_seconds": wall,
    }


def main(config, workdir: str) -> dict:
    """Entry-point body (experiments/<method>.py): run, then say where the outputs are."""
    summary = run(config, workdir)
    print(f"done: {len(summary['iterations']) - 1} iterations; {workdir}/summary.json, {workdir}/metric.png")
    return summary
