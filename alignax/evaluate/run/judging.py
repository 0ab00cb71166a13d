"""The judge of an evaluation run: `--judge local:<model>` or `--judge http:<base_url>,model=<name>`.

A judge here is a chat backend (`complete(messages, **params)` and `complete_many(batch, **params)`
returning objects with `.text` and `.top_logprobs`, as `alignax.evaluate.judges.http.ChatCompletion`):

- http: `alignax.evaluate.judges.http.OpenAIChatClient` against any OpenAI-compatible server
  (concurrent, cached on disk under the workdir, retried with backoff). Options after the URL:
  `model=<name>` (required), `api_key_env=<VAR>` (default OPENAI_API_KEY), `concurrency=<n>`.
  A loopback server without a key (e.g. `python -m alignax.serve`) gets the placeholder key
  "EMPTY" when the variable is unset, as vLLM's clients do.
- local: `LocalChatBackend`, the KV-cache sampler (alignax/sample/sampler.py) over a local model,
  batched. Verdict-probability judging (AlpacaEval's weighted judge) uses
  `alignax.evaluate.judges.local.LocalModelJudge` on the same model instead.

`judge_to_jsonl` runs judge calls in chunks and appends each chunk's verdicts to a JSONL file keyed
by item id, so a killed run resumes where it stopped, losing and duplicating nothing.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from alignax import files

LOCAL_PLACEHOLDER_KEY_ENV = "ALIGNAX_LOCAL_JUDGE_KEY"


@dataclasses.dataclass(frozen=True)
class JudgeSpec:
    """A parsed `--judge` value."""

    kind: str  # "local" | "http"
    model: str  # local: a preset, .gguf or HF folder; http: the served model name
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8

    @property
    def name(self) -> str:
        """A file-name-safe judge name (the model's base name)."""
        return safe_name(self.model)


def safe_name(source: str) -> str:
    """A model name usable in file names: the base name of a path, [A-Za-z0-9._-] only."""
    text = os.path.basename(os.path.normpath(source)) or source
    if text == "export":  # a training run's export/: name it after the run directory
        text = os.path.basename(os.path.dirname(os.path.normpath(os.path.abspath(source)))) + "-export"
    text = re.sub(r"\.gguf$", "", text)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def parse_judge(text: str) -> JudgeSpec:
    """`local:<model>` or `http:<base_url>,model=<name>[,api_key_env=VAR][,concurrency=N]`."""
    kind, _, rest = text.partition(":")
    if kind == "local" and rest:
        return JudgeSpec("local", rest)
    if kind != "http" or not rest:
        raise ValueError(f"--judge {text!r}: expected local:<model> or http:<base_url>,model=<name>")
    base_url, *options = rest.split(",")
    fields: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("model", "api_key_env", "concurrency"):
            raise ValueError(f"--judge {text!r}: unknown option {option!r} (model=, api_key_env=, concurrency=)")
        fields[key] = value
    if not fields.get("model"):
        raise ValueError(f"--judge {text!r}: an http judge needs model=<name>")
    concurrency = int(fields.get("concurrency", 8))
    if concurrency < 1:
        raise ValueError(f"--judge {text!r}: concurrency must be >= 1")
    return JudgeSpec(
        "http",
        fields["model"],
        base_url=base_url,
        api_key_env=fields.get("api_key_env", "OPENAI_API_KEY"),
        concurrency=concurrency,
    )


@dataclasses.dataclass(frozen=True)
class VerdictForcing:
    """How a protocol's judge writes its verdict: `prefix` + one of `labels` + `suffix`.

    Only a local judge can be forced: we hold its weights, so the log-probability of each allowed
    verdict after the prefix is one teacher-forced pass away (an HTTP judge returns text only).
    """

    prefix: str
    labels: tuple[str, ...]
    suffix: str = "]]"
    stops: tuple[str, ...] = ()  # stop strings that end a judgment at a verdict the parser reads alike


@dataclasses.dataclass(frozen=True)
class ForcedVerdict:
    label: str
    logprobs: dict[str, float]  # log p(label + suffix | prompt, judgment, prefix) per allowed label


# FastChat llm_judge: single-v1 asks for "Rating: [[5]]"; common.py reads the first [[x]] (1-10).
# The first "[[N]]" decides the rating, so stopping there changes nothing.
MT_BENCH_FORCING = VerdictForcing(
    "\n\nRating: [[", tuple(str(n) for n in range(1, 11)), stops=tuple(f"[[{n}]]" for n in range(1, 11))
)
# arena-hard-auto v0.1 judge_config.yaml: "My final verdict is ...: [[A>B]]", five labels. Not
# stopped at a label: v0.1's get_score counts a judgment with two different labels as unparsable.
ARENA_HARD_FORCING = VerdictForcing("\n\nMy final verdict is: [[", ("A>>B", "A>B", "A=B", "B>A", "B>>A"))


def forcing_enabled(ctx: Any) -> bool:
    """Verdict forcing applies to local judges only, and only when the run asks for it (default)."""
    return bool(ctx.judge is not None and ctx.judge.kind == "local" and ctx.force_verdict)


@dataclasses.dataclass(frozen=True)
class LocalCompletion:
    """What the prompt-based judges read from a completion (as http.ChatCompletion)."""

    text: str
    top_logprobs: list = dataclasses.field(default_factory=list)
    cached: bool = False


class LocalChatBackend:
    """A chat backend over a local model: greedy or sampled text from the KV-cache sampler.

    `complete_many` renders every conversation with the model's chat template and generates them
    in batches of `batch_size` (alignax.sample.sampler.generate); params follow the OpenAI names
    (`max_tokens`, `temperature`, `top_p`); logprob requests are ignored (no top-k list here).

    A protocol's `max_tokens` is written for a judge with a long context (GPT-4); a local model has
    `cfg.max_position_embeddings` positions. The new tokens are capped so that the longest prompt
    of the call plus its completion fits (a prompt that alone fills the context is an error), and
    `capped` counts the calls that were cut (`evaluate run` names it in the report). `stop` (a list
    of strings, OpenAI's name) ends a row at the first one, which is kept in the text.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8, seed: int = 0):
        self.model, self.tokenizer, self.batch_size, self.seed = model, tokenizer, batch_size, seed
        self.capped: list[tuple[int, int]] = []  # (asked, given) max new tokens of each capped call

    def context(self) -> int | None:
        cfg = getattr(self.model, "cfg", None)
        return getattr(cfg, "max_position_embeddings", None)

    def complete_many(self, batch: Sequence[Sequence[dict[str, str]]], **params: Any) -> list[LocalCompletion]:
        from alignax.sample.sampler import encode_prompt

        if not batch:
            return []
        conversations = [list(m) for m in batch]
        lengths = [len(encode_prompt(self.tokenizer, m)) for m in conversations]
        asked = max_new = int(params.get("max_tokens", 1024))
        context = self.context()
        if context is not None:
            if max(lengths) >= context:
                raise ValueError(
                    f"local judge: a judge prompt is {max(lengths)} tokens, the judge model's context is {context}"
                )
            max_new = min(asked, context - max(lengths))
            if max_new < asked:
                self.capped.append((asked, max_new))
        out: list[LocalCompletion | None] = [None] * len(conversations)
        for group in self._groups(lengths, max_new):
            gens = self._generate([conversations[i] for i in group], group, max_new, params)
            for i, g in zip(group, gens):
                out[i] = LocalCompletion(self._with_stop(g, params.get("stop") or ()))
        return out

    # Rows x prompt bucket x (bucket + new tokens) per sampler call: the prefill's attention
    # scores grow with this product; 8 judge prompts of a 4096 bucket with 2048 new tokens asked
    # for 37 GB on the 24 GB CPU machine (MT-Bench turn 2, 2026-11-30). 2^25 is 4 x 2048 x 4096.
    PREFILL_BUDGET = 1 << 25

    def _groups(self, lengths: Sequence[int], max_new: int) -> list[list[int]]:
        """Indices of the prompts, longest first, cut into sampler batches of at most `batch_size`
        rows whose rows x bucket x (bucket + max_new) stays within PREFILL_BUDGET (one row at least)."""
        from alignax.sample.sampler import bucket_length

        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            if groups:
                bucket = bucket_length(lengths[groups[-1][0]])
                fits = (len(groups[-1]) + 1) * bucket * (bucket + max_new) <= self.PREFILL_BUDGET
                if fits and len(groups[-1]) < self.batch_size:
                    groups[-1].append(i)
                    continue
            groups.append([i])
        return groups

    def _generate(self, conversations, keys: Sequence[int], max_new: int, params: dict[str, Any]):
        from alignax.sample.sampler import generate

        return generate(
            self.model,
            self.tokenizer,
            conversations,
            max_new_tokens=max_new,
            temperature=float(params.get("temperature", 0.0)),
            top_p=float(params.get("top_p", 1.0)),
            batch_size=len(conversations),
            seed=self.seed,
            prompt_keys=list(keys),
            stop_strings=tuple(params.get("stop") or ()),
        )

    def _with_stop(self, generation: Any, stops: Sequence[str]) -> str:
        """The text through the stop string that ended it (an OpenAI server drops it; the verdict
        parsers need it, so it is put back from the row's tokens)."""
        if generation.finish_reason != "stop":
            return generation.text
        full = self.tokenizer.decode(generation.token_ids, skip_special_tokens=True)
        hits = [(full.find(s), s) for s in stops if full.find(s) >= 0]
        if not hits:
            return generation.text
        index, stop = min(hits)
        return full[: index + len(stop)]

    def complete(self, messages: Sequence[dict[str, str]], **params: Any) -> LocalCompletion:
        return self.complete_many([messages], **params)[0]

    def force_verdict(
        self, messages: Sequence[dict[str, str]], judgment: str, forcing: VerdictForcing
    ) -> ForcedVerdict:
        """The verdict label the judge finds most likely after `judgment` + the protocol's prefix.

        The context is the judge prompt (chat template, generation prompt on), the judge's own
        tokens and `forcing.prefix`; each label + `forcing.suffix` is scored by teacher forcing
        (alignax/evaluate/judges/local.py `continuation_logprobs`). A judgment that filled the
        context loses its last tokens, so that the prefix and the longest label fit.
        """
        from alignax.evaluate.judges.local import continuation_logprobs

        prompt = list(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))
        written = list(self.tokenizer.encode(judgment, add_special_tokens=False)) if judgment else []
        prefix = list(self.tokenizer.encode(forcing.prefix, add_special_tokens=False))
        labels = [list(self.tokenizer.encode(v + forcing.suffix, add_special_tokens=False)) for v in forcing.labels]
        context = self.context()
        if context is not None:
            room = context - len(prompt) - len(prefix) - max(len(t) for t in labels)
            if room < 0:
                raise ValueError(f"local judge: the judge prompt ({len(prompt)} tokens) leaves no room for a verdict")
            written = written[:room]
        logps = continuation_logprobs(self.model, prompt + written + prefix, labels)
        scores = {v: float(lp) for v, lp in zip(forcing.labels, logps)}
        return ForcedVerdict(max(forcing.labels, key=scores.__getitem__), scores)


class BucketedLocalJudge:
    """AlpacaEval's verdict-token judge on a local model (alignax/evaluate/judges/local.py
    `LocalModelJudge`), with its forward pass jitted once per prompt bucket.

    `LocalModelJudge` runs the model eagerly on the exact prompt: every new prompt length
    re-traces every op, and it computes the head over all T positions (a [T, 49152] matmul) for
    one distribution. Here the prompt is left-padded to the next power of two (the padding is
    segment 0, which no real token attends to; positions restart at 0 in the real segment, so the
    distribution is the unpadded prompt's) and only the last position's logits are computed.
    The verdicts, prompt and preference are LocalModelJudge's own.
    """

    def __init__(self, model: Any, tokenizer: Any):
        from flax import nnx

        from alignax.evaluate.judges.local import LocalModelJudge

        self._judge = LocalModelJudge(model, tokenizer)
        self._judge.next_token_probs = self.next_token_probs  # the one step that differs
        self._graphdef, self._state = nnx.split(model)

    def next_token_probs(self, messages: Sequence[dict[str, str]]):
        import jax
        import jax.numpy as jnp
        import numpy as np

        from alignax.sample.sampler import bucket_length

        ids = self._judge.prompt_ids(messages)
        length = bucket_length(ids.size)
        padded, segments = np.zeros((1, length), np.int32), np.zeros((1, length), np.int32)
        padded[0, length - ids.size :], segments[0, length - ids.size :] = ids, 1
        logits = _last_logits(self._graphdef, self._state, jnp.asarray(padded), jnp.asarray(segments))
        probs = np.asarray(jax.nn.softmax(jnp.asarray(logits[0], jnp.float32)), dtype=np.float64)
        if not np.all(np.isfinite(probs)):
            raise ValueError("model produced non-finite next-token probabilities")
        return probs

    def judge_pair(self, *, instruction: str, output_1: str, output_2: str):
        return self._judge.judge_pair(instruction=instruction, output_1=output_1, output_2=output_2)


def _last_logits(graphdef, state, ids, segment_ids):
    """logits [B, V] of the last position (jitted per graphdef and padded length)."""
    return _last_logits_jit(graphdef, state, ids, segment_ids)


def _make_last_logits_jit():
    import functools

    import jax
    from flax import nnx

    @functools.partial(jax.jit, static_argnames=("graphdef",))
    def last_logits(graphdef, state, ids, segment_ids):
        return nnx.merge(graphdef, state)(ids, segment_ids=segment_ids, last_only=True)[:, -1]

    return last_logits


class _LazyJit:
    """Builds the jitted function on first use (this module imports without jax)."""

    def __init__(self, make):
        self._make, self._fn = make, None

    def __call__(self, *args, **kwargs):
        if self._fn is None:
            self._fn = self._make()
        return self._fn(*args, **kwargs)


_last_logits_jit = _LazyJit(_make_last_logits_jit)


def make_http_backend(spec: JudgeSpec, cache_dir: os.PathLike | str):
    """The OpenAI-compatible client of an http judge, caching under `cache_dir`."""
    from alignax.evaluate.judges.http import OpenAIChatClient, _is_loopback

    api_key_env = spec.api_key_env
    host = urllib.parse.urlsplit(spec.base_url).hostname or ""
    if not os.environ.get(api_key_env) and _is_loopback(host):
        os.environ.setdefault(LOCAL_PLACEHOLDER_KEY_ENV, "EMPTY")
        api_key_env = LOCAL_PLACEHOLDER_KEY_ENV
    return OpenAIChatClient(
        base_url=spec.base_url,
        model=spec.model,
        api_key_env=api_key_env,
        cache_dir=cache_dir,
        max_concurrency=spec.concurrency,
    )


def judge_backend(ctx: Any):
    """The chat backend of a run's judge (`ctx`: a RunContext): local sampler or HTTP client."""
    if ctx.judge.kind == "local":
        model, tokenizer = ctx.load(ctx.judge.model)
        return LocalChatBackend(model, tokenizer, batch_size=ctx.batch_size, seed=ctx.seed)
    return make_http_backend(ctx.judge, ctx.directory("judge_cache"))


def chunk_size(ctx: Any) -> int:
    """Items judged between two appends: a batch locally, enough to fill the HTTP concurrency."""
    return ctx.batch_size if ctx.judge.kind == "local" else max(ctx.batch_size, ctx.judge.concurrency)


def run_concurrently(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int) -> list[Any]:
    """[fn(item) for item in items], `workers` at a time (a thread pool), in order."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def judge_to_jsonl(
    items: Sequence[dict[str, Any]],
    path: os.PathLike | str,
    judge_chunk: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    *,
    chunk_size: int,
    label: str = "judge",
) -> list[dict[str, Any]]:
    """Judges items {"id", ...} not yet in `path`, `chunk_size` at a time, appending each chunk.

    `judge_chunk(items)` returns one record per item (each with the item's "id"). Returns every
    record of the file for `items`, in the order of `items`.
    """
    ids = [str(item["id"]) for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate judge item ids")
    files.repair_tail(path)
    done = {str(r["id"]): r for r in files.read_jsonl(path)}
    todo = [item for item in items if str(item["id"]) not in done]
    for start in range(0, len(todo), max(1, chunk_size)):
        chunk = todo[start : start + chunk_size]
        records = judge_chunk(chunk)
        if [str(r["id"]) for r in records] != [str(i["id"]) for i in chunk]:
            raise RuntimeError(f"{label}: the judge returned records for other items than asked")
        files.append_jsonl(path, records)
        done.update({str(r["id"]): r for r in records})
        print(f"{label}: {len(items) - len(todo) + start + len(chunk)}/{len(items)}", file=sys.stderr, flush=True)
    return [done[i] for i in ids]


def force_missing(
    ctx: Any,
    backend: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    texts: Sequence[str],
    parsed: Sequence[bool],
    forcing: VerdictForcing,
) -> list[ForcedVerdict | None]:
    """A forced verdict for each judgment the protocol's parser could not read (None elsewhere,
    and everywhere when forcing is off or the judge is an HTTP one)."""
    if not forcing_enabled(ctx):
        return [None] * len(texts)
    return [
        None if ok else backend.force_verdict(conv, text, forcing)
        for conv, text, ok in zip(conversations, texts, parsed)
    ]


def forced_record(forced: ForcedVerdict | None) -> dict[str, Any]:
    """The fields a judgment record carries about forcing: verdict_forced, and the label log-probs."""
    if forced is None:
        return {"verdict_forced": False}
    return {"verdict_forced": True, "forced_logprobs": {k: round(v, 4) for k, v in forced.logprobs.items()}}


def forced_deviation(n_forced: int, n_total: int, *, protocol: str) -> str | None:
    """The report's deviation line for forced verdicts (None when there were none)."""
    if not n_forced:
        return None
    return (
        f"{n_forced} of {n_total} verdicts forced from the judge's log-probabilities (no parsable verdict in "
        f"the judgment; the verdict prefix was appended and the most likely allowed verdict taken, "
        f"--no-force-verdict turns this off); {protocol} would count them as unparsable"
    )
