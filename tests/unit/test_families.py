"""Family translators and the builtin model, without a server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from outcrop.config import Deployment
from outcrop.errors import ValidationError
from outcrop.providers.base import Target
from outcrop.providers.builtin import BuiltinProvider, plan_reply
from outcrop.providers.messages import (
    ChatRequest,
    Message,
    StreamEvent,
    Text,
    Tool,
    ToolChoice,
    ToolResult,
    ToolUse,
)
from outcrop.providers.tokens import count_request, count_text
from outcrop.runtime.families import CHAT_FAMILIES, EMBEDDING_FAMILIES
from outcrop.runtime.families.prompt import messages_from_prompt

TARGET = Target("us-east-1", "anthropic.claude-3-haiku-20240307-v1:0", Deployment())
BODIES: dict[str, dict[str, Any]] = {
    "anthropic": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "system": "Be brief.",
                  "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]},
    "nova": {"schemaVersion": "messages-v1", "system": [{"text": "Be brief."}],
             "messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
             "inferenceConfig": {"max_new_tokens": 50}},
    "llama": {"prompt": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n", "max_gen_len": 50},
    "titan-text": {"inputText": "Hello there", "textGenerationConfig": {"maxTokenCount": 50}},
    "mistral": {"prompt": "<s>[INST] Hello there [/INST]", "max_tokens": 50},
    "cohere-command": {"message": "Hello there", "preamble": "Be brief.", "max_tokens": 50},
}


def test_token_rule_counts_words_and_punctuation():
    assert count_text("Hello, world!") == 4
    assert count_text("") == 0


@pytest.mark.parametrize("family", sorted(BODIES))
def test_every_chat_family_parses_its_body_to_the_same_user_turn(family):
    request = CHAT_FAMILIES[family].parse(BODIES[family], "m")
    assert request.messages[-1].role == "user"
    assert request.messages[-1].text() == "Hello there"
    assert request.max_tokens == 50


def test_llama_prompt_template_splits_into_system_and_turns():
    system, messages = messages_from_prompt(BODIES["llama"]["prompt"])
    assert system == ("Be brief.",)
    assert [(m.role, m.text()) for m in messages] == [("user", "Hello there")]


def test_anthropic_rejects_a_body_without_max_tokens_as_bedrock_does():
    body = {k: v for k, v in BODIES["anthropic"].items() if k != "max_tokens"}
    with pytest.raises(ValidationError, match=r"Malformed input request: #: required key \[max_tokens\] not found"):
        CHAT_FAMILIES["anthropic"].parse(body, "m")


def test_anthropic_takes_bedrocks_one_api_version_only():
    """Bedrock refuses any other ``anthropic_version`` (boto/boto3#4218: ``Invalid API version: <it>``)."""
    for version in ("claude-3-sonnet-20240229-v1:0", "2023-06-01", ""):
        with pytest.raises(ValidationError, match=r"^Invalid API version: "):
            CHAT_FAMILIES["anthropic"].parse({**BODIES["anthropic"], "anthropic_version": version}, "m")
    CHAT_FAMILIES["anthropic"].parse(BODIES["anthropic"], "m")


def test_nova_takes_the_video_document_and_audio_blocks_of_its_schema_and_leaves_them_out():
    """Nova's messages-v1 body holds video, document and (Nova 2) audio blocks besides text and images (Nova user
    guide, complete request schema); as in Converse, outcrop's models do not read them. Other keys stay refused."""
    data = base64.b64encode(b"\x00\x01").decode()
    content = [{"video": {"format": "mp4", "source": {"bytes": data}}},
               {"video": {"format": "mp4", "source": {"s3Location": {"uri": "s3://bucket/clip.mp4"}}}},
               {"document": {"format": "txt", "name": "notes", "source": {"bytes": data}}},
               {"audio": {"format": "mp3", "source": {"bytes": data}}},
               {"text": "What is in these?"}]
    request = CHAT_FAMILIES["nova"].parse({"messages": [{"role": "user", "content": content}]}, "amazon.nova-lite-v1:0")
    assert [(m.role, m.content) for m in request.messages] == [("user", (Text("What is in these?"),))]
    with pytest.raises(ValidationError, match=r"extraneous key \[sticker\] is not permitted"):
        CHAT_FAMILIES["nova"].parse({"messages": [{"role": "user", "content": [{"sticker": {}}]}]}, "m")


def test_builtin_is_deterministic_and_depends_on_the_input():
    a = ChatRequest((Message("user", (Text("one"),)),))
    b = ChatRequest((Message("user", (Text("two"),)),))
    assert plan_reply(a, "m") == plan_reply(a, "m")
    assert plan_reply(a, "m").deltas != plan_reply(b, "m").deltas
    assert plan_reply(a, "m").usage.input_tokens == count_request(a) == 1


def test_builtin_honours_max_tokens_and_stop_sequences():
    base = ChatRequest((Message("user", (Text("hi"),)),))
    full = plan_reply(base, "m")
    cut = plan_reply(ChatRequest(base.messages, max_tokens=3), "m")
    assert cut.deltas == full.deltas[:3] and cut.stop_reason == "max_tokens"
    word = full.deltas[4].strip()
    stopped = plan_reply(ChatRequest(base.messages, stop_sequences=(word,)), "m")
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert word not in "".join(stopped.deltas)


def test_builtin_calls_the_named_tool_then_answers_with_its_result():
    tools = (Tool("get_time", "", {"type": "object"}),
             Tool("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"},
                                                                        "days": {"type": "integer"}},
                                      "required": ["city"]}))
    ask = Message("user", (Text("What is the get_weather in Paris?"),))
    plan = plan_reply(ChatRequest((ask,), tools=tools), "m")
    assert plan.stop_reason == "tool_use" and plan.tool_use is not None
    assert plan.tool_use.name == "get_weather" and set(plan.tool_use.input) == {"city"}
    forced = plan_reply(ChatRequest((ask,), tools=tools, tool_choice=ToolChoice("tool", "get_time")), "m")
    assert forced.tool_use is not None and forced.tool_use.name == "get_time"
    use = plan.tool_use
    follow = ChatRequest(
        (ask, Message("assistant", (ToolUse(use.id, use.name, use.input),)),
         Message("user", (ToolResult(use.id, ("sunny",)),))), tools=tools)
    answer = plan_reply(follow, "m")
    assert answer.stop_reason == "end_turn" and "".join(answer.deltas) == "Tool get_weather returned: sunny."


