"""A CLIP tokenizer built locally (no hub): byte-level BPE whose merges spell each caption word as one token.

The vocabulary follows CLIP's layout: the 256 byte symbols, the same with the end-of-word mark '</w>', one
token per merge, then <|startoftext|> and <|endoftext|> (also the pad token, as in SD v1's tokenizer). Any
other text still tokenizes, into byte symbols. The merges come from running BPE on the caption words
until each word is a single token (no hub download, no corpus).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """GPT-2/CLIP's reversible byte -> printable unicode map, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return tuple(mapping[b] for b in range(256))


def vocabulary(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) for byte-level BPE in which every word of `words` (lowercase ASCII) is one token.

    The merges are BPE's own procedure run on the words until each is one symbol: merge the most frequent
    adjacent pair (ties: the first in sorted order) everywhere, repeat. Replaying merges in this order is what
    BPE does at tokenization, so each word comes out whole (a hand-written chain per word can be cut short by
    another word's earlier merge, e.g. 'i n' of 'inverted' inside 'nine')."""
    symbols = byte_symbols()
    tokens = list(symbols) + [s + "</w>" for s in symbols]
    for word in words:
        if not word.isascii() or not word.isalpha() or word != word.lower():
            raise ValueError(f"caption words must be lowercase ASCII letters, got {word!r}")
    pieces = [list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(set(words))]
    merges: list[tuple[str, str]] = []
    while any(len(p) > 1 for p in pieces):
        counts: dict[tuple[str, str], int] = {}
        for p in pieces:
            for pair in zip(p, p[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        tokens.append("".join(best))
        for k, p in enumerate(pieces):
            merged, i = [], 0
            while i < len(p):
                if i + 1 < len(p) and (p[i], p[i + 1]) == best:
                    merged.append(p[i] + p[i + 1])
                    i += 2
                else:
                    merged.append(p[i])
                    i += 1
            pieces[k] = merged
    tokens = list(dict.fromkeys(tokens)) + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer(words: Iterable[str], max_length: int = 16):
    """A transformers CLIPTokenizer over `words`, padding to `max_length` (SD's is 77) with the EOS token."""
    from transformers import CLIPTokenizer

    words = list(words)
    vocab, merges = vocabulary(words)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    for word in words:  # the written merges must spell each word as one token; a clash of chains would not
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"the local BPE splits {word!r} into {len(ids)} tokens")
    return tokenizer
