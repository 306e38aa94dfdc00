"""The neutral message form: what every model family's body and Converse are translated to and from.

It is Converse's vocabulary, flattened: messages of typed blocks, a system prompt, inference settings,
tools. Responses carry their token ``Usage`` so metering reads one value and never parses a body.
Streams are sequences of ``StreamEvent``s in Converse's order: ``MessageStart``, then per block
``BlockStart`` / ``BlockDelta``… / ``BlockStop``, then ``MessageStop`` and ``Metadata``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
# Converse's StopReason values; every family maps its own to and from these.
StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filtered"]


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    format: str
    data: bytes


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: Any


@dataclass(frozen=True)
class ToolResult:
    tool_use_id: str
    # Text items are ``str``; JSON items anything else.
    content: tuple[Any, ...]
    status: str | None = None

    def text(self) -> str:
        import orjson

        return "\n".join(c if isinstance(c, str) else orjson.dumps(c).decode() for c in self.content)


Block = Text | Image | ToolUse | ToolResult


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[Block, ...]

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, Text))


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    mode: Literal["auto", "any", "tool", "none"]
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    system: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    # Model-specific fields passed through untouched (Converse's additionalModelRequestFields).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ChatResponse:
    content: tuple[Block, ...]
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, Text))


@dataclass(frozen=True)
class MessageStart:
    role: Role = "assistant"
    # Known up front by some backends (builtin); Anthropic's message_start reports it.
    input_tokens: int | None = None


@dataclass(frozen=True)
class BlockStart:
    index: int
    tool_use: ToolUse | None = None  # None: a text block


@dataclass(frozen=True)
class BlockDelta:
    index: int
    text: str | None = None
    tool_input: str | None = None  # a fragment of the tool input's JSON text


@dataclass(frozen=True)
class BlockStop:
    index: int


@dataclass(frozen=True)
class MessageStop:
    stop_reason: StopReason
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Metadata:
    usage: Usage


StreamEvent = MessageStart | BlockStart | BlockDelta | BlockStop | MessageStop | Metadata


@dataclass(frozen=True)
class EmbedRequest:
    texts: tuple[str, ...]
    dimensions: int
    normalize: bool = True
    input_type: str | None = None


@dataclass(frozen=True)
class EmbedResponse:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
