"""Where a SmolLM2 DPO train step's time goes: forward+loss, value_and_grad, the AdamW update and the
whole step, each jitted alone, median of 3 calls after a warm-up, on benchmarks.train_step's first
DPO batch (8 built-in pairs, packed, precomputed reference).

    python -m benchmarks.train_step_profile
"""

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import benchmarks.train_step as bt
from alignax.train import feed as feed_lib
from alignax.train import loop, modeling, validate
from alignax.train.methods import get_method
from alignax.train.optim import make_optimizer
from alignax.train.step import TrainState, count_target_tokens, make_train_step
from configs import dpo

c = dpo.get_config("cpu")
path = "/tmp/alignax_bench_train_step/profile_dpo.jsonl"
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in bt._records("dpo", 16))
c.update_from_flattened_dict(
    {
        "data.train": path,
        "data.eval": "",
        "data.shuffle": False,
        "batch_size": 8,
        "mesh.num_devices": 1,
        "reference": "precomputed",
        "reference_cache_dir": "/tmp/alignax_bench_train_step/refcache",
    }
)
hparams = validate.check_config(c)
mesh = modeling.make_mesh(c.mesh)
model, tok = modeling.build_model(c, mesh)
graphdef, params, nt = nnx.split(model, nnx.Param, ...)
splits = {"train": feed_lib.load_split(c, tok, split="train")}
loop.precompute_reference(c, model, splits)
feed = feed_lib.make_feed(
    c, tok, split="train", rows_multiple=1, required_fields=validate.data_inputs(c), tokenized=splits["train"]
)
batch = loop._global_batch(next(feed), mesh, 1)
micro = jax.tree.map(lambda x: x[0], batch)
method_fn = get_method(c.method)
kw = dict(
    loss_name=c.loss.name,
    hparams=hparams,
    chunk_size=c.logprob_chunk_size,
    vocab_chunk_size=c.logprob_vocab_chunk_size or None,
    batch_size=8,
    num_sides=feed.num_sides,
)
num_tokens = count_target_tokens(batch)


def loss(p, mb):
    return method_fn(nnx.merge(graphdef, p, nt), mb, ref_model=None, num_tokens=num_tokens, **kw)[0]


opt, sched = make_optimizer(c.optimizer, 1000)
progs = {
    "forward + loss": (jax.jit(loss), lambda: (params, micro)),
    "value_and_grad": (jax.jit(jax.value_and_grad(loss)), lambda: (params, micro)),
}
grads = jax.jit(jax.grad(loss))(params, micro)
ostate = jax.jit(opt.init)(params)


def update(g, s, p):
    u, s2 = opt.update(g, s, p)
    return optax.apply_updates(p, u), s2


progs["AdamW update + norm"] = (
    jax.jit(lambda g, s, p: (update(g, s, p), optax.global_norm(g))),
    lambda: (grads, ostate, params),
)
step = jax.jit(
    make_train_step(
        graphdef=graphdef,
        non_trainable=nt,
        method_fn=method_fn,
        method_kwargs=kw,
        optimizer=opt,
        schedule=sched,
        grad_accum_steps=1,
    )
)


def step_args():
    st = TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=ostate, rng=jax.random.key_data(jax.random.PRNGKey(0))
    )
    return (st, batch, None, nt)


progs["whole train step"] = (step, step_args)
out = {}
for name, (fn, args) in progs.items():
    jax.block_until_ready(fn(*args()))
    ts = []
    for _ in range(3):
        a = args()
        t = time.perf_counter()
        jax.block_until_ready(fn(*a))
        ts.append(time.perf_counter() - t)
    out[name] = round(statistics.median(ts), 3)
    print(name, out[name], flush=True)
print(
    "RESULT",
    json.dumps({"shape": list(batch["input_ids"].shape), "real_tokens": int((batch["segment_ids"] > 0).sum()), **out}),
)
