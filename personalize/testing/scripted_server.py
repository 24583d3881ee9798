"""``ScriptedOpenAIServer``: a real OpenAI-compatible HTTP server on 127.0.0.1, scripted.

It lets a test drive the real ``openai`` client (or any HTTP client) through every
outcome a production endpoint can produce: answers, malformed JSON, 4xx/5xx, 429 with
``Retry-After``, slow answers that trip a client timeout, dropped connections and
truncated bodies. Replies come from a queue (:meth:`ScriptedOpenAIServer.enqueue`),
then from an optional :attr:`ScriptedOpenAIServer.responder`; when both are empty the
server answers 500 and counts the request in :attr:`ScriptedOpenAIServer.exhausted`.

Standalone, for tests that need a server process::

    python -m personalize.testing.scripted_server --port 8765 --echo

``--echo`` answers every chat request deterministically: ``"echo: <first words of the
last user message>"``, or, when the request asks for JSON (a ``response_format``, or a
system message that mentions JSON), the smallest JSON value that satisfies the JSON
schema found in ``response_format`` or after ``JSON Schema:`` in the prompt (``{}``
when there is none). See :func:`echo_responder` and :func:`minimal_instance`.
"""

from __future__ import annotations

import argparse
import json as _json
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from personalize.testing.echo import echo_responder, minimal_instance
from personalize.testing.replies import Reply

__all__ = ["Reply", "ScriptedOpenAIServer", "echo_responder", "minimal_instance"]

logger = logging.getLogger(__name__)

