"""Every paper preset of every config (configs/*.py `PRESETS`, all but `tiny` and `cpu`) builds and is
checked offline, without weights or downloads:

  * the config validates (alignax/train/validate.py `check_config`);
  * the model's shapes come from the checkpoint's declared architecture alone
    (alignax/models/presets.py `PAPER_CHECKPOINTS`, `jax.eval_shape`): the parameter count equals
    the closed form of that architecture and the published size of the model;
  * the mesh has the preset's declared device count (configs/base.py PAPER_DEVICES, 8 fake CPU
    devices here), and the FSDP-sharded parameters, optimizer state and reference fit a device;
  * the data loader reads the declared schema (configs/paper_data.py): one record in the data set's
    published format, written to a file of the preset's path name, goes through the run's own
    reading and tokenization (alignax.train.feed.load_split) and carries the loss's data inputs;
    on-policy presets read their prompt file and train on what their build stage writes.
"""

import copy
import functools
import importlib
import json
import math
import pathlib

import numpy as np
import pytest

from alignax.models import presets as model_presets
from alignax.train import feed as feed_lib
from alignax.train import validate
from configs import base, paper_data

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOT_PAPER = ("tiny", "cpu")


def _paper_presets() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO_ROOT / "configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        for name in sorted(getattr(module, "PRESETS", {})):
            if name not in NOT_PAPER:
                found.append((path.stem, name))
    return found


PAPER_PRESETS = _paper_presets()
IDS = [f"{stem}:{name}" for stem, name in PAPER_PRESETS]

# Published parameter counts (model cards / config.json arithmetic of the released checkpoints).
PUBLISHED_PARAMS = {
    "mistral-7b": 7_241_732_096,
    "mistral-7b-instruct-v0.2": 7_241_732_096,
    "llama-3-8b": 8_030_261_248,
    "llama-2-13b": 13_015_864_320,
    "llama-7b-alpacafarm": 6_738_415_616 + 2 * 4096,  # LLaMA-7B plus one [PAD] row in embedding and head
}


def _config(stem, name):
    return importlib.import_module(f"configs.{stem}").get_config(name)


def _closed_form_params(cfg) -> int:
    """Embedding, per layer q/k/v/o + gated MLP + two norms, final norm, untied head."""
    d, kv = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
    q = cfg.num_attention_heads * cfg.head_dim
    layer = d * q + 2 * d * kv + q * d + 3 * d * cfg.intermediate_size + 2 * d
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * d
    return cfg.vocab_size * d + cfg.num_hidden_layers * layer + d + head


def _param_leaves(abstract) -> list:
    """The abstract parameters (jax.ShapeDtypeStruct), in the order of `nnx.state(model, nnx.Param)`."""
    import jax
    from flax import nnx

    def is_variable(x):
        return isinstance(x, nnx.Variable)

    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param), is_leaf=is_variable)
    return [x.get_value() if hasattr(x, "get_value") else x.value if is_variable(x) else x for x in leaves]


def _abstract_model(config):
    return _abstract_model_of(config.model, config.dtype, config.remat)


@functools.lru_cache(maxsize=None)
def _abstract_model_of(checkpoint: str, dtype: str, remat: bool):
    from flax import nnx

    from alignax.models import registry

    cfg = model_presets.architecture_config(checkpoint, dtype=dtype, remat=remat)
    model_class = registry.family_of(cfg).model_class
    return cfg, nnx.eval_shape(lambda: model_class(cfg, rngs=nnx.Rngs(0)))


def test_every_config_with_a_paper_preset_is_found():
    stems = {stem for stem, _ in PAPER_PRESETS}
    # The seed papers' trainers and loops: none may lose its paper preset silently.
    assert stems >= {
        "cut",
        "dno",
        "dpo",
        "expert_iteration",
        "inpo",
        "ipo",
        "iterative_dpo",
        "kto",
        "orpo",
        "reward_model",
        "sft",
        "simpo",
        "soft",
        "sppo",
    }


