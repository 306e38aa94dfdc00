"""Model families, one module each, found by the catalogue's ``family`` of a foundation model."""

from __future__ import annotations

from outcrop.runtime.families.anthropic import Anthropic
from outcrop.runtime.families.base import ChatFamily, EmbeddingFamily
from outcrop.runtime.families.cohere_command import CohereCommand
from outcrop.runtime.families.embeddings import CohereEmbed, TitanEmbed
from outcrop.runtime.families.llama import Llama
from outcrop.runtime.families.mistral import Mistral
from outcrop.runtime.families.nova import Nova
from outcrop.runtime.families.titan_text import TitanText

CHAT_FAMILIES: dict[str, ChatFamily] = {
    f.name: f for f in (Anthropic(), Nova(), Llama(), TitanText(), Mistral(), CohereCommand())
}
EMBEDDING_FAMILIES: dict[str, EmbeddingFamily] = {f.name: f for f in (TitanEmbed(), CohereEmbed())}

__all__ = ["CHAT_FAMILIES", "EMBEDDING_FAMILIES", "ChatFamily", "EmbeddingFamily"]
