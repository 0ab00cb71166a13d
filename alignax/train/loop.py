"""The training loop: read it top to bottom.

  mesh -> model (+ frozen reference) -> sharded TrainState -> resume -> for each step:
  next batch -> jitted train step -> metrics (jsonl, TensorBoard, progress bar) -> eval hook ->
  checkpoint -> ... -> export to a Hugging Face folder and plot the curves.

Files a run writes (DESIGN.md): DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/<step>/,
DIR/export/ (HF folder; with LoRA the adapters merged in, and DIR/export_adapter/ the PEFT
adapter folder), DIR/curves.png, DIR/config.json, DIR/summary.json.
Running again with the same DIR resumes where it stopped (data position and RNG included).
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alignax.models import lora
from alignax.train import checkpoint as ckpt_lib
from alignax.train import feed as feed_lib
from alignax.train import interrupt, modeling, rundir, validate
from alignax.train import metrics as metrics_lib
from alignax.train import reference as reference_lib
from alignax.train.methods import get_method
from alignax.train.optim import make_optimizer
from alignax.train.step import TrainState, make_eval_step, make_train_step

BATCH_AXES = ("data", "fsdp")


class TrainingInterrupted(Exception):
    """Ctrl-C during training: `step` is the last finished step, `checkpoint_step` the newest
    checkpoint kept (None if none yet). Rerunning the same command resumes from it."""

    def __init__(self, step: int, checkpoint_step: int | None):
        super().__init__(f"interrupted after step {step}")
        self.step, self.checkpoint_step = step, checkpoint_step


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """Multi-host: jax.distributed from config (or JAX's own env detection on TPU/SLURM)."""
    dist = config.distributed
    if dist.num_processes > 1 and not jax.distributed.is_initialized():
        jax.distributed.initialize(
            coordinator_address=dist.coordinator_address,
            num_processes=dist.num_processes,
            process_id=dist.process_id,
        )


def _state_shardings(mesh, param_shardings, optimizer, params) -> TrainState:
    replicated = NamedSharding(mesh, P())
    opt_shapes = jax.eval_shape(optimizer.init, params)
    # Optimizer moments mirror the params' layout; scalars (Adam's count) are replicated.
    opt_shardings = optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        opt_shapes,
        param_shardings,
        transform_non_params=lambda _: replicated,
    )
    return TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings, rng=replicated)


