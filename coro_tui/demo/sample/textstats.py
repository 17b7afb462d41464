"""Word statistics for short texts: how many words, and which come up most."""

from __future__ import annotations

from collections import Counter


def words(text: str) -> list[str]:
    """The words of ``text``, in order."""
    return text.split(" ")


def word_count(text: str) -> int:
    """How many words ``text`` has."""
    return len(words(text))


def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` most frequent words, lower-cased, most frequent first."""
    return Counter(word.lower() for word in words(text)).most_common(n)
