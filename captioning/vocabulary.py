"""Word vocabulary of the captions: tokenisation, encoding to ids and decoding back to text."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

# A word (letters or digits, with an apostrophe part such as "man's") or one punctuation mark.
_TOKEN_PATTERN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "'s"}


def tokenize(caption: str) -> list[str]:
    """Lower-case a caption and split it into words, with punctuation as tokens of its own."""
    return _TOKEN_PATTERN.findall(caption.lower())


def detokenize(words: list[str]) -> str:
    """Join words into readable text, attaching punctuation to the word before it."""
    text = ""
    for word in words:
        text += word if (not text or word in _NO_SPACE_BEFORE) else " " + word
    return text


class Vocabulary:
    """Maps words to ids; ids 0-3 are `<pad>`, `<bos>`, `<eos>`, `<unk>`."""

    def __init__(self, tokens: list[str]) -> None:
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"A vocabulary starts with {SPECIAL_TOKENS}, got {tokens[:4]}")
        self.tokens = list(tokens)
        self.index = {token: position for position, token in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIAL_TOKENS))

    @classmethod
    def build(cls, captions: Iterable[str], min_frequency: int = 5) -> Vocabulary:
        """Keep the words seen at least `min_frequency` times, most frequent first (ties alphabetical)."""
        counts = Counter(word for caption in captions for word in tokenize(caption))
        words = sorted(
            (word for word, count in counts.items() if count >= min_frequency and word not in SPECIAL_TOKENS),
            key=lambda word: (-counts[word], word),
        )
        return cls(list(SPECIAL_TOKENS) + words)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def encode(self, caption: str, max_length: int) -> list[int]:
        """`<bos>` + at most `max_length` word ids + `<eos>`; unknown words become `<unk>`."""
        words = tokenize(caption)[:max_length]
        return [self.bos_id] + [self.index.get(word, self.unk_id) for word in words] + [self.eos_id]

    def words(self, ids: Iterable[int]) -> list[str]:
        """The words of a generated id sequence: stops at `<eos>`, skips `<bos>` and `<pad>`."""
        words = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            if token_id not in (self.bos_id, self.pad_id):
                words.append(self.tokens[token_id])
        return words

    def decode(self, ids: Iterable[int]) -> str:
        return detokenize(self.words(ids))
