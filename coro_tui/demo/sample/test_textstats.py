"""Tests for textstats: run them with ``python3 -m unittest``."""

import unittest

from textstats import top_words, word_count


class WordCount(unittest.TestCase):
    def test_a_sentence(self) -> None:
        self.assertEqual(word_count("the quick brown fox"), 4)


class TopWords(unittest.TestCase):
    def test_most_frequent_first(self) -> None:
        self.assertEqual(top_words("b a b c b a", 2), [("b", 3), ("a", 2)])


if __name__ == "__main__":
    unittest.main()
