"""The HTTP side: an OpenAI-compatible API on the standard library's ThreadingHTTPServer.

    server = make_server(model, tokenizer, model_name="smollm2", port=0, max_batch=16)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ...                                          # openai.OpenAI(base_url=server.url + "/v1")
    server.close()

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{id},
GET /health, GET /debug/metrics (the batcher's counters). One thread per connection parses and
validates (tokenizing, rendering the chat template), submits to the Batcher and waits for its
events; it never touches the device. Streams are server-sent events in OpenAI's chunk format,
ended by `data: [DONE]`, on a connection that closes afterwards.

Security: binds 127.0.0.1 unless told otherwise. With an API key every request (health and
metrics included) needs `Authorization: Bearer <key>`, compared in constant time; the key and the
request headers are never logged (the log line is the method, the path without its query, the
status).
"""

from __future__ import annotations

import dataclasses
import hmac
import http.server
import json
import logging
import queue
import time
import urllib.parse
from typing import Any

from alignax.serve import protocol, responses
from alignax.serve.batcher import Batcher
from alignax.serve.sequences import ErrorEvent, Request

_log = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 * 1024 * 1024
EVENT_TIMEOUT_S = 600.0  # the longest wait for the next token (first compiles included)


class OpenAIServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: socketserver's default 5 resets bursts of concurrent clients

    def __init__(self, address, batcher: Batcher, tokenizer, limits: protocol.ServingLimits, api_key: str | None):
        self.batcher, self.tokenizer, self.limits = batcher, tokenizer, limits
        self._api_key = api_key.encode("utf-8") if api_key else None
        self.token_strings = responses.TokenStrings(tokenizer)
        self.created = int(time.time())
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def authorized(self, header: str | None) -> bool:
        if self._api_key is None:
            return True
        given = (header or "").removeprefix("Bearer ").strip().encode("utf-8")
        return hmac.compare_digest(given, self._api_key)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._served = True
        super().serve_forever(poll_interval)

    def close(self) -> None:
        """Stops accepting, fails what is still running, stops the engine thread."""
        if getattr(self, "_served", False):
            self.shutdown()  # waits for serve_forever to return (it would wait forever if it never ran)
        self.server_close()
        self.batcher.stop()


