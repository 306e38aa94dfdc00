"""Embedding families: Amazon Titan Text Embeddings (v1, v2) and Cohere Embed (v3, v4).

Both answer in the encodings asked for besides floats: Titan v2 ``embeddingTypes`` ``float`` and ``binary``
(one 0 or 1 per dimension, in ``embeddingsByType``); Cohere ``embedding_types`` ``float``, ``int8``,
``uint8``, ``binary`` and ``ubinary`` (``response_type: embeddings_by_type``). The integer encodings are made
from the float vector: int8 and uint8 scale each value's [-1, 1] range onto the type's, binary and ubinary
pack one bit per dimension (set where the value is positive), eight to a byte, first dimension in the high bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from outcrop.providers.messages import EmbedRequest, EmbedResponse
from outcrop.runtime.families.base import malformed, optional, require
from outcrop.runtime.families.schema import BOOLEAN, INTEGER, STRING, STRINGS, BodySchema, array, params

TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_TYPES = ("float", "binary")
COHERE_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
COHERE_MAX_TEXTS = 96
COHERE_V3_MAX_CHARACTERS = 2048  # per text; Embed v4 takes far longer texts (~128k tokens)


def _types(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """The encodings asked for, each once (the schema has checked each is one the model knows)."""
    return tuple(dict.fromkeys(body.get(key) or ()))


def _bits(vector: list[float]) -> list[int]:
    """One bit per dimension (set where positive), eight to a byte, the first dimension in the high bit."""
    out = []
    for start in range(0, len(vector), 8):
        chunk = vector[start:start + 8]
        byte = 0
        for value in chunk:
            byte = byte << 1 | (value > 0)
        out.append(byte << (8 - len(chunk)))
    return out


def encoded(vector: list[float], kind: str) -> list[Any]:
    """``vector`` in one of Cohere's encodings."""
    if kind == "float":
        return vector
    if kind == "int8":
        return [max(-128, min(127, round(v * 127))) for v in vector]
    if kind == "uint8":
        return [max(0, min(255, round((v + 1) * 127.5))) for v in vector]
    packed = _bits(vector)
    return packed if kind == "ubinary" else [b - 256 if b > 127 else b for b in packed]


class TitanEmbed:
    name = "titan-embed"
    schema = BodySchema(params(("inputText",), inputText=STRING, dimensions=INTEGER, normalize=BOOLEAN,
                            embeddingTypes=array({"type": "string", "enum": list(TITAN_TYPES)})))

    def parse(self, body: Mapping[str, Any], model_id: str) -> EmbedRequest:
        text = require(body, "inputText", str)
        if model_id.startswith("amazon.titan-embed-text-v1"):
            return EmbedRequest((text,), 1536, normalize=False)
        dimensions = optional(body, "dimensions", int)
        dimensions = 1024 if dimensions is None else dimensions
        if dimensions not in TITAN_V2_DIMENSIONS:
            raise malformed(f"#/dimensions: {dimensions} is not a valid enum value")
        normalize = body.get("normalize")
        return EmbedRequest((text,), dimensions, normalize=True if normalize is None else normalize,
                            types=_types(body, "embeddingTypes") or ("float",))

    def render(self, response: EmbedResponse, request: EmbedRequest, request_id: str) -> dict[str, Any]:
        vector = list(response.vectors[0])
        out: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": response.usage.input_tokens}
        if request.dimensions != 1536:  # v2 also answers by type: the types asked for (float by default)
            out["embeddingsByType"] = {t: vector if t == "float" else [int(v > 0) for v in vector] for t in request.types}
        return out


class CohereEmbed:
    name = "cohere-embed"
    schema = BodySchema(params(("texts", "input_type"), texts=STRINGS,
                            input_type={"type": "string", "enum": list(COHERE_INPUT_TYPES)}, truncate=STRING,
                            embedding_types=array({"type": "string", "enum": list(COHERE_TYPES)}),
                            output_dimension=INTEGER))

    def parse(self, body: Mapping[str, Any], model_id: str) -> EmbedRequest:
        texts = require(body, "texts", list)
        if not all(isinstance(t, str) for t in texts):
            raise malformed("#/texts: expected type: String")
        if len(texts) > COHERE_MAX_TEXTS:
            raise malformed(f"#/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {len(texts)}")
        input_type = require(body, "input_type", str)
        if not model_id.startswith("cohere.embed-v4"):  # Embed v3: 1024 dimensions, no output_dimension
            for i, text in enumerate(texts):
                if len(text) > COHERE_V3_MAX_CHARACTERS:
                    raise malformed(f"#/texts/{i}: expected maxLength: {COHERE_V3_MAX_CHARACTERS}, actual: {len(text)}")
            return EmbedRequest(tuple(texts), 1024, True, input_type, types=_types(body, "embedding_types"))
        dimensions = optional(body, "output_dimension", int)
        dimensions = 1536 if dimensions is None else dimensions
        if dimensions not in COHERE_V4_DIMENSIONS:
            raise malformed(f"#/output_dimension: {dimensions} is not a valid enum value")
        return EmbedRequest(tuple(texts), dimensions, True, input_type,
                            types=_types(body, "embedding_types"))

    def render(self, response: EmbedResponse, request: EmbedRequest, request_id: str) -> dict[str, Any]:
        h = hashlib.sha256(request_id.encode()).hexdigest()
        vectors = [list(v) for v in response.vectors]
        by_type = bool(request.types)
        return {
            "embeddings": {t: [encoded(v, t) for v in vectors] for t in request.types} if by_type else vectors,
            "id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
            "response_type": "embeddings_by_type" if by_type else "embeddings_floats",
            "texts": list(request.texts),
        }
