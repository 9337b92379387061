"""Input validation: bad text gets a clear MemoryInputError, control characters are removed."""

import pytest

from webapp.memory.text import MAX_TEXT_CHARS, MemoryInputError, clean_text, is_blank


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", "\x00\x01", b"  "])
def test_empty_or_blank_text_is_refused(text):
    with pytest.raises(MemoryInputError, match="empty"):
        clean_text(text)


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", "\x00\x01", "\r\x85\x7f "])
def test_is_blank_says_what_clean_text_refuses_as_empty(text):
    assert is_blank(text)
    with pytest.raises(MemoryInputError, match="empty"):
        clean_text(text)


@pytest.mark.parametrize("text", ["a", "\x00a\x00", " x "])
def test_text_with_something_left_is_not_blank(text):
    assert not is_blank(text)
    assert clean_text(text).strip()


def test_text_over_the_limit_is_refused_and_the_limit_itself_is_accepted():
    assert len(clean_text("a" * MAX_TEXT_CHARS)) == MAX_TEXT_CHARS
    with pytest.raises(MemoryInputError, match="too long"):
        clean_text("a" * (MAX_TEXT_CHARS + 1))


def test_invalid_utf8_bytes_are_refused_and_valid_bytes_decoded():
    with pytest.raises(MemoryInputError, match="UTF-8"):
        clean_text(b"caf\xe9")
    assert clean_text("café".encode()) == "café"


def test_lone_surrogates_are_refused():
    with pytest.raises(MemoryInputError, match="surrogate"):
        clean_text("broken \ud800 text")


def test_control_characters_are_removed_but_tabs_and_newlines_kept():
    assert clean_text("a\x00b\x07c\x1b[31md\x7f\x85e") == "abc[31mde"
    assert clean_text("line1\r\nline2\rline3\tend") == "line1\nline2\nline3\tend"


def test_non_text_is_refused():
    with pytest.raises(MemoryInputError):
        clean_text(42)  # type: ignore[arg-type]
