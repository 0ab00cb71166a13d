"""OpenAI-compatible server (alignax.serve): the official `openai` client against a real server on
127.0.0.1 with a tiny random Llama. Outputs are checked against `alignax.sample.generate` (an
independent path: lock-step batch, shared cache index), streaming against non-streaming, and the
batcher's counters show that concurrent requests share decode steps."""

import http.client
import json
import logging
import threading
import time
import urllib.parse

import numpy as np
import openai
import pytest
from flax import nnx
from helpers import CharTokenizer

from alignax.models.config import LlamaConfig
from alignax.models.llama import Llama
from alignax.sample import generate
from alignax.serve import engine, make_server

API_KEY = "test-key-123"
MODEL = "tiny-llama"
MAX_BATCH, MAX_CONTEXT = 4, 128
CLIENT_TIMEOUT_S = 120


PROMPTS = ["hi", "tell me a story about a cat", "2+2=?"]


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer()


@pytest.fixture(scope="module")
def model():
    return Llama(LlamaConfig.tiny(), rngs=nnx.Rngs(0))  # per-layer cache buffers, as load_for_serving loads


@pytest.fixture(scope="module")
def scanned_model():
    return Llama(LlamaConfig.tiny(scan_layers=True), rngs=nnx.Rngs(0))  # the stacked cache: also served


@pytest.fixture(scope="module")
def server(model, tok):
    srv = make_server(
        model, tok, model_name=MODEL, port=0, max_batch=MAX_BATCH, max_context=MAX_CONTEXT, api_key=API_KEY
    )
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.close()
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S)


def chat(client, prompt, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], **kw)


@pytest.fixture(scope="module")
def greedy_reference(model, tok):
    """generate()'s greedy continuations of PROMPTS (chat template, EOS = the tokenizer's)."""
    return generate(model, tok, PROMPTS, max_new_tokens=16, temperature=0.0, batch_size=4)


def _finish(generation):
    return {"eos": "stop", "stop": "stop", "length": "length"}[generation.finish_reason]


# ------------------------------------------------------------------------------------------------
# Outputs


def test_models_endpoint_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_greedy_equals_generate(client, greedy_reference):
    for prompt, ref in zip(PROMPTS, greedy_reference):
        r = chat(client, prompt, max_tokens=16, temperature=0, logprobs=True)
        choice = r.choices[0]
        assert choice.message.content == ref.text
        assert choice.finish_reason == _finish(ref)
        assert r.usage.completion_tokens == ref.num_tokens
        assert r.usage.prompt_tokens == ref.prompt_num_tokens
        assert r.usage.total_tokens == ref.num_tokens + ref.prompt_num_tokens
        # Log-probs of the text tokens (EOS excluded) equal generate's raw-model log-probs.
        n_text = len(ref.token_ids) - (ref.finish_reason == "eos")
        got = [c.logprob for c in choice.logprobs.content]
        np.testing.assert_allclose(got, ref.logprobs[:n_text], atol=2e-4)
        assert "".join(c.token for c in choice.logprobs.content) == ref.text


def test_completion_greedy_equals_generate(client, model, tok):
    prompts = ["Once upon a time", "abc"]
    ref = generate(model, tok, prompts, max_new_tokens=12, temperature=0.0, batch_size=2, chat_template=False)
    r = client.completions.create(model=MODEL, prompt=prompts, max_tokens=12, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.text for c in r.choices] == [g.text for g in ref]
    assert [c.finish_reason for c in r.choices] == [_finish(g) for g in ref]
    assert r.usage.prompt_tokens == sum(len(p) for p in prompts)
    assert r.usage.completion_tokens == sum(g.num_tokens for g in ref)
    ids = client.completions.create(model=MODEL, prompt=[ord(c) for c in prompts[1]], max_tokens=12, temperature=0)
    assert ids.choices[0].text == ref[1].text  # a token-id prompt is the same prompt


