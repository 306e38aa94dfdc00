"""One provider instance per backend kind, created on first use and closed with the server."""

from __future__ import annotations

from outcrop.config import Deployment
from outcrop.providers.base import Provider
from outcrop.providers.builtin import BuiltinProvider


class Providers:
    def __init__(self) -> None:
        self._by_backend: dict[str, Provider] = {}

    def for_deployment(self, deployment: Deployment) -> Provider:
        provider = self._by_backend.get(deployment.backend)
        if provider is None:
            provider = self._create(deployment.backend)
            self._by_backend[deployment.backend] = provider
        return provider

    def _create(self, backend: str) -> Provider:
        if backend == "openai":
            from outcrop.providers.openai import OpenAIProvider

            return OpenAIProvider()
        if backend == "bedrock":
            from outcrop.providers.bedrock import BedrockProvider

            return BedrockProvider()
        return BuiltinProvider()

    async def close(self) -> None:
        for provider in self._by_backend.values():
            await provider.close()
        self._by_backend.clear()