def _reject_nan(token: str):
    raise ValueError(f"{token} is not valid JSON")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds a client may take to send its request
    server: OpenAIServer

    # -- plumbing ----------------------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # replaced by log_request below: never the headers, never the query

    def log_request(self, code="-", size="-"):
        path = urllib.parse.urlsplit(self.path).path
        _log.info("%s %s %s", self.command, path, code)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_error(self, error: protocol.ApiError) -> None:
        self._send_json(error.status, error.body())

    def _check_auth(self) -> bool:
        if self.server.authorized(self.headers.get("Authorization")):
            return True
        self._send_error(
            protocol.ApiError(
                401, "Incorrect or missing API key. Send 'Authorization: Bearer <key>'.", code="invalid_api_key"
            )
        )
        return False

    def _read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise protocol.ApiError(411, "a Content-Length header is required", code="length_required")
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise protocol.ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes", code="body_too_large")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_nan)
        except (UnicodeDecodeError, ValueError) as e:
            raise protocol.ApiError(
                400, f"We could not parse the JSON body of your request: {e}", code="invalid_json"
            ) from e

    # -- routes ------------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 - http.server's naming
        if not self._check_auth():
            return
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        name = self.server.limits.model_name
        card = {
            "id": name,
            "object": "model",
            "created": self.server.created,
            "owned_by": "alignax",
            "max_model_len": self.server.limits.max_context,
        }
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [card]})
        elif path == f"/v1/models/{name}":
            self._send_json(200, card)
        elif path.startswith("/v1/models/"):
            self._send_error(
                protocol.ApiError(
                    404,
                    f"The model `{path[len('/v1/models/') :]}` does not exist",
                    param="model",
                    code="model_not_found",
                )
            )
        elif path == "/health":
            self._send_json(200 if self.server.batcher.alive else 503, {"ok": self.server.batcher.alive})
        elif path == "/debug/metrics":
            self._send_json(200, self.server.batcher.metrics.to_json())
        else:
            self._send_error(protocol.ApiError(404, f"no route GET {path}", code="not_found"))

    def do_POST(self):  # noqa: N802
        if not self._check_auth():
            return
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        parsers = {
            "/v1/chat/completions": ("chat", protocol.parse_chat),
            "/v1/completions": ("completion", protocol.parse_completion),
        }
        try:
            if path not in parsers:
                self.close_connection = True
                raise protocol.ApiError(404, f"no route POST {path}", code="not_found")
            body = self._read_json()
            kind, parse = parsers[path]
            parsed = parse(body, self.server.limits, self.server.tokenizer)
        except protocol.ApiError as e:
            self._send_error(e)
            return
        self._generate(kind, parsed)

    # -- generation --------------------------------------------------------------------------------

    def _events(self, request: Request):
        """Engine events until every choice finished; raises ApiError on an engine error or a stall."""
        pending = len(request.choices)
        while pending:
            try:
                event = request.events.get(timeout=EVENT_TIMEOUT_S)
            except queue.Empty:
                raise protocol.ApiError(504, "generation stalled", type="server_error", code="timeout") from None
            if isinstance(event, ErrorEvent):
                raise protocol.ApiError(503, event.message, type="server_error", code="engine_error")
            pending -= event.finish_reason is not None
            yield event

    def _generate(self, kind: str, parsed: protocol.ParsedRequest) -> None:
        options = dataclasses.replace(parsed.options, top_logprobs=parsed.top_logprobs if parsed.logprobs else 0)
        request = Request(parsed.prompts, options)
        try:
            self.server.batcher.submit(request)
        except RuntimeError as e:
            self._send_error(protocol.ApiError(503, str(e), type="server_error", code="unavailable"))
            return
        try:
            if parsed.options.stream:
                self._stream(kind, parsed, request)
            else:
                states = [responses.ChoiceState() for _ in request.choices]
                for event in self._events(request):
                    states[event.choice].add(event)
                self._send_json(
                    200,
                    responses.final_body(
                        kind,
                        responses.new_id(kind),
                        self.server.limits.model_name,
                        parsed,
                        states,
                        self.server.token_strings,
                    ),
                )
        except protocol.ApiError as e:
            self.server.batcher.cancel(request)
            if not parsed.options.stream:
                self._send_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.server.batcher.cancel(request)  # the client went away: free its slots
        finally:
            request.cancelled.set()  # nothing more will be read; no-op for a finished request

    def _stream(self, kind: str, parsed: protocol.ParsedRequest, request: Request) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        request_id, model = responses.new_id(kind), self.server.limits.model_name
        send = lambda obj: self._sse(json.dumps(obj))
        if kind == "chat":
            send(
                responses.stream_chunk(
                    kind,
                    request_id,
                    model,
                    [
                        {
                            "index": c.index,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        for c in request.choices
                    ],
                )
            )
        states = [responses.ChoiceState() for _ in request.choices]
        try:
            for event in self._events(request):
                states[event.choice].add(event)
                entry = responses.event_choice(kind, event, states[event.choice], parsed, self.server.token_strings)
                if entry is not None:
                    send(responses.stream_chunk(kind, request_id, model, [entry]))
        except protocol.ApiError as e:
            self._sse(json.dumps(e.body()))  # OpenAI's clients raise on an "error" event
            raise
        if parsed.include_usage:
            send(responses.stream_chunk(kind, request_id, model, [], usage=responses.usage(parsed.prompts, states)))
        self._sse("[DONE]")

    def _sse(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode("utf-8"))
        self.wfile.flush()


def make_server(
    model,
    tokenizer,
    *,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 16,
    max_context: int | None = None,
    api_key: str | None = None,
    eos_token_ids=None,
    warmup_prompt_lengths=(),
) -> OpenAIServer:
    """A bound server whose engine thread is running; call serve_forever (any thread), then close().

    max_context: tokens per slot (prompt + completion); default the model's max_position_embeddings
    capped at 2048. port 0 picks a free port (see `server.url`). Either cache layout serves:
    per-layer buffers (the default of `alignax.serve.loading.load_for_serving`) or a scanned
    model's stacked cache.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    max_context = int(max_context or min(model.cfg.max_position_embeddings, 2048))
    if not 2 <= max_context <= model.cfg.max_position_embeddings:
        raise ValueError(f"max_context must be in [2, {model.cfg.max_position_embeddings}], got {max_context}")
    batcher = Batcher(
        model, tokenizer, max_batch=max_batch, max_context=max_context, eos_ids=_eos_ids(tokenizer, eos_token_ids)
    )
    if warmup_prompt_lengths:
        batcher.warmup(warmup_prompt_lengths)
    batcher.start()
    limits = protocol.ServingLimits(
        model_name=model_name, max_context=max_context, max_batch=max_batch, vocab_size=model.cfg.vocab_size
    )
    try:
        return OpenAIServer((host, port), batcher, tokenizer, limits, api_key)
    except OSError:
        batcher.stop()
        raise


def _eos_ids(tokenizer, override) -> list[int]:
    """The tokenizer's EOS (as `alignax.sample.generate` uses), unless given."""
    if override is None:
        eos = getattr(tokenizer, "eos_token_id", None)
        return [] if eos is None else [int(eos)]
    return [int(override)] if isinstance(override, int) else [int(e) for e in override]
