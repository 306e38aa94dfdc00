"""Embedding families: Amazon Titan Text Embeddings (v1, v2) and Cohere Embed (v3, v4)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from outcrop.providers.messages import EmbedRequest, EmbedResponse
from outcrop.runtime.families.base import malformed, optional, require
from outcrop.runtime.families.schema import BOOLEAN, INTEGER, STRING, STRINGS, BodySchema, params

TITAN_V2_DIMENSIONS = (256, 512, 1024)


class TitanEmbed:
    name = "titan-embed"
    schema = BodySchema(params(("inputText",), inputText=STRING, dimensions=INTEGER, normalize=BOOLEAN,
                            embeddingTypes=STRINGS))

    def parse(self, body: Mapping[str, Any], model_id: str) -> EmbedRequest:
        text = require(body, "inputText", str)
        if model_id.startswith("amazon.titan-embed-text-v1"):
            return EmbedRequest((text,), 1536, normalize=False)
        dimensions = optional(body, "dimensions", int) or 1024
        if dimensions not in TITAN_V2_DIMENSIONS:
            raise malformed(f"#/dimensions: {dimensions} is not a valid enum value")
        normalize = body.get("normalize")
        return EmbedRequest((text,), dimensions, normalize=True if normalize is None else normalize)

    def render(self, response: EmbedResponse, request: EmbedRequest, request_id: str) -> dict[str, Any]:
        vector = list(response.vectors[0])
        out: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": response.usage.input_tokens}
        if request.dimensions != 1536:  # v2 also answers by type
            out["embeddingsByType"] = {"float": vector}
        return out


class CohereEmbed:
    name = "cohere-embed"
    schema = BodySchema(params(("texts", "input_type"), texts=STRINGS, input_type=STRING, truncate=STRING,
                            embedding_types=STRINGS, output_dimension=INTEGER))

    def parse(self, body: Mapping[str, Any], model_id: str) -> EmbedRequest:
        texts = require(body, "texts", list)
        if not all(isinstance(t, str) for t in texts):
            raise malformed("#/texts: expected type: String")
        input_type = require(body, "input_type", str)
        default = 1536 if model_id.startswith("cohere.embed-v4") else 1024
        dimensions = optional(body, "output_dimension", int) or default
        return EmbedRequest(tuple(texts), dimensions, True, input_type)

    def render(self, response: EmbedResponse, request: EmbedRequest, request_id: str) -> dict[str, Any]:
        h = hashlib.sha256(request_id.encode()).hexdigest()
        vectors = [list(v) for v in response.vectors]
        return {
            "embeddings": vectors,
            "id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}",
            "response_type": "embeddings_floats",
            "texts": list(request.texts),
        }
