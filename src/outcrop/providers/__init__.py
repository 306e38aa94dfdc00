"""Backends that run models: builtin (deterministic), openai (chat-completions servers), bedrock (upstream).

Providers speak only the neutral message form of ``outcrop.providers.messages``; they know nothing of
profiles, model families, metering or HTTP on the caller's side.
"""
