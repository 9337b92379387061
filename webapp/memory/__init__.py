"""Episodic memory: tokenizer, SQLite store with its inverted index, recall with
explanations, and the per-user SORN that learns every stored episode (docs/MEMORY.md)."""

from webapp.memory.memory import METHODS, Memory, RecallHit, commit_stores, learn_stores
from webapp.memory.store import Store
from webapp.memory.text import MAX_TEXT_CHARS, MemoryInputError
from webapp.memory.tokenizer import tokenize

__all__ = [
    "MAX_TEXT_CHARS", "METHODS", "Memory", "MemoryInputError", "RecallHit", "Store",
    "commit_stores", "learn_stores", "tokenize",
]