@pytest.mark.parametrize("stem,name", PAPER_PRESETS, ids=IDS)
def test_preset_validates_and_names_a_declared_checkpoint(stem, name):
    config = _config(stem, name)
    validate.check_config(config)
    assert not config.random_init.enabled and config.dtype == "bfloat16"
    assert config.model in model_presets.PAPER_CHECKPOINTS, f"{config.model!r} has no declared architecture"
    assert 0 < config.optimizer.learning_rate <= 5e-4  # a fine-tuning rate, not a default left behind
    if "iterate" not in config:  # on-policy loops derive total_steps from their records each iteration
        assert config.total_steps >= 100


@pytest.mark.parametrize("stem", sorted({stem for stem, _ in PAPER_PRESETS}))
def test_config_docstring_says_where_the_checkpoint_comes_from(stem):
    module = importlib.import_module(f"configs.{stem}")
    doc = module.__doc__
    models = {module.get_config(name).model for s, name in PAPER_PRESETS if s == stem}
    if any("/" in m for m in models):  # a hub id: resolved through the cache, cached or downloadable
        assert "huggingface_hub" in doc and ("downloadable" in doc or "cached" in doc), stem
    assert "paper_data.py" in doc, f"configs/{stem}.py does not say where its data files come from"


@pytest.mark.parametrize("stem,name", PAPER_PRESETS, ids=IDS)
def test_model_shapes_from_the_architecture_alone(stem, name):
    import jax

    config = _config(stem, name)
    cfg, abstract = _abstract_model(config)
    leaves = _param_leaves(abstract)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)  # no array was allocated
    count = sum(math.prod(x.shape) for x in leaves)
    assert count == _closed_form_params(cfg)
    assert count == PUBLISHED_PARAMS[model_presets.PAPER_CHECKPOINTS[config.model]]
    assert config.data.max_length <= cfg.max_position_embeddings
    exits = config.loss.hparams.to_dict().get("exit_layers")
    if exits:
        assert all(1 <= layer <= cfg.num_hidden_layers for layer in exits)
        assert max(exits) == cfg.num_hidden_layers  # the full model is one of the sub-models


@pytest.mark.parametrize("stem,name", PAPER_PRESETS, ids=IDS)
def test_mesh_fits_the_declared_devices(stem, name):
    import jax

    from alignax.models import sharding
    from alignax.train import modeling

    config = _config(stem, name)
    assert config.mesh.num_devices == base.PAPER_DEVICES
    assert len(jax.devices()) >= base.PAPER_DEVICES, "tests/conftest.py asks for 8 fake CPU devices"
    mesh = modeling.make_mesh(config.mesh)
    assert mesh.devices.size == base.PAPER_DEVICES and mesh.shape["fsdp"] == base.PAPER_DEVICES
    assert config.batch_size % config.grad_accum_steps == 0

    _, abstract = _abstract_model(config)
    shardings = sharding.param_shardings(abstract, mesh)
    state = _param_leaves(abstract)
    per_device = 0
    for leaf, spec in zip(state, jax.tree.leaves(shardings)):
        shard_shape = spec.shard_shape(leaf.shape)
        per_device += math.prod(shard_shape) * np.dtype("float32").itemsize  # parameters stored in float32
    trained = 1 if config.lora.rank else 3  # parameters, plus AdamW's two moments when all of them train
    reference = 1 if validate.uses_reference(config) else 0
    gigabytes = per_device * (trained + reference) / 2**30
    # Half the device for parameters and optimizer state; the rest is left to activations (remat).
    assert gigabytes < base.PAPER_DEVICE_MEMORY_GB / 2, f"{gigabytes:.1f} GB per device"
    replicated_bytes = sum(math.prod(x.shape) for x in state) * 4 * (trained + reference) / 2**30
    assert gigabytes < replicated_bytes / 4  # the big matrices really are split over the chips


