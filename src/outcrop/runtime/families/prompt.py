"""Prompt-string families (Llama, Mistral, Titan Text): a prompt ↔ neutral messages.

A prompt written in the model's chat template (Llama 3 header tokens, Mistral ``[INST]`` blocks) is
split back into its messages, so an OpenAI-compatible backend gets real chat turns; any other prompt
is one user message. The reply is plain text, so these families carry no tools.
"""

from __future__ import annotations

import re

from outcrop.providers.messages import ChatRequest, Message, Text

LLAMA3_TURN = re.compile(
    r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.S
)
MISTRAL_TURN = re.compile(r"\[INST\](.*?)\[/INST\]([^\[]*)", re.S)


def messages_from_prompt(prompt: str) -> tuple[tuple[str, ...], tuple[Message, ...]]:
    """(system prompts, messages) of a prompt; a trailing empty assistant header is dropped."""
    turns = LLAMA3_TURN.findall(prompt)
    if turns:
        system = tuple(t.strip() for r, t in turns if r == "system")
        msgs = tuple(Message(r, (Text(t.strip()),)) for r, t in turns if r != "system" and t.strip())  # type: ignore[arg-type]
        return system, msgs
    inst = MISTRAL_TURN.findall(prompt)
    if inst:
        out: list[Message] = []
        for user, answer in inst:
            out.append(Message("user", (Text(user.strip()),)))
            if answer.replace("</s>", "").strip():
                out.append(Message("assistant", (Text(answer.replace("</s>", "").strip()),)))
        return (), tuple(out)
    return (), (Message("user", (Text(prompt),)),)


def prompt_request(
    prompt: str, max_tokens: int | None, temperature: float | None, top_p: float | None,
    top_k: int | None = None, stop: tuple[str, ...] = (),
) -> ChatRequest:
    system, messages = messages_from_prompt(prompt)
    return ChatRequest(
        messages=messages, system=system, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        top_k=top_k, stop_sequences=stop,
    )
