"""Decoding the server-sent event stream of an OpenAI-compatible chat completion."""

import json

import pytest

from webapp.llm import LLMError
from webapp.llm.sse import StreamDecoder


def chunk(content=None, finish_reason=None):
    delta = {} if content is None else {"content": content}
    data = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def decode(*parts):
    decoder = StreamDecoder()
    pieces = [piece for part in parts for piece in decoder.feed(part)]
    return pieces, decoder.done


def test_pieces_come_out_even_when_lines_are_split_across_reads():
    stream = chunk("Hel") + chunk("lo") + b"data: [DONE]\n\n"
    pieces, done = decode(*(stream[i : i + 7] for i in range(0, len(stream), 7)))
    assert "".join(pieces) == "Hello" and done


def test_keep_alives_comments_other_fields_usage_and_crlf_are_skipped():
    usage = b'data: {"choices": [], "usage": {"total_tokens": 3}}\r\n\r\n'
    stream = b": ping\n\nevent: message\nid: 1\n" + chunk("Hi") + usage + b"data: [DONE]\r\n"
    assert decode(stream) == (["Hi"], True)


def test_a_finish_reason_ends_the_stream_without_done():
    assert decode(chunk("Bye"), chunk(finish_reason="stop")) == (["Bye"], True)


def test_a_stream_without_done_or_finish_reason_is_not_done():
    assert decode(chunk("Half")) == (["Half"], False)


@pytest.mark.parametrize(
    "line",
    [b"data: {oops\n", b"data: [1, 2]\n", b'data: {"choices": ["x"]}\n', b"<html>\n"],
)
def test_unreadable_lines_are_a_bad_stream(line):
    with pytest.raises(LLMError) as raised:
        decode(line)
    assert raised.value.code == "bad_stream"


def test_an_error_chunk_is_a_server_error_with_its_message():
    with pytest.raises(LLMError) as raised:
        decode(b'data: {"error": {"message": "model overloaded"}}\n')
    assert raised.value.code == "server_error"
    assert "model overloaded" in raised.value.message


def test_the_last_line_counts_without_a_line_break_when_the_stream_ends():
    decoder = StreamDecoder()
    pieces = list(decoder.feed(chunk("Bye") + b"data: [DONE]")) + list(decoder.finish())
    assert (pieces, decoder.done) == (["Bye"], True)


def test_a_data_line_cut_in_the_middle_leaves_the_stream_unfinished():
    decoder = StreamDecoder()
    pieces = list(decoder.feed(chunk("Half") + b'data: {"choices": [{"del')) + list(
        decoder.finish())
    assert (pieces, decoder.done) == (["Half"], False)


@pytest.mark.parametrize("page", [b"<html><body>Sign in</body></html>",
                                  b'{"choices": [{"message": {"content": "Hi"}}]}'])
def test_a_body_that_is_not_an_event_stream_is_a_bad_stream_even_on_one_line(page):
    decoder = StreamDecoder()
    assert list(decoder.feed(page)) == []
    with pytest.raises(LLMError) as raised:
        list(decoder.finish())
    assert raised.value.code == "bad_stream"


@pytest.mark.parametrize("error", [b'{"code": 500}', b'"' + b"overloaded " * 500 + b'"'])
def test_an_error_chunk_without_a_message_or_with_a_huge_one_still_reads_well(error):
    with pytest.raises(LLMError) as raised:
        decode(b'data: {"error": ' + error + b"}\n")
    assert raised.value.code == "server_error"
    assert "None" not in raised.value.message and len(raised.value.message) < 400


def test_an_endless_line_is_a_bad_stream_before_it_fills_the_memory():
    """A body without line breaks (a broken server, binary data) would otherwise be
    buffered whole, and copied once per read, for as long as it flows."""
    decoder = StreamDecoder()
    with pytest.raises(LLMError) as raised:
        for _ in range(10_000):  # 80 MB at most
            list(decoder.feed(b"data: " + b"x" * 8186))
    assert raised.value.code == "bad_stream"
    assert "line" in raised.value.message


@pytest.mark.parametrize("line, shown", [
    (b"<html><head><title>Sign in</title></head><body>Sign in to go on</body></html>",
     "'<html><head><title>Sign in</title></head><body>Sign in to go on</body></html>'"),
    ("Straße\x00\x1b[31mrot\tund blau".encode(), "'Straße [31mrot und blau'"),
    (b"\xff\xfe<" + b"x" * 200, "'\ufffd\ufffd<" + "x" * 77 + "…'"),
])
def test_an_unexpected_line_is_quoted_as_readable_text(line, shown):
    """The user reads the start of what came instead of an event stream: decoded, on one
    line, without control characters and cut short, not Python's b'...' of the bytes."""
    decoder = StreamDecoder()
    with pytest.raises(LLMError) as raised:
        list(decoder.feed(line + b"\n"))
    assert f"unexpected line {shown}" in raised.value.message
    assert "b'" not in raised.value.message and "\\x" not in raised.value.message