def test_seeded_n2_reproducible_and_equal_to_generate(client, model, tok):
    kw = dict(max_tokens=12, temperature=1.0, top_p=0.9, n=2, seed=7, extra_body={"ignore_eos": True})
    a = chat(client, PROMPTS[1], **kw)
    b = chat(client, PROMPTS[1], **kw)
    texts = [c.message.content for c in a.choices]
    assert [c.index for c in a.choices] == [0, 1]
    assert texts == [c.message.content for c in b.choices]
    assert texts[0] != texts[1]
    assert a.usage.completion_tokens == 24
    # The row keys are generate()'s: fold_in(fold_in(PRNGKey(seed), prompt index 0), sample index).
    ref = generate(
        model, tok, [PROMPTS[1]], max_new_tokens=12, temperature=1.0, top_p=0.9, num_samples=2, seed=7, eos_token_ids=[]
    )
    assert texts == [g.text for g in ref]
    other = chat(client, PROMPTS[1], **dict(kw, seed=8))
    assert [c.message.content for c in other.choices] != texts


def _check_top_logprobs(entries, k, greedy):
    for e in entries:
        tops = [t.logprob for t in e.top_logprobs]
        assert len(tops) == k
        assert tops == sorted(tops, reverse=True)
        assert e.logprob <= 0 and all(t <= 0 for t in tops)
        assert np.sum(np.exp(tops)) <= 1 + 1e-5
        assert e.logprob <= tops[0] + 1e-6
        if greedy:  # the chosen token is the best one
            assert e.token == e.top_logprobs[0].token and e.logprob == pytest.approx(tops[0], abs=1e-6)


def test_logprobs_and_top_logprobs_consistent(client):
    r = chat(
        client, PROMPTS[0], max_tokens=10, temperature=0, logprobs=True, top_logprobs=5, extra_body={"ignore_eos": True}
    )
    _check_top_logprobs(r.choices[0].logprobs.content, 5, greedy=True)
    r = chat(
        client,
        PROMPTS[0],
        max_tokens=10,
        temperature=1.5,
        seed=3,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},
    )
    _check_top_logprobs(r.choices[0].logprobs.content, 3, greedy=False)
    c = client.completions.create(model=MODEL, prompt="xyz", max_tokens=6, temperature=0, logprobs=3)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert "".join(lp.tokens) == c.choices[0].text
    for logprob, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0 and len(top) <= 3 and max(top.values()) == pytest.approx(logprob, abs=1e-6)
    assert lp.text_offset == list(np.cumsum([0] + [len(t) for t in lp.tokens[:-1]]))


def _pick_stop(text):
    """A two-character piece of text whose first occurrence starts at index >= 3."""
    return next(text[i : i + 2] for i in range(3, len(text) - 2) if text.find(text[i : i + 2]) == i)


def test_stop_strings_cut_the_text(client):
    kw = dict(max_tokens=20, temperature=0, extra_body={"ignore_eos": True})
    full = chat(client, PROMPTS[1], **kw).choices[0].message.content
    stop = _pick_stop(full)
    r = chat(client, PROMPTS[1], stop=["@@never", stop], **kw)
    cut = full.find(stop)
    assert r.choices[0].message.content == full[:cut]
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == cut + len(stop)  # through the token that completed it


def test_stream_chunks_concatenate_to_the_non_streamed_text(client):
    kw = dict(max_tokens=20, temperature=0, extra_body={"ignore_eos": True})
    full = chat(client, PROMPTS[2], **kw).choices[0].message.content
    for stop in ([], [_pick_stop(full)]):
        plain = chat(client, PROMPTS[2], stop=stop, **kw)
        chunks = list(chat(client, PROMPTS[2], stop=stop, stream=True, stream_options={"include_usage": True}, **kw))
        pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(pieces) == plain.choices[0].message.content
        assert finishes == [plain.choices[0].finish_reason]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    ckw = dict(model=MODEL, prompt="Once upon", max_tokens=10, temperature=0, n=2, seed=1)
    plain = client.completions.create(**ckw)
    streamed = ["", ""]
    for chunk in client.completions.create(stream=True, **ckw):
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == [c.text for c in plain.choices]


# ------------------------------------------------------------------------------------------------
# Continuous batching


