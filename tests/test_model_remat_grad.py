"""Remat inside the train step's pattern: jit(scan(grad(f(merge(graphdef, params))))) over micro-batches.

nnx.remat broke there (TraceContextError: "Cannot mutate Param from a different trace level")."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama


def _loss_and_grads(cfg):
    model = Llama(cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    micro_batches = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 2, 12)), jnp.int32)

    ref_graphdef, ref_state = nnx.split(model)  # a frozen reference, merged inside the loss (DPO)

    def loss(params, ids):
        logits = nnx.merge(graphdef, params, rest)(ids)
        ref_logits = jax.lax.stop_gradient(nnx.merge(ref_graphdef, ref_state)(ids))
        nll = jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, ids[..., None], -1)[..., 0])
        return nll + 1e-3 * jnp.mean((logits - ref_logits) ** 2)

    @jax.jit
    def loss_and_grads(params):
        def accumulate(carry, ids):  # as alignax.train.step: grads accumulated in a lax.scan
            value, grads = jax.value_and_grad(loss)(params, ids)
            return jax.tree.map(jnp.add, carry, grads), value

        grads, values = jax.lax.scan(accumulate, jax.tree.map(jnp.zeros_like, params), micro_batches)
        return jnp.sum(values), grads

    return loss_and_grads(params)


def test_remat_gives_the_same_loss_and_gradients_under_jit_grad_of_merged_params():
    # Scanned layers initialize their stacked params differently: compare like with like.
    for scan_layers in (False, True):
        cfg = LlamaConfig.tiny(scan_layers=scan_layers)
        plain_loss, plain_grads = _loss_and_grads(cfg)
        loss, grads = _loss_and_grads(dataclasses.replace(cfg, remat=True))
        np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, plain_grads)
