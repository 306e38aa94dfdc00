"""Each model family's own InvokeModel body and stream chunks, and tool use round trips, over boto3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ServerProcess
from tests.integration.runtime_helpers import HAIKU, US_HAIKU, server_for_module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from server_for_module(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="module")
def runtime(server: ServerProcess) -> Any:
    return server.client("bedrock-runtime")


@pytest.fixture(scope="module")
def runtime_west(server: ServerProcess) -> Any:
    """Mistral Large 2 (24.07) is offered in us-west-2 only."""
    return server.client("bedrock-runtime", region="us-west-2")


# (model ID, request body, text of the response, text of one stream chunk)
FAMILIES: dict[str, tuple[str, dict[str, Any], Any, Any]] = {
    "anthropic": (
        HAIKU,
        {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "system": "Be brief.",
         "messages": [{"role": "user", "content": "Hello there"}]},
        lambda b: b["content"][0]["text"],
        lambda c: c.get("delta", {}).get("text", ""),
    ),
    "nova": (
        "us.amazon.nova-lite-v1:0",
        {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
         "inferenceConfig": {"max_new_tokens": 64}},
        lambda b: b["output"]["message"]["content"][0]["text"],
        lambda c: c.get("contentBlockDelta", {}).get("delta", {}).get("text", ""),
    ),
    "llama": (
        "meta.llama3-8b-instruct-v1:0",
        {"prompt": "Hello there", "max_gen_len": 64},
        lambda b: b["generation"],
        lambda c: c["generation"],
    ),
    "titan-text": (
        "amazon.titan-text-express-v1",
        {"inputText": "Hello there", "textGenerationConfig": {"maxTokenCount": 64}},
        lambda b: b["results"][0]["outputText"],
        lambda c: c["outputText"],
    ),
    "mistral": (
        "mistral.mistral-7b-instruct-v0:2",
        {"prompt": "<s>[INST] Hello there [/INST]", "max_tokens": 64},
        lambda b: b["outputs"][0]["text"],
        lambda c: c["outputs"][0]["text"],
    ),
    "mistral-chat": (
        "mistral.mistral-large-2402-v1:0",
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
         "max_tokens": 64},
        lambda b: b["choices"][0]["message"]["content"],
        lambda c: c["choices"][0]["message"]["content"],
    ),
    "cohere-command": (
        "cohere.command-r-v1:0",
        {"message": "Hello there", "max_tokens": 64},
        lambda b: b["text"],
        lambda c: c.get("text", "") if c["event_type"] == "text-generation" else "",
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_invoke_and_stream_agree_and_report_usage(runtime, family):
    model_id, body, text_of, chunk_text = FAMILIES[family]
    r = runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    text = text_of(json.loads(r["body"].read()))
    assert text
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) > 0
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              runtime.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body))["body"]]
    assert "".join(chunk_text(c) for c in chunks) == text
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == int(headers["x-amzn-bedrock-output-token-count"])
    assert metrics["inputTokenCount"] == int(headers["x-amzn-bedrock-input-token-count"])
    assert all("amazon-bedrock-invocationMetrics" not in c for c in chunks[:-1])
    counted = runtime.count_tokens(modelId=model_id, input={"invokeModel": {"body": json.dumps(body)}})
    assert counted["inputTokens"] == metrics["inputTokenCount"]


def test_titan_embeddings(runtime):
    r = runtime.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                             body=json.dumps({"inputText": "Hello there", "dimensions": 512}))
    body = json.loads(r["body"].read())
    assert len(body["embedding"]) == 512 and body["inputTextTokenCount"] == 2
    again = json.loads(runtime.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                                            body=json.dumps({"inputText": "Hello there", "dimensions": 512}))["body"].read())
    assert again["embedding"] == body["embedding"]


def test_cohere_embeddings(runtime):
    r = runtime.invoke_model(modelId="cohere.embed-english-v3",
                             body=json.dumps({"texts": ["a", "b c"], "input_type": "search_document"}))
    body = json.loads(r["body"].read())
    assert [len(v) for v in body["embeddings"]] == [1024, 1024]
    assert body["response_type"] == "embeddings_floats" and body["texts"] == ["a", "b c"]


def test_embedding_bodies_outside_the_models_documented_limits_are_refused(runtime):
    """AWS user guide, Cohere Embed v3 and v4 and Titan Text Embeddings V2: at most 96 texts, of at most 2,048
    characters each for v3 (Bedrock's words for a longer one, ScrapeGraphAI/Scrapegraph-ai#400), an
    ``input_type`` of the documented ones, v4's ``output_dimension`` and Titan v2's ``dimensions`` of their sizes;
    Embed v3 has 1,024 dimensions only."""
    ok = {"texts": ["a"], "input_type": "search_query"}
    refused = [
        ("cohere.embed-english-v3", {**ok, "texts": ["a" * 2049]}, "#/texts/0: expected maxLength: 2048, actual: 2049"),
        ("cohere.embed-english-v3", {**ok, "texts": ["a"] * 97}, "#/texts: expected maximum item count: 96, found: 97"),
        ("cohere.embed-english-v3", {**ok, "input_type": "query"}, "#/input_type: query is not a valid enum value"),
        ("cohere.embed-v4:0", {**ok, "output_dimension": 7}, "#/output_dimension: 7 is not a valid enum value"),
        ("cohere.embed-v4:0", {**ok, "output_dimension": 0}, "#/output_dimension: 0 is not a valid enum value"),
        ("amazon.titan-embed-text-v2:0", {"inputText": "a", "dimensions": 0}, "#/dimensions: 0 is not a valid enum value"),
    ]
    for model_id, body, words in refused:
        with pytest.raises(ClientError) as e:
            runtime.invoke_model(modelId=model_id, body=json.dumps(body))
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert e.value.response["Error"]["Message"] == f"Malformed input request: {words}, please reformat your input and try again."
    v3 = json.loads(runtime.invoke_model(modelId="cohere.embed-english-v3", body=json.dumps(
        {**ok, "texts": ["a" * 2048] * 96, "output_dimension": 256}))["body"].read())
    assert {len(v) for v in v3["embeddings"]} == {1024}
    v4 = json.loads(runtime.invoke_model(modelId="cohere.embed-v4:0", body=json.dumps(
        {**ok, "texts": ["a" * 5000], "output_dimension": 256}))["body"].read())
    assert [len(v) for v in v4["embeddings"]] == [256]


def test_embeddings_in_the_encodings_asked_for(runtime):
    """Titan v2 ``embeddingTypes`` and Cohere ``embedding_types``: each encoding asked for, made from the
    same float vector (AWS user guide, Titan Text Embeddings V2 and Cohere Embed parameters)."""
    titan = json.loads(runtime.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps(
        {"inputText": "Hello there", "dimensions": 256, "embeddingTypes": ["float", "binary"]}))["body"].read())
    assert set(titan["embeddingsByType"]) == {"float", "binary"}
    assert titan["embeddingsByType"]["float"] == titan["embedding"]
    assert titan["embeddingsByType"]["binary"] == [int(v > 0) for v in titan["embedding"]]
    default = json.loads(runtime.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps(
        {"inputText": "Hello there", "dimensions": 256}))["body"].read())
    assert list(default["embeddingsByType"]) == ["float"]

    body = {"texts": ["a", "b c"], "input_type": "search_document"}
    floats = json.loads(runtime.invoke_model(modelId="cohere.embed-english-v3", body=json.dumps(body))["body"].read())
    cohere = json.loads(runtime.invoke_model(modelId="cohere.embed-english-v3", body=json.dumps(
        {**body, "embedding_types": ["float", "int8", "uint8", "binary", "ubinary"]}))["body"].read())
    assert cohere["response_type"] == "embeddings_by_type"
    by_type = cohere["embeddings"]
    assert by_type["float"] == floats["embeddings"]
    first = by_type["float"][0]
    assert len(by_type["int8"][0]) == len(by_type["uint8"][0]) == 1024
    assert all(-128 <= v <= 127 for v in by_type["int8"][0]) and all(0 <= v <= 255 for v in by_type["uint8"][0])
    assert [v > 0 for v in by_type["int8"][0]] == [round(f * 127) > 0 for f in first]
    assert len(by_type["ubinary"][0]) == len(by_type["binary"][0]) == 128  # one bit per dimension
    assert by_type["ubinary"][0][0] >> 7 == int(first[0] > 0)
    assert [b % 256 for b in by_type["binary"][0]] == by_type["ubinary"][0]

    for model_id, bad in (("cohere.embed-english-v3", {**body, "embedding_types": ["float", "int4"]}),
                          ("amazon.titan-embed-text-v2:0", {"inputText": "x", "embeddingTypes": ["int8"]})):
        with pytest.raises(ClientError) as e:
            runtime.invoke_model(modelId=model_id, body=json.dumps(bad))
        assert "is not a valid enum value" in e.value.response["Error"]["Message"]


WEATHER_TOOL = {"toolSpec": {"name": "get_weather", "description": "Weather in a city",
                             "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                      "required": ["city"]}}}}


def test_converse_tool_use_round_trip(runtime):
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}]
    tool_config = {"tools": [WEATHER_TOOL], "toolChoice": {"auto": {}}}
    first = runtime.converse(modelId=US_HAIKU, messages=messages, toolConfig=tool_config)
    assert first["stopReason"] == "tool_use"
    use = first["output"]["message"]["content"][0]["toolUse"]
    assert use["name"] == "get_weather" and isinstance(use["input"]["city"], str)
    messages += [first["output"]["message"],
                 {"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"],
                                                              "content": [{"json": {"sky": "clear"}}]}}]}]
    second = runtime.converse(modelId=US_HAIKU, messages=messages, toolConfig=tool_config)
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"][0]["text"] == 'Tool get_weather returned: {"sky":"clear"}.'


def test_converse_stream_tool_use_events(runtime):
    events = list(runtime.converse_stream(
        modelId=US_HAIKU, messages=[{"role": "user", "content": [{"text": "weather?"}]}],
        toolConfig={"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}})["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    fragment = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                       if "contentBlockDelta" in e)
    assert "city" in json.loads(fragment)
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "tool_use"


def test_anthropic_tool_use_round_trip(runtime):
    tools = [{"name": "lookup", "description": "d", "input_schema": {"type": "object",
                                                                     "properties": {"q": {"type": "string"}}}}]
    base = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "tools": tools}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "lookup something"}]
    first = json.loads(runtime.invoke_model(modelId=HAIKU, body=json.dumps({**base, "messages": messages}))["body"].read())
    assert first["stop_reason"] == "tool_use"
    use = first["content"][0]
    assert use["type"] == "tool_use" and use["name"] == "lookup"
    messages += [{"role": "assistant", "content": first["content"]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "42"}]}]
    second = json.loads(runtime.invoke_model(modelId=HAIKU, body=json.dumps({**base, "messages": messages}))["body"].read())
    assert second["stop_reason"] == "end_turn" and second["content"][0]["text"] == "Tool lookup returned: 42."
    # A conversation replayed from Claude carries its thinking blocks (sent back with the tool result):
    # accepted and left out, the same answer.
    thought = [{"type": "thinking", "thinking": "I should look it up.", "signature": "c2ln"},
               {"type": "redacted_thinking", "data": "cmVk"}]
    messages[1] = {"role": "assistant", "content": thought + first["content"]}
    again = json.loads(runtime.invoke_model(modelId=HAIKU, body=json.dumps({**base, "messages": messages}))["body"].read())
    assert again["content"] == second["content"]


def _invoke(runtime: Any, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(runtime.invoke_model(modelId=model_id, body=json.dumps(body))["body"].read())


def _chunks(runtime: Any, model_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    stream = runtime.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body))["body"]
    return [json.loads(e["chunk"]["bytes"]) for e in stream]


MISTRAL_LARGE_2 = "mistral.mistral-large-2407-v1:0"
MISTRAL_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_mistral_chat_form_answers_in_choices_and_the_prompt_form_still_in_outputs(runtime_west):
    chat = _invoke(runtime_west, MISTRAL_LARGE_2, {"messages": [{"role": "user", "content": "Hello there"}],
                                                   "max_tokens": 3})
    assert set(chat) == {"choices"}
    choice = chat["choices"][0]
    assert choice["index"] == 0 and choice["stop_reason"] == "length"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert "tool_calls" not in choice["message"]
    prompt = _invoke(runtime_west, MISTRAL_LARGE_2, {"prompt": "<s>[INST] Hello there [/INST]", "max_tokens": 3})
    assert set(prompt) == {"outputs"} and prompt["outputs"][0]["stop_reason"] == "length"
    # Same conversation either way, so the same reply.
    assert prompt["outputs"][0]["text"] == choice["message"]["content"]


def test_mistral_chat_tool_use_round_trip(runtime_west):
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Use tools."},
                                      {"role": "user", "content": "What is the weather in Paris?"}]
    base = {"tools": [MISTRAL_WEATHER], "tool_choice": "auto", "max_tokens": 200}
    first = _invoke(runtime_west, MISTRAL_LARGE_2, {**base, "messages": messages})["choices"][0]
    assert first["stop_reason"] == "tool_calls"
    (call,) = first["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["id"]
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    messages += [first["message"],
                 {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"sky": "clear"})}]
    second = _invoke(runtime_west, MISTRAL_LARGE_2, {**base, "messages": messages})["choices"][0]
    assert second["stop_reason"] == "stop" and "tool_calls" not in second["message"]
    assert second["message"]["content"] == 'Tool get_weather returned: {"sky": "clear"}.'
    # tool_choice none: the model answers in text although tools are offered.
    plain = _invoke(runtime_west, MISTRAL_LARGE_2, {**base, "tool_choice": "none", "messages": messages[:2]})
    assert plain["choices"][0]["stop_reason"] == "stop" and plain["choices"][0]["message"]["content"]


def test_mistral_chat_stream_chunks(runtime_west):
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello there"}]}
    chunks = _chunks(runtime_west, MISTRAL_LARGE_2, body)
    assert len(chunks) > 2
    assert all(set(c) - {"amazon-bedrock-invocationMetrics"} == {"choices"} for c in chunks)
    assert all(c["choices"][0]["message"]["role"] == "assistant" for c in chunks)
    assert [c["choices"][0]["stop_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    text = "".join(c["choices"][0]["message"]["content"] for c in chunks)
    assert text == _invoke(runtime_west, MISTRAL_LARGE_2, body)["choices"][0]["message"]["content"]
    # A tool call arrives whole, in the last chunk, with stop_reason tool_calls.
    tools = _chunks(runtime_west, MISTRAL_LARGE_2, {**body, "tools": [MISTRAL_WEATHER], "tool_choice": "any"})
    last = tools[-1]["choices"][0]
    assert last["stop_reason"] == "tool_calls" and last["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert all("tool_calls" not in c["choices"][0]["message"] for c in tools[:-1])
    assert tools[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0


@pytest.mark.parametrize(("body", "detail"), [
    ({"messages": []}, "#/messages: expected minimum item count: 1"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "#/messages/0/role: bot is not a valid enum value"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]},
     "#/messages/1: required key [tool_call_id] not found"),
    ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"},
     "#/tool_choice: sometimes is not a valid enum value"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "#/tools/0: expected"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{"}}]}]},
     "#/messages/0/tool_calls/0/function/arguments: not a JSON object text"),
    ({"max_tokens": 5}, "#: required key [prompt] not found (or [messages]"),
])
def test_mistral_bad_body_is_a_validation_exception_saying_what_to_fix(runtime_west, body, detail):
    for call in (runtime_west.invoke_model, runtime_west.invoke_model_with_response_stream):
        with pytest.raises(ClientError) as e:
            call(modelId=MISTRAL_LARGE_2, body=json.dumps(body))
        err = e.value.response
        assert err["Error"]["Code"] == "ValidationException"
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err["Error"]["Message"].startswith(f"Malformed input request: {detail}")


COMMAND_R, COMMAND_R_PLUS = "cohere.command-r-v1:0", "cohere.command-r-plus-v1:0"
COHERE_WEATHER = {"name": "get_weather", "description": "Weather in a city", "parameter_definitions": {
    "city": {"description": "The city", "type": "str", "required": True},
    "days": {"description": "How many days", "type": "int", "required": False}}}


def test_cohere_chat_returns_the_history_with_its_reply(runtime):
    history = [{"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello."}]
    body = {"message": "Hello there", "chat_history": history, "preamble": "Be brief.", "max_tokens": 3}
    out = _invoke(runtime, COMMAND_R, body)
    assert out["finish_reason"] == "MAX_TOKENS" and out["text"] and "tool_calls" not in out
    assert out["chat_history"] == [*history, {"role": "USER", "message": "Hello there"},
                                   {"role": "CHATBOT", "message": out["text"]}]
    assert out["response_id"] != out["generation_id"]


@pytest.mark.parametrize("style", ["multi-step", "single-step"])
def test_cohere_tool_use_round_trip(runtime, style):
    question = "What is the get_weather in Paris?"
    first = _invoke(runtime, COMMAND_R_PLUS, {"message": question, "tools": [COHERE_WEATHER]})
    assert first["finish_reason"] == "COMPLETE" and first["text"] == ""
    (call,) = first["tool_calls"]
    assert call["name"] == "get_weather" and set(call["parameters"]) == {"city"}
    assert first["chat_history"] == [{"role": "USER", "message": question},
                                     {"role": "CHATBOT", "message": "", "tool_calls": [call]}]
    results = [{"call": call, "outputs": [{"sky": "clear"}]}]
    if style == "multi-step":  # Cohere's agent loop: empty message, the returned history, the results
        body = {"message": "", "chat_history": first["chat_history"], "tools": [COHERE_WEATHER], "tool_results": results}
    else:  # the question again, with the results of the calls it led to
        body = {"message": question, "tools": [COHERE_WEATHER], "tool_results": results}
    second = _invoke(runtime, COMMAND_R_PLUS, body)
    assert second["finish_reason"] == "COMPLETE" and "tool_calls" not in second
    assert second["text"] == 'Tool get_weather returned: {"sky":"clear"}.'
    assert second["chat_history"][-2:] == [{"role": "TOOL", "tool_results": results},
                                           {"role": "CHATBOT", "message": second["text"]}]


def test_cohere_stream_events(runtime):
    body: dict[str, Any] = {"message": "Hello there"}
    events = _chunks(runtime, COMMAND_R, body)
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "stream-start" and kinds[-1] == "stream-end"
    assert set(kinds[1:-1]) == {"text-generation"} and len(kinds) > 3
    assert [e["is_finished"] for e in events] == [False] * (len(events) - 1) + [True]
    end = events[-1]
    text = "".join(e["text"] for e in events[1:-1])
    assert end["finish_reason"] == "COMPLETE" and end["response"]["text"] == text
    assert end["response"]["generation_id"] == events[0]["generation_id"]
    assert text == _invoke(runtime, COMMAND_R, body)["text"]
    # With tools: the whole calls in one tool-calls-generation event, and again in the final response.
    tool_body = {"message": "weather in Paris?", "tools": [COHERE_WEATHER]}
    events = _chunks(runtime, COMMAND_R, tool_body)
    assert [e["event_type"] for e in events] == ["stream-start", "tool-calls-generation", "stream-end"]
    calls = events[1]["tool_calls"]
    assert calls == events[2]["response"]["tool_calls"] == _invoke(runtime, COMMAND_R, tool_body)["tool_calls"]
    assert calls[0]["name"] == "get_weather"
    assert events[2]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0


@pytest.mark.parametrize(("body", "detail"), [
    ({"max_tokens": 10}, "#: required key [message] not found"),
    ({"message": ""}, "#/message: must not be empty unless tool_results are given"),
    ({"message": "hi", "chat_history": [{"role": "BOT", "message": "x"}]},
     "#/chat_history/0/role: BOT is not a valid enum value"),
    ({"message": "hi", "chat_history": ["hello"]}, "#/chat_history/0: expected type: JSONObject"),
    ({"message": "hi", "tools": [{"description": "no name"}]}, "#/tools/0: expected"),
    ({"message": "", "tool_results": [{"outputs": [{"a": 1}]}]}, "#/tool_results/0/call: expected"),
    ({"message": "hi", "tool_results": [{"call": {"name": "f", "parameters": {}}, "outputs": "42"}]},
     "#/tool_results/0/outputs: expected an array of objects"),
])
def test_cohere_bad_body_is_a_validation_exception_saying_what_to_fix(runtime, body, detail):
    for call in (runtime.invoke_model, runtime.invoke_model_with_response_stream):
        with pytest.raises(ClientError) as e:
            call(modelId=COMMAND_R, body=json.dumps(body))
        err = e.value.response
        assert err["Error"]["Code"] == "ValidationException"
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err["Error"]["Message"].startswith(f"Malformed input request: {detail}")


_CLAUDE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10}
_HI = [{"role": "user", "content": [{"text": "hi"}]}]


@pytest.mark.parametrize(("model_id", "body", "detail"), [
    ("us.amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"image": "a picture"}]}]},
     "#/messages/0/content/0/image: expected type: JSONObject, found: String"),
    ("us.amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"toolResult": {"content": "42"}}]}]},
     "#/messages/0/content/0/toolResult/content: expected type: JSONArray, found: String"),
    ("us.amazon.nova-lite-v1:0", {"messages": _HI, "toolConfig": {"tools": ["get_weather"]}},
     "#/toolConfig/tools/0: expected type: JSONObject, found: String"),
    ("us.amazon.nova-lite-v1:0", {"messages": [{"role": "user", "content": [{"toolUse": {
        "toolUseId": "t1", "name": "f", "input": [1]}}]}]},
     "#/messages/0/content/0/toolUse/input: expected type: JSONObject, found: JSONArray"),
    ("us.amazon.nova-lite-v1:0", {"messages": _HI, "inferenceConfig": {"max_new_tokens": 1.5}},
     "#/inferenceConfig/max_new_tokens: expected type: Integer, found: BigDecimal"),
    ("us.amazon.nova-2-lite-v1:0", {"messages": [*_HI, {"role": "assistant", "content": [{"reasoningContent": "thought"}]},
                                                 {"role": "user", "content": [{"text": "and?"}]}]},
     "#/messages/1/content/0/reasoningContent: expected type: JSONObject, found: String"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0",
     {**_CLAUDE, "messages": [{"role": "user", "content": [{"type": "image", "source": "a picture"}]}]},
     "#/messages/0/content/0/source: expected type: JSONObject, found: String"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", {**_CLAUDE, "messages": [{"role": "user", "content": "hi"}],
                                                   "stop_sequences": ["ok", 7]},
     "#/stop_sequences/1: expected type: String, found: Integer"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", {**_CLAUDE, "messages": [{"role": "user", "content": "hi"}],
                                                   "tools": [{"name": "f", "description": None}]},
     "#/tools/0/description: expected type: String, found: Null"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", {**_CLAUDE, "messages": [{"role": "user", "content": "hi"}],
                                                   "system": [{"type": "text", "text": ["Be brief."]}]},
     "#/system/0/text: expected type: String, found: JSONArray"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", {**_CLAUDE, "messages": [{"role": "robot", "content": "hi"}]},
     "#/messages/0/role: robot is not a valid enum value"),
    ("amazon.titan-text-express-v1", {"inputText": "hi", "textGenerationConfig": {"stopSequences": [True]}},
     "#/textGenerationConfig/stopSequences/0: expected type: String, found: Boolean"),
    ("amazon.titan-text-express-v1", {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": "64"}},
     "#/textGenerationConfig/maxTokenCount: expected type: Integer, found: String"),
    ("meta.llama3-8b-instruct-v1:0", {"max_gen_len": 5}, "#: required key [prompt] not found"),
])
def test_a_value_of_the_wrong_type_deep_in_a_body_is_refused_with_its_path(runtime, model_id, body, detail):
    """A value of the wrong type anywhere in a body (a string where an object goes, a number among stop
    sequences): AWS's ValidationException in its validator's words, naming the value's JSON pointer, never an
    internal error (each of these was a 500 once); InvokeModel, its stream and CountTokens alike."""
    def count_tokens(modelId: str, body: str) -> Any:
        return runtime.count_tokens(modelId=modelId, input={"invokeModel": {"body": body}})

    for call in (runtime.invoke_model, runtime.invoke_model_with_response_stream, count_tokens):
        with pytest.raises(ClientError) as e:
            call(modelId=model_id, body=json.dumps(body))
        err = e.value.response
        assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("ValidationException", 400)
        assert err["Error"]["Message"] == f"Malformed input request: {detail}, please reformat your input and try again."


def test_titan_text_stops_at_one_sequence_of_pipes_or_user(runtime):
    """Titan Text takes one stop sequence, ``|``s or ``User:`` (AWS user guide); Bedrock refuses others in its
    schema validator's words, without a pointer (boto/boto3#3993, langchain-ai/langchain#18565)."""
    def body(*stop: str) -> str:
        return json.dumps({"inputText": "User: hi\nBot:", "textGenerationConfig": {"stopSequences": list(stop)}})

    for stop, detail in ((["Human:"], r"string [Human:] does not match pattern ^(\|+|User:)$"),
                         (["User: "], r"string [User: ] does not match pattern ^(\|+|User:)$"),
                         (["|", "User:"], "expected maximum item count: 1, found: 2")):
        with pytest.raises(ClientError) as e:
            runtime.invoke_model(modelId="amazon.titan-text-express-v1", body=body(*stop))
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert e.value.response["Error"]["Message"] == (
            f"Malformed input request: {detail}, please reformat your input and try again.")
    for stop in ("|", "|||", "User:"):
        answer = json.loads(runtime.invoke_model(modelId="amazon.titan-text-express-v1", body=body(stop))["body"].read())
        assert answer["results"][0]["completionReason"] == "FINISH"
