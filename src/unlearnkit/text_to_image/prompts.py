"""The captioned-digits vocabulary: ten digits, three stroke styles, one caption per (digit, style) pair.

A caption names the style first and the digit last ("a thick handwritten seven"), so the digit is the last
word token of every caption (the token UCE edits) and the style the second. A concept is a digit or a style;
its prompts are every caption that names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from ..errors import ConfigError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STYLES = ("thick", "thin", "inverted")
NULL_PROMPT = ""


def caption(digit: int, style: int) -> str:
    word = STYLES[style]
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word} handwritten {DIGITS[digit]}"


# Prompt index p = digit * len(STYLES) + style: the label of every captioned sample.
PROMPTS = tuple(caption(d, s) for d in range(len(DIGITS)) for s in range(len(STYLES)))


def prompt_digit(index: int) -> int:
    return index // len(STYLES)


def prompt_style(index: int) -> int:
    return index % len(STYLES)


def words() -> list[str]:
    """Every word of every caption (the tokenizer's vocabulary)."""
    return sorted({w for p in PROMPTS for w in p.split()})


@dataclass(frozen=True)
class Concept:
    """A digit or a style of the captioned digits."""

    name: str
    kind: Literal["digit", "style"]
    index: int

    @property
    def prompts(self) -> list[int]:
        """Indices (into PROMPTS) of the captions that name this concept."""
        of = prompt_digit if self.kind == "digit" else prompt_style
        return [p for p in range(len(PROMPTS)) if of(p) == self.index]

    @property
    def snippet(self) -> str:
        """The words of a caption that name the concept (FMN's target tokens)."""
        return self.name


CONCEPTS: dict[str, Concept] = {**{n: Concept(n, "digit", i) for i, n in enumerate(DIGITS)},
                                **{n: Concept(n, "style", i) for i, n in enumerate(STYLES)}}


def parse_concepts(spec: str | Iterable[str]) -> tuple[Concept, ...]:
    """Concepts from 'seven', 'seven+three' (erased together) or a list of names; unknown names fail in one line."""
    names = [n.strip().lower() for n in (spec.replace(",", "+").split("+") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"no concept given; expected one or more of: {', '.join(CONCEPTS)}")
    unknown = [n for n in names if n not in CONCEPTS]
    if unknown:
        raise ConfigError(f"unknown concept(s) {unknown}; expected digits or styles: {', '.join(CONCEPTS)}")
    return tuple(dict.fromkeys(CONCEPTS[n] for n in names))


def concept_prompts(concepts: Iterable[Concept]) -> list[int]:
    """The prompts that name any of `concepts`, sorted."""
    return sorted({p for c in concepts for p in c.prompts})