def test_concurrent_requests_complete_and_share_decode_steps(client, server, greedy_reference):
    before = server.batcher.metrics.to_json()
    results, errors, start = {}, [], threading.Barrier(8)
    prompts = [f"question number {i}" + "?" * i for i in range(8)]

    def worker(i):
        try:
            start.wait(timeout=30)
            r = chat(client, prompts[i], max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
            results[i] = r.choices[0].message.content
        except Exception as e:  # reported below, with the thread's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_S)
    assert not errors and len(results) == 8
    after = server.batcher.metrics.to_json()
    steps = after["decode_steps"] - before["decode_steps"]
    assert after["max_requests_in_step"] >= 2 and after["max_rows_in_step"] == MAX_BATCH
    assert steps < 8 * 24 / 2  # 192 tokens in far fewer steps: rows shared steps
    # A row's output does not depend on what shared its steps.
    for i in (0, 5):
        alone = chat(client, prompts[i], max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
        assert alone.choices[0].message.content == results[i]


def test_concurrent_streams_each_equal_their_own_non_streamed_text(client, server):
    """Four streaming chat requests at once (the openai client, SSE): each stream's chunks add up to
    what the same request returns unstreamed, and the streams shared decode steps."""
    prompts = [f"stream {i}: " + "tell me a story about a cat"[: 6 + 5 * i] for i in range(4)]
    kw = {"max_tokens": 24, "temperature": 0, "extra_body": {"ignore_eos": True}}
    server.batcher.metrics.max_requests_in_step = 0
    texts, finishes, errors, start = {}, {}, [], threading.Barrier(4)

    def worker(i):
        try:
            start.wait(timeout=30)
            parts = []
            for chunk in chat(client, prompts[i], stream=True, **kw):
                for c in chunk.choices:
                    parts.append(c.delta.content or "")
                    if c.finish_reason:
                        finishes[i] = c.finish_reason
            texts[i] = "".join(parts)
        except Exception as e:  # reported below, with the thread's index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT_S)
    assert not errors and len(texts) == 4
    assert server.batcher.metrics.max_requests_in_step >= 2
    for i in range(4):
        plain = chat(client, prompts[i], **kw)
        assert texts[i] == plain.choices[0].message.content
        assert finishes[i] == plain.choices[0].finish_reason == "length"


def test_a_request_joins_a_running_batch(client, server):
    """A short request sent while a long one decodes shares its steps and finishes first."""
    server.batcher.metrics.max_requests_in_step = 0  # only these two requests from here on
    arrivals, started = [], threading.Event()

    def consume_long():
        stream = chat(client, PROMPTS[0], max_tokens=100, temperature=0, stream=True, extra_body={"ignore_eos": True})
        for chunk in stream:
            arrivals.append((time.monotonic(), chunk))
            if len(arrivals) == 5:
                started.set()

    reader = threading.Thread(target=consume_long)
    reader.start()
    assert started.wait(timeout=CLIENT_TIMEOUT_S)
    short = chat(client, PROMPTS[2], max_tokens=1, temperature=0, extra_body={"ignore_eos": True})
    short_done = time.monotonic()
    reader.join(timeout=CLIENT_TIMEOUT_S)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 1
    assert arrivals[-1][1].choices[0].finish_reason == "length"
    assert sum(1 for t, c in arrivals if c.choices[0].delta.content) == 100
    assert server.batcher.metrics.max_requests_in_step == 2
    assert arrivals[-1][0] > short_done  # no one-request-at-a-time loop: the long one was still running


def test_engine_compaction_keeps_rows_exact(model, tok):
    _check_compaction_keeps_rows_exact(model, tok)


def _check_compaction_keeps_rows_exact(model, tok):
    """Rows that start at different columns, a freed row, then compaction: every row's greedy tokens
    still equal generate()'s (the engine API directly, same shapes as the server's)."""
    graphdef, state = nnx.split(model)
    slots = engine.init_slots(model, MAX_BATCH, MAX_CONTEXT)
    prompts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) for p in PROMPTS]
    tokens = {0: [], 1: []}

    def admit(slots, slot, prompt, segment):
        bucket = engine.prefill_bucket(len(prompt) - 1, MAX_CONTEXT)
        ids = np.zeros((1, bucket), np.int32)
        ids[0, : len(prompt) - 1] = prompt[:-1]
        targets = np.full((MAX_BATCH,), MAX_BATCH, np.int32)
        targets[0] = slot
        segments = np.zeros((MAX_BATCH,), np.int32)
        segments[0] = segment
        return engine.prefill_into_slots(
            graphdef,
            state,
            slots,
            ids,
            np.int32(len(prompt) - 1),
            targets,
            segments,
            np.int32(1),
            np.int32(prompt[-1]),
            np.zeros((MAX_BATCH, 2), np.uint32),
            np.float32(0.0),
            np.float32(1.0),
        )

    def run(slots, active, steps):
        for _ in range(steps):
            slots, out = engine.decode_step(graphdef, state, slots, active, np.asarray(False), top_n=20)
            for slot in tokens:
                if active[slot]:
                    tokens[slot].append(int(out.tokens[slot]))
        return slots

    slots = admit(slots, 0, prompts[1], segment=1)
    slots = run(slots, np.array([True, False, False, False]), 30)
    slots = admit(slots, 1, prompts[0], segment=2)
    slots = run(slots, np.array([True, True, False, False]), 30)
    only_row_1 = np.array([False, True, False, False])
    assert int(slots.cache["index"]) == len(prompts[1]) - 1 + 60
    slots = engine.compact(slots, only_row_1)  # row 0 finished; row 1 moves to the front
    assert int(slots.cache["index"]) == len(prompts[0]) - 1 + 30
    slots = run(slots, only_row_1, 20)
    ref = generate(model, tok, PROMPTS[:2], max_new_tokens=60, temperature=0.0, eos_token_ids=[], batch_size=2)
    assert tokens[0] == ref[1].token_ids[:60]
    assert tokens[1] == ref[0].token_ids[:50]