async def _stream(family: str) -> list[dict[str, Any]]:
    request = CHAT_FAMILIES[family].parse(BODIES[family], "m")
    events: AsyncIterator[StreamEvent] = BuiltinProvider().chat_stream(TARGET, request)
    return [c async for c in CHAT_FAMILIES[family].stream(events, request, "m", "req")]


@pytest.mark.parametrize("family", sorted(BODIES))
def test_stream_chunks_reassemble_to_the_rendered_text(family):
    provider = BuiltinProvider()
    request = CHAT_FAMILIES[family].parse(BODIES[family], "m")
    response = asyncio.run(provider.chat(TARGET, request))
    chunks = asyncio.run(_stream(family))
    text_of = {
        "anthropic": lambda c: c.get("delta", {}).get("text", ""),
        "nova": lambda c: c.get("contentBlockDelta", {}).get("delta", {}).get("text", ""),
        "llama": lambda c: c["generation"],
        "titan-text": lambda c: c["outputText"],
        "mistral": lambda c: c["outputs"][0]["text"],
        "cohere-command": lambda c: c.get("text", "") if c["event_type"] == "text-generation" else "",
    }[family]
    assert "".join(text_of(c) for c in chunks) == response.text()


def test_llama_stream_reports_the_prompt_size_once_even_when_nothing_is_generated():
    """Bedrock's Llama chunks carry ``prompt_token_count`` on the first chunk only; with ``max_gen_len`` 0 the
    closing chunk is the first, so it carries it."""
    async def chunks(body: dict) -> list[dict]:
        request = CHAT_FAMILIES["llama"].parse(body, "m")
        events = BuiltinProvider().chat_stream(TARGET, request)
        return [c async for c in CHAT_FAMILIES["llama"].stream(events, request, "m", "req")]

    for max_gen_len in (0, 3):
        out = asyncio.run(chunks({"prompt": "Hello there", "max_gen_len": max_gen_len}))
        assert [c["prompt_token_count"] for c in out] == [2] + [None] * (len(out) - 1)
        assert out[-1]["stop_reason"] == "length" and out[-1]["generation_token_count"] == max_gen_len


def test_titan_v2_embedding_has_the_requested_dimension_and_unit_length():
    family = EMBEDDING_FAMILIES["titan-embed"]
    request = family.parse({"inputText": "hello", "dimensions": 256}, "amazon.titan-embed-text-v2:0")
    response = asyncio.run(BuiltinProvider().embed(TARGET, request))
    body = family.render(response, request, "req")
    assert len(body["embedding"]) == 256
    assert abs(sum(x * x for x in body["embedding"]) - 1) < 1e-3
    assert body["inputTextTokenCount"] == 1