Responder = Callable[[dict[str, Any]], "Reply | str"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in a delay must not block exit
    owner: ScriptedOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug("scripted server: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib hook name
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self.server.owner._send_models(self)
        else:
            _send_json(self, 404, _error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:  # noqa: N802 - stdlib hook name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            _send_json(self, 404, _error_body(f"no route POST {self.path}", "not_found"))
            return
        try:
            body = _json.loads(raw or b"null")
        except ValueError:
            _send_json(self, 400, _error_body("request body is not JSON", "invalid_request_error"))
            return
        if not isinstance(body, dict):
            _send_json(self, 400, _error_body("request body must be an object", "invalid_request_error"))
            return
        self.server.owner._handle_chat(self, body)


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _write(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
           headers: dict[str, str], content_length: int | None = None) -> None:
    try:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(content_length or len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        # The client gave up (timed out) while we were answering; that is the point
        # of a delay reply, not an error of the server.
        handler.close_connection = True


def _send_json(handler: BaseHTTPRequestHandler, status: int, obj: Any,
               headers: dict[str, str] | None = None) -> None:
    payload = obj.encode() if isinstance(obj, str) else _json.dumps(obj).encode()
    _write(handler, status, payload, {"Content-Type": "application/json", **(headers or {})})


class ScriptedOpenAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that follows a script.

    Example::

        with ScriptedOpenAIServer() as srv:
            srv.enqueue(Reply.status(503), Reply.text("hello"))
            llm = OpenAIChat("m", base_url=srv.base_url)
            assert llm.complete([{"role": "user", "content": "hi"}]) == "hello"
            assert len(srv.requests) == 2

    Args:
        model: the model id reported by ``GET /v1/models`` (completions echo the
            request's model).
        port: the port to bind on 127.0.0.1; 0 picks a free one.
        responder: answers requests when the queue is empty; takes the request JSON
            and returns a :class:`Reply` or a string (sent as text).

    Attributes:
        responder: the default responder; may be replaced while running.
    """

    def __init__(
        self, *, model: str = "scripted-model", port: int = 0,
        responder: Responder | None = None,
    ) -> None:
        self.model = model
        self.responder = responder
        self._port = port
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._exhausted = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ScriptedOpenAIServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.owner = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"ScriptedOpenAIServer:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake handlers waiting in a delay, and close the socket."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- scripting and inspection ----------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("ScriptedOpenAIServer is not running; use start() or `with`")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, ready for ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply | str) -> ScriptedOpenAIServer:
        """Append replies to the script (a string is shorthand for ``Reply.text``)."""
        with self._lock:
            self._queue.extend(Reply.text(r) if isinstance(r, str) else r for r in replies)
        return self

    @property
    def pending(self) -> int:
        """How many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The parsed JSON bodies of every chat request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """The headers of every chat request so far (lower-cased names)."""
        with self._lock:
            return list(self._headers)

    @property
    def max_in_flight(self) -> int:
        """The most chat requests that were being handled at the same time."""
        with self._lock:
            return self._max_in_flight

    @property
    def exhausted(self) -> int:
        """How many requests found neither a queued reply nor a responder (got a 500)."""
        with self._lock:
            return self._exhausted

    # -- request handling (called from handler threads) ------------------------------

    def _next_reply(self, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
            if responder is None:
                self._exhausted += 1
                return None
        result = responder(body)
        return Reply.text(result) if isinstance(result, str) else result

    def _handle_chat(self, handler: _Handler, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)
            self._headers.append({k.lower(): v for k, v in handler.headers.items()})
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            try:
                reply = self._next_reply(body)
            except Exception as exc:  # a broken responder is a test bug: say so loudly
                logger.exception("ScriptedOpenAIServer responder failed")
                reply = Reply.status(500, _error_body(f"responder raised {exc!r}", "responder_error"))
            while reply is not None and reply.kind == "delay":
                if self._stopping.wait(reply.seconds):
                    reply = Reply.drop()
                    break
                reply = reply.then if reply.then is not None else Reply.drop()
        finally:
            # Counted out before the response is written: the client may send its
            # next request the moment it reads this one.
            with self._lock:
                self._in_flight -= 1
        if reply is None:
            _send_json(handler, 500, _error_body(
                "ScriptedOpenAIServer: script exhausted (no queued reply and no responder)",
                "script_exhausted",
            ))
        elif reply.kind == "drop":
            handler.close_connection = True
        elif reply.kind == "status":
            headers = {}
            if reply.retry_after is not None:
                seconds = reply.retry_after
                headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
            body_out = reply.body if reply.body is not None else _error_body(
                f"scripted HTTP {reply.status_code}", "scripted_error")
            _send_json(handler, reply.status_code, body_out, headers)
        else:
            payload = _json.dumps(self._completion(body, reply)).encode()
            if reply.kind == "truncated":
                handler.close_connection = True
                _write(handler, 200, payload[: len(payload) // 2],
                       {"Content-Type": "application/json"}, content_length=len(payload) + 64)
            else:
                _write(handler, 200, payload, {"Content-Type": "application/json"})

    def _completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        with self._lock:
            number = len(self._requests)
        prompt_words = sum(len(str(m.get("content", "")).split())
                           for m in request.get("messages") or [] if isinstance(m, dict))
        answer_words = len((reply.content or "").split())
        return {
            "id": f"chatcmpl-scripted-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": answer_words,
                "total_tokens": prompt_words + answer_words,
            },
        }

    def _send_models(self, handler: _Handler) -> None:
        _send_json(handler, 200, {"object": "list", "data": [{
            "id": self.model, "object": "model", "created": 0,
            "owned_by": "personalize-testing",
        }]})


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until SIGINT or SIGTERM.

    Writes ``listening on <base_url>`` to stdout once ready (useful with ``--port 0``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m personalize.testing.scripted_server",
        description="A scripted OpenAI-compatible server on 127.0.0.1 for tests.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--model", default="scripted-model", help="model id to report")
    parser.add_argument("--echo", action="store_true",
                        help="answer every request with echo_responder (else: HTTP 500)")
    args = parser.parse_args(argv)
    server = ScriptedOpenAIServer(
        model=args.model, port=args.port, responder=echo_responder if args.echo else None
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with server:
        sys.stdout.write(f"listening on {server.base_url}\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