def test_few_compiled_programs(server):
    metrics = server.batcher.metrics.to_json()
    assert set(metrics["prefill_buckets"]) <= {16, 32, 64, 128}
    assert engine.decode_step._cache_size() == 1  # one decode program for every mix of requests
    assert engine.compact._cache_size() <= 1
    assert engine.prefill_into_slots._cache_size() == len(metrics["prefill_buckets"])


# ------------------------------------------------------------------------------------------------
# Errors


def _raw(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _assert_error_body(body):
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-17", prompt="hi")


def test_too_many_tokens_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, "hi", max_tokens=MAX_CONTEXT)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x" * MAX_CONTEXT, max_tokens=1)
    assert e.value.code == "context_length_exceeded"


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", -1),
        ("temperature", "hot"),
        ("top_p", 0),
        ("top_p", 1.5),
        ("n", 0),
        ("n", MAX_BATCH + 1),
        ("max_tokens", 0),
        ("max_tokens", "many"),
        ("max_tokens", True),
        ("stop", 5),
        ("stop", ["a"] * 5),
        ("top_logprobs", 21),
        ("seed", 1.5),
        ("stream", "yes"),
        ("presence_penalty", 0.5),
        ("messages", []),
        ("messages", [{"role": "wizard", "content": "hi"}]),
    ],
)
def test_bad_parameters_are_400(server, field, value):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True, field: value}
    status, reply = _raw(
        server,
        "POST",
        "/v1/chat/completions",
        json.dumps(body),
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert status == 400, reply
    _assert_error_body(reply)
    assert reply["error"]["param"].startswith(field)


def test_malformed_json_is_400(server):
    for body in (b"{not json", b'{"model": NaN}', b"\xff\xfe", b"[1, 2]"):
        status, reply = _raw(server, "POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {API_KEY}"})
        assert status == 400
        _assert_error_body(reply)


def test_api_key_required(server):
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.models.list()
    assert e.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": API_KEY + "x"}):
        status, reply = _raw(server, "GET", "/v1/models", headers=headers)
        assert status == 401
        _assert_error_body(reply)
        assert API_KEY not in json.dumps(reply)


def test_unknown_route_is_404(server):
    status, reply = _raw(server, "POST", "/v1/embeddings", b"{}", {"Authorization": f"Bearer {API_KEY}"})
    assert status == 404
    _assert_error_body(reply)


# ------------------------------------------------------------------------------------------------
# The API key is never logged