# ------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def tokenizer():
    from alignax.train.modeling import load_tokenizer

    return load_tokenizer(base.SMOLLM2)


def _write(tmp_path, source: str, records) -> str:
    path = tmp_path / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _check_split(config, tokenizer, split: str, expected: int):
    tokenized = feed_lib.load_split(config, tokenizer, split=split)
    assert len(tokenized.examples) == expected
    for example in tokenized.examples:
        assert all(int(np.sum(seq.loss_mask)) > 0 for seq in example.sequences)
    source = config.data.train if split == "train" else config.data.eval
    feed_lib.check_fields(tokenized, validate.data_inputs(config), source=source, loss_name=config.loss.name)


def _scored(k: int) -> list[dict]:
    """Two scored prompts as the on-policy score stage writes them (alignax/iterate/score.py)."""
    out = []
    for i in range(2):
        scores = [float(j) for j in range(k)]
        win = np.array([[0.5 if a == b else float(a > b) for b in range(k)] for a in range(k)])
        out.append(
            {
                "id": f"p{i}",
                "prompt": f"Name a prime number above {10 * i}.",
                "responses": [f"Answer {j}: {11 + 10 * i + j}." for j in range(k)],
                "scores": scores,
                "win_probs": win.mean(axis=1).tolist(),
                "win_matrix": win.tolist(),
            }
        )
    return out


@pytest.mark.parametrize("stem,name", PAPER_PRESETS, ids=IDS)
def test_data_loader_accepts_the_declared_schema(stem, name, tokenizer, tmp_path):
    config = _config(stem, name)
    if "iterate" in config:
        from alignax.iterate import build, learn
        from alignax.iterate.prompts import load_prompts

        it = config.iterate
        declared = paper_data.DATASETS[it.prompts]
        assert declared.task == "prompts"
        prompts = load_prompts(_write(tmp_path, it.prompts, [declared.example, declared.example]))
        assert [p["prompt"] for p in prompts] == [declared.example["prompt"]] * 2
        records = build.build(it.method, _scored(it.num_samples), it)
        assert len(records) == 2
        if it.reference == "initial":  # from iteration 2 on, π_ref's log-probs ride in the records
            records = [dict(r, ref_chosen_logps=-5.0, ref_rejected_logps=-7.0) for r in records]
        data = _write(tmp_path, "iter_2/build/train.jsonl", records)
        trained = learn.train_config(config, data_path=data, start_model="", num_records=len(records))
        validate.check_config(trained)
        _check_split(trained, tokenizer, "train", 2)
        return
    task = feed_lib._TASK_OF_METHOD[config.method]
    for split in ("train", "eval"):
        source = config.data[split]
        if not source:
            continue
        assert source in paper_data.DATASETS, f"{source} is not declared in configs/paper_data.py"
        declared = paper_data.DATASETS[source]
        assert declared.task == task, f"{source} holds {declared.task} records; method {config.method} reads {task}"
        records = [declared.example, declared.example]
        if task == "judgment":  # CUT: a positive (score >= 7) and a negative example
            records = [dict(declared.example, score=9.0), declared.example]
        local = copy.deepcopy(config)
        local.data[split] = _write(tmp_path, source, records)
        _check_split(local, tokenizer, split, 2)


def test_declared_step_counts_follow_the_row_counts():
    config = _config("simpo", "mistral7b")
    rows = paper_data.DATASETS[config.data.train].rows
    assert config.total_steps == math.ceil(rows / config.batch_size)
    with pytest.raises(ValueError, match="no row count"):
        paper_data.steps("alpaca_farm_unlabeled.jsonl", 128)


def test_unknown_checkpoint_names_the_table():
    with pytest.raises(KeyError, match="PAPER_CHECKPOINTS"):
        model_presets.architecture_config("someone/unknown-7b")
