"""The neutral message form: what every model family's body and Converse are translated to and from.

It is Converse's vocabulary, flattened: messages of typed blocks, a system prompt, inference settings,
tools. Responses carry their token ``Usage`` so metering reads one value and never parses a body.
Streams are sequences of ``StreamEvent``s in Converse's order: ``MessageStart``, then per block
``BlockStart`` / ``BlockDelta``… / ``BlockStop``, then ``MessageStop`` and ``Metadata``.

The classes are slotted dataclasses, not frozen ones, though nothing changes them once made: a frozen
dataclass sets each field through ``object.__setattr__``, which makes it about three times as slow to
create (2.7 against 0.9 µs for a ``ChatRequest``), and a stream makes one event per token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
# Converse's StopReason values; every family maps its own to and from these.
StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filtered"]


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    format: str
    data: bytes


@dataclass(slots=True)
class ToolUse:
    id: str
    name: str
    input: Any


@dataclass(slots=True)
class ToolResult:
    tool_use_id: str
    # Text items are ``str``; images ``Image``; JSON items anything else.
    content: tuple[Any, ...]
    status: str | None = None

    def text(self) -> str:
        """The result's text and JSON (images have no text)."""
        import orjson

        return "\n".join(c if isinstance(c, str) else orjson.dumps(c).decode() for c in self.content
                         if not isinstance(c, Image))


@dataclass(slots=True)
class Reasoning:
    """A model's reasoning before its answer (Claude's thinking, Converse's reasoningContent); the signature
    lets the model check, when the conversation sends it back, that the text is its own."""

    text: str
    signature: str | None = None


Block = Text | Image | ToolUse | ToolResult | Reasoning


@dataclass(slots=True)
class Message:
    role: Role
    content: tuple[Block, ...]

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, Text))


@dataclass(slots=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "any", "tool", "none"]
    name: str | None = None


@dataclass(slots=True)
class OutputSchema:
    """Structured output: the reply's text is one JSON document valid against ``schema`` (a JSON Schema)."""

    schema: dict[str, Any]
    name: str | None = None
    description: str | None = None


@dataclass(slots=True, frozen=True)
class CachePoint:
    """A prompt-cache checkpoint: the prefix before it may be cached. The prefix runs tools, system, messages:
    ``where`` says which of the three the point sits in, after its first ``count`` tools or system texts, or
    in message ``count`` after its first ``block`` content blocks."""

    where: Literal["tools", "system", "messages"]
    count: int
    block: int = 0
    ttl: Literal["5m", "1h"] = "5m"


@dataclass(slots=True)
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
    output_schema: OutputSchema | None = None
    # Reasoning asked for (Claude's ``thinking``): at most this many tokens of it before the answer.
    reasoning_budget: int | None = None
    # Reasoning asked for by effort (Nova 2's ``reasoningConfig``): "low", "medium" or "high".
    reasoning_effort: str | None = None
    cache_points: tuple[CachePoint, ...] = ()
    # Whose prompt cache the request may read and write (the caller's account): set by the runtime.
    cache_scope: str = ""
    # Model-specific fields passed through untouched (Converse's additionalModelRequestFields).
    extra: dict[str, Any] = field(default_factory=dict)
    # Converse's requestMetadata: for the invocation's records (upstream Bedrock logs it), not for the model.
    metadata: dict[str, str] | None = None


@dataclass(slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # The cache writes by TTL (Converse's ``cacheDetails``): ("1h" | "5m", tokens), 1h first; they add up
    # to ``cache_write_tokens``. Empty when nothing was written, or when the backend does not say.
    cache_writes: tuple[tuple[str, int], ...] = ()

    @property
    def total_tokens(self) -> int:
        """Converse's ``totalTokens``: every input token (read from the cache, written to it, or neither)
        and every output token. ``input_tokens`` is only those neither read from nor written to the cache."""
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def quota_tokens(self) -> int:
        """What counts against a tokens-per-minute quota: cache reads do not, as at Bedrock."""
        return self.input_tokens + self.output_tokens + self.cache_write_tokens


def cache_writes_by_ttl(tokens: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """``Usage.cache_writes`` from tokens written per TTL: 1h first, as ``cacheDetails`` lists them; a TTL
    with none is left out."""
    return tuple((ttl, tokens[ttl]) for ttl in ("1h", "5m") if tokens.get(ttl))


@dataclass(slots=True)
class ChatResponse:
    content: tuple[Block, ...]
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, Text))


@dataclass(slots=True)
class MessageStart:
    role: Role = "assistant"
    # Known up front by some backends (builtin); Anthropic's message_start reports it, and the prompt cache's
    # part, which ``input_tokens`` leaves out.
    input_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(slots=True)
class BlockStart:
    index: int
    tool_use: ToolUse | None = None  # None: a text block


@dataclass(slots=True)
class BlockDelta:
    index: int
    text: str | None = None
    tool_input: str | None = None  # a fragment of the tool input's JSON text


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class MessageStop:
    stop_reason: StopReason
    stop_sequence: str | None = None


@dataclass(slots=True)
class Metadata:
    usage: Usage


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of a reasoning block (its text, or at its end its signature); the block has no BlockStart
    and ends with a BlockStop. Families that do not show reasoning let it pass."""

    index: int
    text: str | None = None
    signature: str | None = None


StreamEvent = MessageStart | BlockStart | BlockDelta | ReasoningDelta | BlockStop | MessageStop | Metadata


@dataclass(slots=True)
class EmbedRequest:
    texts: tuple[str, ...]
    dimensions: int
    normalize: bool = True
    input_type: str | None = None
    types: tuple[str, ...] = ()  # the encodings asked for (Titan ``embeddingTypes``, Cohere ``embedding_types``)


@dataclass(slots=True)
class EmbedResponse:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