def _exercise_with_key(url, key, model_name):
    """A good request, a wrong key, and the key in a query string (which must not be logged either)."""
    good = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT_S)
    assert [m.id for m in good.models.list().data] == [model_name]
    reply = good.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": "hi"}], max_tokens=2, temperature=0
    )
    assert reply.choices[0].message.content is not None
    wrong = openai.OpenAI(base_url=url + "/v1", api_key=key + "-wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", f"/v1/models?api_key={key}", headers={"Authorization": f"Bearer {key}"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_api_key_is_never_logged(server, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    _exercise_with_key(server.url, API_KEY, MODEL)
    logged = caplog.text
    out, err = capfd.readouterr()
    assert "GET /v1/models 200" in logged and "GET /v1/models 401" in logged  # the requests were logged...
    assert API_KEY not in logged and API_KEY not in out + err  # ...without the key


def test_cli_binds_loopback_and_never_logs_the_api_key(model, tok, monkeypatch, caplog, capfd):
    """`python -m alignax.serve --api-key KEY` end to end in-process: the model loader is replaced by
    the tiny model; serving stops (as Ctrl-C) after real requests."""
    from alignax.serve import cli, loading
    from alignax.serve import server as server_module

    secret = "sk-cli-secret-4567"
    assert cli.parse_args(["--model", "m"]).host == "127.0.0.1"
    monkeypatch.setattr(loading, "load_for_serving", lambda source, dtype=None: (model, tok))
    serve = server_module.OpenAIServer.serve_forever
    seen = {}

    def serve_then_interrupt(self, poll_interval=0.5):
        loop = threading.Thread(target=serve, args=(self, 0.1), daemon=True)
        loop.start()
        seen["url"] = self.url
        _exercise_with_key(self.url, secret, "tiny")
        raise KeyboardInterrupt  # cli.main closes the server in its finally

    monkeypatch.setattr(server_module.OpenAIServer, "serve_forever", serve_then_interrupt)
    caplog.set_level(logging.DEBUG)
    cli.main(["--model", "tiny", "--port", "0", "--max-batch", "2", "--max-context", "64", "--api-key", secret])
    assert seen["url"].startswith("http://127.0.0.1:")
    out, err = capfd.readouterr()
    assert "serving tiny at http://127.0.0.1:" in caplog.text and "GET /v1/models 401" in caplog.text
    assert secret not in caplog.text and secret not in out + err


def test_engine_decode_step_copies_no_cache_buffer(model):
    # Per-layer buffers are written in place (alignax/serve/loading.py): the compiled step holds no
    # copy of a layer's [B, S, KVH*hd] buffer, and the donated cache comes back as the same buffers.
    import re

    graphdef, state = nnx.split(model)
    slots = engine.init_slots(model, MAX_BATCH, MAX_CONTEXT)
    assert isinstance(slots.cache["k"], tuple) and len(slots.cache["k"]) == model.cfg.num_hidden_layers
    width = model.cfg.num_key_value_heads * model.cfg.head_dim
    assert slots.cache["k"][0].shape == (MAX_BATCH, MAX_CONTEXT, width)
    active = np.ones((MAX_BATCH,), bool)
    compiled = engine.decode_step.lower(graphdef, state, slots, active, np.asarray(False), top_n=20).compile()
    copies = re.findall(rf"f32\[{MAX_BATCH},{MAX_CONTEXT},{width}\]\S* copy\(", compiled.as_text())
    assert not copies, f"{len(copies)} copies of a layer's cache buffer per step"


# The stacked (scanned) cache last: its decode program is a second one, which
# test_few_compiled_programs (one program for the server's model) must not count.


def test_engine_compaction_keeps_rows_exact_with_the_stacked_cache(scanned_model, tok):
    _check_compaction_keeps_rows_exact(scanned_model, tok)


def test_a_scanned_model_serves_the_same_text_as_generate(scanned_model, tok):
    srv = make_server(scanned_model, tok, model_name=MODEL, port=0, max_batch=MAX_BATCH, max_context=MAX_CONTEXT)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT_S)
        ref = generate(scanned_model, tok, PROMPTS[:1], max_new_tokens=16, temperature=0.0, batch_size=1)[0]
        assert chat(client, PROMPTS[0], max_tokens=16, temperature=0).choices[0].message.content == ref.text
    finally:
        srv.close()
        thread.join(timeout=30)
