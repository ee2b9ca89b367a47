"""Hypothesis properties of the stream framer.

* Any split of a stream of valid messages and keep-alives yields exactly those messages and keep-alives.
* Any bytes, split anywhere, yield the same items as fed whole; nothing but items come out (no exception);
  the items re-encode to a prefix of the input; nothing follows a FramingError.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.framing import (
    FramedItem,
    FramingError,
    KeepAlivePing,
    KeepAlivePong,
    Message,
    StreamFramer,
)

START_LINES = [
    b"INVITE sip:7001@cc.example.com SIP/2.0",
    b"REGISTER sip:cc.example.com SIP/2.0",
    b"SIP/2.0 200 OK",
    b"SIP/2.0 180 Ringing",
    b"MESSAGE sip:sam@cc.example.com SIP/2.0",
]
NAME = st.sampled_from([b"Via", b"v", b"From", b"To", b"Call-ID", b"CSeq", b"X-Long", b"Lx", b"Contact"])
VALUE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
LENGTH_NAME = st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"l", b"L"])
SPACING = st.sampled_from([b":", b": ", b" : ", b":\t", b":\r\n "])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(START_LINES))
    headers = draw(st.lists(st.tuples(NAME, VALUE), max_size=6))
    body = draw(
        st.one_of(st.just(b""), st.binary(max_size=200), st.sampled_from([b"\r\n\r\n", b"l: 9\r\n\r\n"]))
    )
    position = draw(st.integers(min_value=0, max_value=len(headers)))
    length_line = draw(LENGTH_NAME) + draw(SPACING) + str(len(body)).encode()
    lines = [name + b": " + value for name, value in headers]
    lines.insert(position, length_line)
    return start + b"\r\n" + b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[FramedItem]]:
    """A stream and the items it must frame into. A pong is only ever placed right before a message:
    after it, a CRLF pair would read as a ping, and at the very end it would still be undecided."""
    items: list[FramedItem] = []
    data = b""
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(["message", "ping", "pong+message"]))
        if kind == "ping":
            items.append(KeepAlivePing())
            data += b"\r\n\r\n"
            continue
        if kind == "pong+message":
            items.append(KeepAlivePong())
            data += b"\r\n"
        message = draw(messages())
        items.append(Message(message))
        data += message
    return data, items


def split_feed(data: bytes, cuts: list[int], **kwargs: int) -> list[FramedItem]:
    framer = StreamFramer(**kwargs)
    points = sorted({min(c, len(data)) for c in cuts})
    items: list[FramedItem] = []
    previous = 0
    for point in [*points, len(data)]:
        items += framer.feed(data[previous:point])
        previous = point
    return items


def render(items: list[FramedItem]) -> bytes:
    out = b""
    for item in items:
        match item:
            case Message(data):
                out += data
            case KeepAlivePing():
                out += b"\r\n\r\n"
            case KeepAlivePong():
                out += b"\r\n"
            case FramingError():
                pass
    return out


CUTS = st.lists(st.integers(min_value=0, max_value=2000), max_size=40)


@settings(max_examples=300, deadline=None)
@given(streams(), CUTS)
def test_any_split_of_valid_messages_yields_the_same_items(
    stream: tuple[bytes, list[FramedItem]], cuts: list[int]
) -> None:
    data, expected = stream
    assert StreamFramer().feed(data) == expected
    assert split_feed(data, cuts) == expected
    assert split_feed(data, list(range(len(data)))) == expected  # every byte boundary


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.lists(
            st.sampled_from(
                [b"\r\n", b"\r", b"\n", b"l: 3", b"l: -1", b"Content-Length: 0", b"abc", b":", b" "]
            ),
            max_size=60,
        ).map(b"".join),
        st.tuples(streams(), st.binary(max_size=30)).map(lambda t: t[0][0] + t[1]),
    ),
    CUTS,
)
def test_arbitrary_bytes_frame_the_same_however_split_and_never_raise(data: bytes, cuts: list[int]) -> None:
    limits = {"max_message_size": 300, "max_header_size": 120}
    whole = StreamFramer(**limits).feed(data)
    assert split_feed(data, cuts, **limits) == whole
    assert all(isinstance(item, Message | KeepAlivePing | KeepAlivePong | FramingError) for item in whole)
    errors = [i for i, item in enumerate(whole) if isinstance(item, FramingError)]
    assert errors in ([], [len(whole) - 1])
    assert data.startswith(render(whole))
    for item in whole:
        if isinstance(item, Message):
            assert len(item.data) <= 300
