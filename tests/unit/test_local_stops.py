"""Stop sequences over streamed text (the local model's text phase)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from agentguild.llm._local_stops import StopScanner


def _scan(pieces: list[str], stops: list[str]) -> str:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(piece) for piece in pieces)
    return out + scanner.flush()


def test_text_without_stops_passes_through() -> None:
    assert _scan(["Hello", " wor", "ld"], ["<|im_end|>"]) == "Hello world"


def test_a_stop_split_across_pieces_is_cut_and_never_emitted() -> None:
    scanner = StopScanner(["<|im_end|>"])

    emitted = [scanner.feed(p) for p in ["Paris.<|im", "_e", "nd|>more"]]

    assert emitted == ["Paris.", "", ""]
    assert scanner.stopped
    assert scanner.flush() == ""


def test_a_false_start_is_released_when_it_stops_matching() -> None:
    scanner = StopScanner(["STOP"])

    assert scanner.feed("a ST") == "a "
    assert scanner.feed("ART") == "START"


def test_earliest_of_several_stops_wins() -> None:
    assert _scan(["one two three"], ["three", "two"]) == "one "


@given(
    text=st.text(alphabet="abST<>|", max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
    stops=st.lists(st.text(alphabet="abST<>|", min_size=1, max_size=4), max_size=3),
)
def test_any_chunking_emits_the_text_up_to_the_first_stop(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in pairwise(bounds)]
    # Generation halts as soon as a stop is complete: find that moment character by character.
    first = next(
        (
            min(end - len(s) for s in stops if text[:end].endswith(s))
            for end in range(len(text) + 1)
            if any(text[:end].endswith(s) for s in stops)
        ),
        len(text),
    )

    assert _scan(pieces, stops) == text[:first]


def test_the_stop_completing_first_wins_whatever_the_chunking() -> None:
    assert _scan(["ab", "a"], ["b", "aba"]) == "a"
    assert _scan(["aba"], ["b", "aba"]) == "a"