def _global_batch(local_batch: dict[str, np.ndarray], mesh, grad_accum_steps: int) -> dict[str, jax.Array]:
    """Local [k*rows, ...] numpy arrays -> global [k, rows, ...] arrays sharded over data x fsdp."""
    out = {}
    for name, array in local_batch.items():
        array = array.reshape(grad_accum_steps, array.shape[0] // grad_accum_steps, *array.shape[1:])
        sharding = NamedSharding(mesh, P(None, BATCH_AXES))
        out[name] = jax.make_array_from_process_local_data(sharding, array)
    return out


def _eval_batch(local_batch, mesh):
    sharding = NamedSharding(mesh, P(BATCH_AXES))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def precompute_reference(config: ml_collections.ConfigDict, model, splits: dict) -> None:
    """`reference: precomputed`: attach the starting model's log-probs to every split's examples."""
    if jax.process_count() > 1:
        raise validate.ConfigError("config.reference: precomputed runs on one process for now; use on_the_fly")
    for tokenized in splits.values():
        values = reference_lib.reference_logps(
            model,
            tokenized,
            batch_size=config.eval_batch_size,
            max_length=config.data.max_length,
            length_multiple=config.data.length_multiple,
            chunk_size=config.logprob_chunk_size,
            vocab_chunk_size=config.logprob_vocab_chunk_size or None,
            cache_dir=config.reference_cache_dir or reference_lib.default_cache_dir(),
        )
        reference_lib.attach(tokenized, values, config.method)


def _swap_in_export(write, out_dir: str) -> None:
    staging = rundir.staging_dir(out_dir)
    write(staging)
    kept = rundir.swap_in(staging, out_dir)
    if kept:
        print(f"The previous export was kept as {kept}.")


def export_run(config: ml_collections.ConfigDict, model, tokenizer, workdir: str, lora_spec) -> None:
    """DIR/export: the final model as an HF folder (with LoRA: W + s A B folded into the kernels);
    with LoRA also DIR/export_adapter: the adapters as a PEFT folder (alignax/models/lora.py)."""
    if lora_spec is None:
        _swap_in_export(lambda out: modeling.export_hf(model, tokenizer, out), os.path.join(workdir, "export"))
        return
    merged = lora.merge_adapters(model)
    _swap_in_export(lambda out: modeling.export_hf(merged, tokenizer, out), os.path.join(workdir, "export"))
    _swap_in_export(
        lambda out: lora.save_peft_adapter(model, out, lora_spec, base_model_name_or_path=config.model),
        os.path.join(workdir, "export_adapter"),
    )


# Jitted init/train steps of earlier train() calls in this process, by everything their programs
# depend on. The on-policy loop (alignax/iterate) calls train() once per iteration with the same
# graph and settings: a fresh jax.jit there would trace and compile the step again every iteration.
_JITTED: dict = {}
_JITTED_KEEP = 4


def _jit_key(config, hparams, graphdef, ref_graphdef, base_reference, state_shardings):
    """What the step's program depends on besides its arguments (None: not hashable, do not reuse).
    The optimizer block and total_steps fix the schedule, whose constants are baked into the step."""
    leaves, treedef = jax.tree.flatten(state_shardings)
    key = (
        graphdef,
        ref_graphdef,
        base_reference,
        config.method,
        config.loss.name,
        config.get("dtype"),
        config.get("remat"),
        json.dumps(hparams, sort_keys=True, default=repr),
        config.optimizer.to_json(sort_keys=True),
        config.total_steps,
        config.batch_size,
        config.grad_accum_steps,
        config.eval_batch_size,
        config.logprob_chunk_size,
        config.logprob_vocab_chunk_size,
        config.nan_policy,
        json.dumps(config.get("lora").to_dict() if config.get("lora") else None, sort_keys=True, default=repr),
        treedef,
        tuple(leaves),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _reused_jit(key, build):
    if key[1] is None:
        return build()
    if key not in _JITTED:
        while len(_JITTED) >= _JITTED_KEEP:
            _JITTED.pop(next(iter(_JITTED)))
        _JITTED[key] = build()
    return _JITTED[key]


def _make_feeds(config, tokenizer, rows_multiple: int, *, starting_model):
    """The train feed and (with `data.eval`) the eval feed. With `reference: precomputed` the
    reference log-probs are computed first from `starting_model()` (the STARTING weights: state is
    not restored yet), so a resumed run finds them cached."""
    required_fields = validate.data_inputs(config)
    splits = {"train": feed_lib.load_split(config, tokenizer, split="train")}
    if config.data.eval:
        splits["eval"] = feed_lib.load_split(config, tokenizer, split="eval")
    if config.reference == "precomputed":
        precompute_reference(config, starting_model(), splits)
    feeds = {
        split: feed_lib.make_feed(
            config,
            tokenizer,
            split=split,
            rows_multiple=rows_multiple,
            required_fields=required_fields,
            tokenized=tokenized,
        )
        for split, tokenized in splits.items()
    }
    return feeds["train"], feeds.get("eval")


def _export(config, workdir, graphdef, params, non_trainable, tokenizer, lora_spec) -> None:
    """Exports the final model (`config.export`) and plots the curves. Every process joins the
    gather of a multi-host run (shards on other hosts are not addressable); process 0 writes."""
    if config.export and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)
        if lora_spec is not None:  # the base weights are sharded too
            non_trainable = multihost_utils.process_allgather(non_trainable, tiled=True)
    if jax.process_index() == 0:
        if config.export:
            export_run(config, nnx.merge(graphdef, params, non_trainable), tokenizer, workdir, lora_spec)
        metrics_lib.plot_curves(workdir)


def _nonfinite_message(metrics, step: int) -> str | None:
    """None for a finite step; else which metrics were non-finite (the step's update was skipped
    inside the jitted step). Reads one device scalar unless the step went wrong."""
    if float(metrics["nonfinite"]) == 0:
        return None
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)] or ["grad_norm"]
    return f"non-finite {', '.join(bad)} at step {step} (loss={values['loss']}, grad_norm={values['grad_norm']})"


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run (or resume) one experiment; returns the summary it also writes to DIR/summary.json."""
    wall_start = time.time()
    hparams = validate.check_config(config)
    maybe_initialize_distributed(config)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0

    # --- mesh, model, reference -------------------------------------------------------------------
    mesh = modeling.make_mesh(config.mesh)
    # Rows of a local micro-batch must split evenly over the batch shards (data x fsdp) that this
    # process's devices hold; the feed pads with empty rows (segment 0: no loss, no tokens).
    rows_multiple = max(1, mesh.shape["data"] * mesh.shape["fsdp"] // jax.process_count())
    print(
        f"process {jax.process_index()} of {jax.process_count()}, {jax.local_device_count()} local devices, "
        f"mesh {dict(mesh.shape)}"
    )
    model, tokenizer = modeling.build_model(config, mesh)
    method_fn = get_method(config.method)
    lora_spec = lora.spec_from_config(config.get("lora"))
    ref_graphdef, ref_params = None, None
    # With LoRA the reference is the base model under the adapters (switched off in the step).
    base_reference = lora_spec is not None and validate.uses_reference(config)
    if validate.uses_reference(config) and not base_reference:
        # The frozen reference is the starting policy: a copy of its weights, never updated.
        ref_graphdef, ref_params = nnx.split(model)
        ref_params = jax.tree.map(jnp.copy, ref_params)
    # Trainable: every parameter, or with LoRA only the adapters (the base weights are `frozen`).
    trainable = lora.TRAINABLE if lora_spec is not None else nnx.Param
    graphdef, params, non_trainable = nnx.split(model, trainable, ...)

    # --- optimizer and sharded state ----------------------------------------------------------------
    optimizer, schedule = make_optimizer(config.optimizer, config.total_steps)
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    state_shardings = _state_shardings(mesh, param_shardings, optimizer, params)
    rng = jax.random.key_data(jax.random.PRNGKey(config.seed))

    def init_state(params, rng):
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), rng=rng)

    # Created directly in its sharded layout: optimizer moments never exist whole on one device.
    jit_key = _jit_key(config, hparams, graphdef, ref_graphdef, base_reference, state_shardings)
    init_jit = _reused_jit(("init_state", jit_key), lambda: jax.jit(init_state, out_shardings=state_shardings))
    state = init_jit(params, rng)
    del params

    # --- data ------------------------------------------------------------------------------------------
    train_feed, eval_feed = _make_feeds(
        config, tokenizer, rows_multiple, starting_model=lambda: nnx.merge(graphdef, state.params, non_trainable)
    )

    # --- resume ----------------------------------------------------------------------------------------
    checkpointer = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints, async_save=config.async_checkpointing
    )
    start_step = 0
    restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state))
    if restored is not None:
        start_step, state, data_state = restored
        train_feed.set_state(data_state["train"])
        print(f"Resumed from {checkpointer.directory}/{start_step} (data position {data_state['train']}).")
    if start_step >= config.total_steps:
        print(f"Already at step {start_step} of {config.total_steps}: nothing to train.")
    # Only now, with the config valid and the checkpoint restored, does the run touch its files.
    if is_main:
        changes = rundir.record_config(workdir, config.to_json(indent=2))
        if changes and restored is not None:
            print(f"Resuming with a changed config ({len(changes)} keys; previous in config_history/):")
            for change in changes:
                print(f"  {change}")
    writer = metrics_lib.MetricsWriter(workdir, resume_step=start_step, enabled=is_main)

    # --- the jitted step -----------------------------------------------------------------------------
    method_kwargs = dict(
        loss_name=config.loss.name,
        hparams=hparams,
        chunk_size=config.logprob_chunk_size,
        vocab_chunk_size=config.logprob_vocab_chunk_size or None,
        batch_size=config.batch_size // config.grad_accum_steps,
        num_sides=train_feed.num_sides,
    )
    step_fn = _reused_jit(
        ("train_step", jit_key, train_feed.num_sides),
        lambda: jax.jit(
            make_train_step(
                graphdef=graphdef,
                non_trainable=non_trainable,
                method_fn=method_fn,
                method_kwargs=method_kwargs,
                optimizer=optimizer,
                schedule=schedule,
                grad_accum_steps=config.grad_accum_steps,
                nan_policy=config.nan_policy,
                ref_graphdef=ref_graphdef,
                base_reference=base_reference,
            ),
            donate_argnums=(0,),
            out_shardings=(state_shardings, NamedSharding(mesh, P())),
        ),
    )
    eval_step = jax.jit(
        make_eval_step(
            graphdef=graphdef,
            non_trainable=non_trainable,
            method_fn=method_fn,
            method_kwargs=dict(method_kwargs, batch_size=config.eval_batch_size),
            ref_graphdef=ref_graphdef,
            base_reference=base_reference,
        )
    )

    def run_eval(step: int) -> dict:
        eval_feed.reset()
        totals: dict[str, list] = {}
        for _ in range(config.eval_batches):
            local = next(eval_feed)
            metrics = jax.device_get(eval_step(state.params, _eval_batch(local, mesh), ref_params, non_trainable))
            for key, value in metrics.items():
                totals.setdefault(key, []).append(float(value))
        result = {f"eval/{k}": float(np.mean(v)) for k, v in totals.items()}
        writer.write(step, result)
        return result

    # --- the loop --------------------------------------------------------------------------------------
    progress = metrics_lib.Progress(total=config.total_steps, initial=start_step, enabled=is_main)
    last_metrics: dict = {}
    eval_results: dict = {}
    done = start_step
    last_checkpoint = start_step if restored is not None else None
    with interrupt.deferred_sigint() as stop:
        try:
            for step in range(start_step, config.total_steps):
                if stop.requested:  # a Ctrl-C during the previous step, its checkpoint written
                    raise KeyboardInterrupt
                local_batch = next(train_feed)
                batch = _global_batch(local_batch, mesh, config.grad_accum_steps)
                state, metrics = step_fn(state, batch, ref_params, non_trainable)
                done = step + 1
                # The guard reads one scalar every step (not only on log steps): a non-finite step must
                # stop the run before anything after it is checkpointed.
                message = _nonfinite_message(metrics, done)
                if message:
                    if config.nan_policy == "stop":
                        checkpointer.close()
                        writer.close()
                        raise FloatingPointError(
                            f"{message}; stopped before updating. The last good checkpoint is "
                            f"kept. Set --config.nan_policy=skip to skip such steps."
                        )
                    print(f"WARNING: {message}; update skipped (params and optimizer state unchanged).")
                if done % config.log_every == 0 or done == config.total_steps:
                    last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    writer.write(done, last_metrics)
                    progress.update(done, last_metrics)
                if eval_feed is not None and config.eval_every and done % config.eval_every == 0:
                    eval_results = run_eval(done)
                    progress.note(eval_results)
                if done % config.checkpoint_every == 0 or done == config.total_steps:
                    checkpointer.save(done, state, {"train": train_feed.get_state()})
                    last_checkpoint = done
        except KeyboardInterrupt:
            # Ctrl-C: finish or keep the checkpoints already written (an async save completes in
            # close()), close the logs, and let the entry point print how to resume.
            progress.close()
            checkpointer.close()
            writer.close()
            raise TrainingInterrupted(done, last_checkpoint) from None
    progress.close()
    checkpointer.close()
    if eval_feed is not None and config.eval_batches and not eval_results:
        eval_results = run_eval(config.total_steps)

    # --- export, curves, summary ------------------------------------------------------------------------
    summary = {"final_step": config.total_steps, "train": last_metrics, "eval": eval_results}
    _export(config, workdir, graphdef, state.params, non_trainable, tokenizer, lora_spec)
    if is_main:
        summary["wall_time_s"] = time.time() - wall_start
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    writer.close()
    return summary
