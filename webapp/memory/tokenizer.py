"""Unicode-aware tokenizer with stable token ids.

Pipeline: NFKC normalization, casefold, then
- words in any script (``\\w`` runs, inner apostrophes kept: "don't"); a trailing
  possessive "'s" is dropped ("Caroline's" -> "caroline");
- Han, Hiragana and Katakana characters, which are written without spaces, become one
  token each (the standard unigram indexing of CJK text);
- emoji and other pictographic symbols are kept, one token each: in chat they carry
  meaning ("🎂" on a birthday);
- numbers are kept as written ("2023", "3" and "5" from "3.5");
- English stopwords are dropped and Latin-script words get a light stemmer (plurals,
  -ing, -ed), so "paintings", "painting" and "painted" meet.
Token ids are a 63-bit blake2b hash of the token: stable across restarts and machines,
with no vocabulary file to keep.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN = re.compile(
    rf"[{_CJK}]"  # one CJK character
    rf"|(?:(?![{_CJK}])\w)+(?:'(?:(?![{_CJK}])\w)+)*"  # a word, inner apostrophes kept
    r"|[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff]"  # emoji and pictographs
)
# The same matches in ASCII text (no CJK, no emoji; \w is [0-9a-z_] once lowercased), found
# 2-3x faster: most chat messages are ASCII.
_ASCII_TOKEN = re.compile(r"[0-9a-z_]+(?:'[0-9a-z_]+)*")

_STOPWORD_LIST = """
    a about above after again against all am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each few for from further had hadn't has hasn't have
    haven't having he he'd he'll he's her here here's hers herself him himself his how how's
    i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my
    myself no nor not of off on once only or other ought our ours ourselves out over own same
    shan't she she'd she'll she's should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this
    those through to too under until up very was wasn't we we'd we'll we're we've were weren't
    what what's when when's where where's which while who who's whom why why's will with won't
    would wouldn't you you'd you'll you're you've your yours yourself yourselves
    s t d ll m re ve just also yeah oh really
    go goes going went gone get gets got getting like likely kind type would might say said
    thing things something anything lot lots much many
"""
# NLTK's English list, contraction stubs, chat fillers, and light verbs and hedges that
# frame questions ("what kind of", "would she likely", "when did he go") without content.
STOPWORDS = frozenset(_STOPWORD_LIST.split())

_LATIN_WORD = re.compile(r"[a-z]+")


def _measure(root: str) -> int:
    """Porter's m: the number of vowel-consonant runs in `root`."""
    return len(re.findall(r"[aeiouy]+[^aeiouy]+", root[0] + root[1:].replace("y", "i")))


def _ends_cvc(root: str) -> bool:
    return re.search("[^aeiou][aeiouy][^aeiouwxy]$", root) is not None


def stem(word: str) -> str:
    """A light English stemmer: plurals, -ing / -ed and a final e, with Porter's repairs
    ("hiking" and "hike" -> "hike", "dancing" and "dance" -> "danc", "planned" -> "plan");
    short and non-Latin words are left alone."""
    if len(word) < 4 or not _LATIN_WORD.fullmatch(word):
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        root = word[: -len(suffix)]
        if word.endswith(suffix) and len(root) >= 3 and re.search("[aeiouy]", root):
            if root[-1] == root[-2] and root[-1] not in "aeioulsz":
                return root[:-1]
            return root + "e" if _measure(root) == 1 and _ends_cvc(root) else root
    if word.endswith("e") and len(word) > 3:
        root = word[:-1]
        if _measure(root) > 1 or (_measure(root) == 1 and not _ends_cvc(root)):
            return root
    return word


@lru_cache(maxsize=65536)
def _normalize_word(word: str) -> str | None:
    if word.endswith("'s"):
        word = word[:-2]
    if not word or word in STOPWORDS:
        return None
    return stem(word)


def tokenize(text: str) -> list[str]:
    """Tokens of `text` in order (repeats kept), ready for the index and the network."""
    return [token for token in map(_normalize_word, _words(text)) if token]


def _words(text: str) -> list[str]:
    """The words of `text`, before stopwords and stemming."""
    if text.isascii():  # NFKC leaves ASCII text as it is, and casefold is lower
        return _ASCII_TOKEN.findall(text.lower())
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return _TOKEN.findall(folded)


@lru_cache(maxsize=65536)
def token_id(token: str) -> int:
    """Stable signed 63-bit id of a token (fits SQLite's and PostgreSQL's BIGINT)."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
