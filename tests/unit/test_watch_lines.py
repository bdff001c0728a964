"""Splitting a watch stream into its JSON lines, whatever the chunks' boundaries."""

from __future__ import annotations

import pytest

from barbeque.adapters.watch import split_lines

pytestmark = pytest.mark.unit


def feed(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    buffer = bytearray()
    lines = [line for chunk in chunks for line in split_lines(buffer, chunk)]
    return lines, bytes(buffer)


def test_several_lines_in_one_chunk_come_out_in_order() -> None:
    assert feed([b'{"a":1}\n{"b":2}\n{"c"']) == ([b'{"a":1}', b'{"b":2}'], b'{"c"')


def test_a_line_longer_than_many_chunks_comes_out_whole() -> None:
    line = b'{"message":"' + b"x" * 300_000 + b'"}'
    chunks = [line[i : i + 16_384] for i in range(0, len(line), 16_384)] + [b"\n{"]
    assert feed(chunks) == ([line], b"{")


def test_a_chunk_ending_exactly_at_a_newline_leaves_nothing_behind() -> None:
    assert feed([b'{"a"', b":1}\n"]) == ([b'{"a":1}'], b"")


def test_blank_lines_are_skipped() -> None:
    assert feed([b"\n", b'{"a":1}\n\n  \n{"b":2}\n']) == ([b'{"a":1}', b'{"b":2}'], b"")
