"""The builtin model's prompt cache: which prefixes it reads and writes, for how long, and for whom."""

from __future__ import annotations

from outcrop.providers.messages import CachePoint, ChatRequest, Message, Text, Tool, Usage
from outcrop.providers.prompt_cache import (
    MAX_ENTRIES,
    MIN_PREFIX_TOKENS,
    PromptCache,
    min_prefix_tokens,
    prefixes,
)
from outcrop.providers.tokens import count_request

DOC = " ".join(f"w{i}" for i in range(MIN_PREFIX_TOKENS))  # exactly the minimum, by outcrop's token rule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(*points: CachePoint, scope: str = "111111111111", question: str = "q?", doc: str = DOC) -> ChatRequest:
    return ChatRequest(
        messages=(Message("user", (Text(doc), Text(question))),),
        system=("Be brief.",),
        tools=(Tool("lookup", "Looks up", {"type": "object"}),),
        cache_points=points,
        cache_scope=scope,
    )


def served(cache: PromptCache, req: ChatRequest, model: str = "m") -> Usage:
    return cache.apply(req, model, Usage(count_request(req), 5))


def test_a_prefix_is_written_then_read_and_input_tokens_are_the_rest():
    cache, point = PromptCache(Clock()), CachePoint("messages", 0, 1)
    first = served(cache, request(point))
    prefix = prefixes(request(point), "m")[0].tokens
    assert (first.cache_write_tokens, first.cache_read_tokens) == (prefix, 0)
    assert first.input_tokens + prefix == count_request(request(point))
    second = served(cache, request(point, question="another question?"))
    assert (second.cache_write_tokens, second.cache_read_tokens) == (0, prefix)
    assert second.total_tokens == second.input_tokens + prefix + 5 and second.quota_tokens == second.input_tokens + 5


def test_a_prefix_under_the_minimum_caches_nothing():
    cache, point = PromptCache(Clock()), CachePoint("system", 1)  # tools and one short system text
    usage = served(cache, request(point))
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (0, 0)


def test_two_points_read_the_longer_cached_prefix_and_write_the_rest():
    cache = PromptCache(Clock())
    short, long = CachePoint("messages", 0, 1), CachePoint("messages", 0, 2)
    served(cache, request(short))
    usage = served(cache, request(short, long))
    tokens = {p.tokens for p in prefixes(request(short, long), "m")}
    assert usage.cache_read_tokens == min(tokens) and usage.cache_write_tokens == max(tokens) - min(tokens)


def test_the_ttl_starts_again_on_each_hit_and_ends_after_five_minutes():
    clock = Clock()
    cache, point = PromptCache(clock), CachePoint("messages", 0, 1)
    served(cache, request(point))
    clock.now += 299
    assert served(cache, request(point)).cache_read_tokens  # a hit: five more minutes
    clock.now += 299
    assert served(cache, request(point)).cache_read_tokens
    clock.now += 301
    assert served(cache, request(point)).cache_write_tokens  # expired: written again
    hour = CachePoint("messages", 0, 1, "1h")
    served(cache, request(hour))
    clock.now += 3000
    assert served(cache, request(hour)).cache_read_tokens


def test_another_account_model_or_prefix_does_not_read_the_cache():
    cache, point = PromptCache(Clock()), CachePoint("messages", 0, 1)
    served(cache, request(point))
    assert served(cache, request(point, scope="222222222222")).cache_write_tokens
    assert served(cache, request(point), model="other").cache_write_tokens
    assert served(cache, request(point, doc=DOC + " changed")).cache_write_tokens


def test_the_cache_holds_at_most_max_entries():
    cache, point = PromptCache(Clock()), CachePoint("messages", 0, 1)
    first = request(point, scope="first")
    served(cache, first)
    for i in range(MAX_ENTRIES):
        cache._expiry[i.to_bytes(8, "big")] = 1e12
    served(cache, request(point, scope="newest"))
    assert len(cache._expiry) == MAX_ENTRIES
    assert served(cache, first).cache_write_tokens  # the oldest entry went first


def test_each_model_caches_from_its_own_minimum() -> None:
    assert min_prefix_tokens("anthropic.claude-3-7-sonnet-20250219-v1:0") == 1024
    assert min_prefix_tokens("anthropic.claude-sonnet-4-5-20250929-v1:0") == 1024
    assert min_prefix_tokens("amazon.nova-micro-v1:0") == 1024
    assert min_prefix_tokens("anthropic.claude-3-5-haiku-20241022-v1:0") == 2048
    assert min_prefix_tokens("anthropic.claude-haiku-4-5-20251001-v1:0") == 4096
    assert min_prefix_tokens("anthropic.claude-opus-4-5-20251101-v1:0") == 4096
    cache, req = PromptCache(), request(CachePoint("messages", 0, 1))
    prefix = prefixes(req, "m")[0].tokens
    assert MIN_PREFIX_TOKENS <= prefix < 2048
    assert not served_with(cache, req, 2048).cache_write_tokens  # too few for a 2,048 model
    assert served_with(cache, req, 1024).cache_write_tokens == prefix


def served_with(cache: PromptCache, req: ChatRequest, minimum: int) -> Usage:
    return cache.apply(req, "m", Usage(count_request(req), 5), minimum)


def test_writes_are_told_by_ttl_each_stretch_with_its_own_point_s_ttl_1h_first() -> None:
    cache = PromptCache(Clock())
    tools_hour, doc_minutes = CachePoint("tools", 1, 0, "1h"), CachePoint("messages", 0, 1, "5m")
    tools_only = prefixes(request(tools_hour, doc_minutes), "m")[0].tokens
    longest = prefixes(request(tools_hour, doc_minutes), "m")[1].tokens
    # The tools alone are under the minimum: the whole write is the 5-minute point's.
    first = served(cache, request(tools_hour, doc_minutes))
    assert tools_only < MIN_PREFIX_TOKENS <= longest
    assert first.cache_writes == (("5m", longest),) and first.cache_write_tokens == longest
    assert served(cache, request(tools_hour, doc_minutes)).cache_writes == ()  # read, nothing written
    # Two eligible points: up to the first is its 1h, from there to the second the 5m.
    long_doc = " ".join(f"v{i}" for i in range(2 * MIN_PREFIX_TOKENS))
    hour, minutes = CachePoint("messages", 0, 1, "1h"), CachePoint("messages", 0, 2, "5m")
    both = ChatRequest(messages=(Message("user", (Text(DOC), Text(long_doc), Text("q?"))),),
                       cache_points=(minutes, hour), cache_scope="222222222222")
    short, full = sorted(p.tokens for p in prefixes(both, "m"))
    usage = served(cache, both)
    assert usage.cache_writes == (("1h", short), ("5m", full - short))
    assert sum(n for _, n in usage.cache_writes) == usage.cache_write_tokens == full
