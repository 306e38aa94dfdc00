"""The interface of a model family: InvokeModel bodies and stream chunks ↔ the neutral message form.

One module per family, each a ``ChatFamily`` or an ``EmbeddingFamily``. A family parses the provider's
own request body into a neutral request, renders a neutral response as the provider's own response
body, and turns a neutral event stream into the provider's own stream chunks. Usage travels in the
neutral response; the pipeline, not the family, adds Bedrock's ``amazon-bedrock-invocationMetrics``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from outcrop.errors import ValidationError
from outcrop.providers.messages import ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, StreamEvent

if TYPE_CHECKING:
    from outcrop.runtime.families.schema import BodySchema


class ChatFamily(Protocol):
    name: str
    schema: BodySchema  # checked before ``parse``: the body's types, at every depth

    def parse(self, body: Mapping[str, Any], model_id: str) -> ChatRequest: ...

    # ``request`` is what ``parse`` returned for this body: a family with several body forms (Mistral's
    # prompt and chat forms) answers in the form it was asked in, and Cohere's answer repeats the history.
    def render(self, response: ChatResponse, request: ChatRequest, model_id: str, request_id: str) -> dict[str, Any]: ...

    def stream(
        self, events: AsyncIterator[StreamEvent], request: ChatRequest, model_id: str, request_id: str
    ) -> AsyncIterator[dict[str, Any]]: ...


class EmbeddingFamily(Protocol):
    name: str
    schema: BodySchema

    def parse(self, body: Mapping[str, Any], model_id: str) -> EmbedRequest: ...

    def render(self, response: EmbedResponse, request: EmbedRequest, request_id: str) -> dict[str, Any]: ...


def malformed(detail: str) -> ValidationError:
    """Bedrock's message for a body its model's schema rejects."""
    return ValidationError(f"Malformed input request: {detail}, please reformat your input and try again.")


def decode_base64(text: str, where: str) -> bytes:
    """The bytes of a base64 member (an image's data, say); a text that is not base64 is a malformed body."""
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        raise malformed(f"{where}: not valid base64") from None


def require(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in body:
        raise malformed(f"#: required key [{key}] not found")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise malformed(f"#/{key}: expected type: {_kind_name(kind)}, found: {type(value).__name__}")
    return value


def optional(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if body.get(key) is None:
        return None
    return require(body, key, kind)


def strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """An optional array of strings (stop sequences, say); empty when absent."""
    values = optional(body, key, list) or ()
    if not all(isinstance(v, str) for v in values):
        raise malformed(f"#/{key}: expected an array of strings")
    return tuple(values)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "String", int: "Integer", float: "Number", list: "JSONArray", dict: "JSONObject", bool: "Boolean"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return "|".join(names.get(k, k.__name__) for k in kinds)


NUMBER = (int, float)
