"""A small, real OpenAI-compatible chat-completions server for tests (stdlib only).

``python fake_openai.py PORT`` serves ``POST /v1/chat/completions`` (JSON or SSE streaming with
``data:`` lines, ``[DONE]``, tool calls and a usage chunk) and ``GET /requests`` (the bodies received).
The reply is ``echo: <last user text>``; with tools and no tool result yet, it calls the first tool.
Words in the last user message trigger failures: ``FAIL429``, ``FAIL500``, ``FAIL503``, ``SLOW``
(sleeps 3 s), ``DROP`` (a stream cut off mid-way), ``GARBLE`` (an answer of the wrong shape; in a stream, a
``data:`` line that is not JSON after two deltas), ``ODDUSAGE`` (token counts that are not numbers). Usage: prompt_tokens = 100 + number of messages,
completion_tokens = number of reply words (deliberately unlike outcrop's own rule).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVED: list[dict[str, Any]] = []
LOCK = threading.Lock()


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m["role"] == "user":
            return str(m.get("content") or "")
    return ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        with LOCK:
            self._json(200, RECEIVED)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        with LOCK:
            RECEIVED.append(body)
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "not found"}})
            return
        said = _last_user_text(body["messages"])
        for word, status in (("FAIL429", 429), ("FAIL500", 500), ("FAIL503", 503)):
            if word in said:
                self._json(status, {"error": {"message": f"injected {status}", "type": "test"}})
                return
        if "SLOW" in said:
            time.sleep(3)
        if "GARBLE" in said and not body.get("stream"):
            self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": "oops"}]})
            return
        usage: dict[str, Any] = {"prompt_tokens": 100 + len(body["messages"])}
        last = body["messages"][-1]
        if body.get("tools") and last["role"] != "tool":
            tool = body["tools"][0]["function"]
            call = {"id": "call_fake1", "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps({"q": "fake"})}}
            usage["completion_tokens"] = 5
            if body.get("stream"):
                self._stream([{"delta": {"role": "assistant", "tool_calls": [
                    {"index": 0, "id": call["id"], "type": "function",
                     "function": {"name": tool["name"], "arguments": ""}}]}},
                    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}},
                    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"fake"}'}}]}},
                    {"delta": {}, "finish_reason": "tool_calls"}], usage, drop=False)
            else:
                self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                                      "tool_calls": [call]},
                                              "finish_reason": "tool_calls"}], "usage": usage})
            return
        reply = "echo: " + (last["content"] if last["role"] == "tool" else said)
        words = reply.split(" ")
        limit = body.get("max_tokens")
        finish = "stop"
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        usage["completion_tokens"] = len(words)
        usage["total_tokens"] = usage["prompt_tokens"] + len(words)
        if "ODDUSAGE" in said:
            usage = {"prompt_tokens": "many", "completion_tokens": None, "prompt_tokens_details": []}
        # A reasoning model (vLLM's reasoning parser): its thinking in reasoning_content, before the answer.
        thought = ["Let", " me", " think."] if "THINK" in said else []
        if body.get("stream"):
            deltas = [{"delta": {"role": "assistant", "content": ""}}]
            deltas += [{"delta": {"reasoning_content": t}} for t in thought]
            deltas += [{"delta": {"content": (" " if i else "") + w}} for i, w in enumerate(words)]
            deltas.append({"delta": {}, "finish_reason": finish})
            self._stream(deltas, usage, drop="DROP" in said, garble="GARBLE" in said)
        else:
            message = {"role": "assistant", "content": " ".join(words)}
            if thought:
                message["reasoning_content"] = "".join(thought)
            self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

    def _stream(self, deltas: list[dict[str, Any]], usage: dict[str, Any], drop: bool, garble: bool = False) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def send(data: str) -> None:
            raw = f"data: {data}\n\n".encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()

        for i, d in enumerate(deltas):
            if drop and i == 2:
                self.wfile.write(b"5\r\ndata:")  # a chunk cut off mid-way, then the connection closes
                self.wfile.flush()
                self.close_connection = True
                return
            if garble and i == 2:
                send("{not json")
            choice = {"index": 0, "finish_reason": None, **d}
            send(json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice]}))
        send(json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
