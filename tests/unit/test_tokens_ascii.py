"""``count_text``'s ``re`` path for ASCII text counts exactly as the ``regex`` rule does."""

from __future__ import annotations

import random

from outcrop.providers.tokens import TOKEN, count_text, split_tokens


def test_ascii_path_agrees_with_the_rule() -> None:
    for c in range(128):
        assert split_tokens(chr(c)) == TOKEN.findall(chr(c)), c
    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(chr(rng.randrange(128)) for _ in range(rng.randrange(60)))
        assert split_tokens(text) == TOKEN.findall(text), text
        assert count_text(text) == len(TOKEN.findall(text))


def test_non_ascii_text_keeps_the_unicode_rule() -> None:
    for text in ("héllo wörld", "e\u0301t\u00e9", "日本語のテキスト", "\u00a0a\u2003b", "x\x1cy\u0085"):
        assert split_tokens(text) == TOKEN.findall(text)
        assert count_text(text) == len(TOKEN.findall(text))
