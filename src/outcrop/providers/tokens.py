"""outcrop's one token-counting rule, used by the builtin model and by CountTokens.

A token is a run of word characters (``\\w+``) or one other non-space character. So
``"Hello, world!"`` is 4 tokens. A request's input tokens are the tokens of every system prompt, every
text block, every tool use (name and JSON input), every tool result (its text and JSON), and every tool
specification (name, description and JSON schema); nothing is added per message. It is not any real
model's tokenizer: it is simple, documented and the same everywhere, so usage figures are predictable.
"""

from __future__ import annotations

import re

import orjson
import regex

from outcrop.providers.messages import ChatRequest, Text, ToolResult, ToolUse

TOKEN = regex.compile(r"\w+|[^\w\s]")
# The same rule for ASCII text, spelled out for ``re`` (``regex``'s ``\s`` is Unicode White_Space, which has
# no \x1c-\x1f, unlike ``re``'s): ``re`` keeps the GIL for the microseconds a match takes, where ``regex``
# releases and retakes it on every call, which under load makes the event loop wait for it.
ASCII_TOKEN = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\t\n\x0b\x0c\r ]")


def split_tokens(text: str) -> list[str]:
    return (ASCII_TOKEN if text.isascii() else TOKEN).findall(text)


def count_text(text: str) -> int:
    # One findall, not a Python loop over finditer.
    return len((ASCII_TOKEN if text.isascii() else TOKEN).findall(text))


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def count_request(request: ChatRequest) -> int:
    total = sum(count_text(s) for s in request.system)
    for message in request.messages:
        for block in message.content:
            if isinstance(block, Text):
                total += count_text(block.text)
            elif isinstance(block, ToolUse):
                total += count_text(block.name) + count_text(_json(block.input))
            elif isinstance(block, ToolResult):
                total += count_text(block.text())
    for tool in request.tools:
        total += count_text(tool.name) + count_text(tool.description) + count_text(_json(tool.input_schema))
    return total
