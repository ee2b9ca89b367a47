from __future__ import annotations

import pytest

from softswitch.media.dtmf import DtmfDetector, TelephoneEvent, event_payloads


def test_payload_layout_rfc4733() -> None:
    # event 11 ('#'), E=1, volume 10, duration 1280
    payload = bytes([11, 0x80 | 10, 0x05, 0x00])
    ev = TelephoneEvent.parse(payload)
    assert ev == TelephoneEvent(11, True, 10, 1280)
    assert ev.digit == "#"
    assert ev.serialize() == payload
    assert TelephoneEvent(16).digit == "!"
    assert TelephoneEvent(40).digit == "?"
    with pytest.raises(ValueError, match="shorter than 4 bytes"):
        TelephoneEvent.parse(b"\x01\x02")


def test_for_digit() -> None:
    assert TelephoneEvent.for_digit("*").event == 10
    assert TelephoneEvent.for_digit("d").event == 15
    assert TelephoneEvent.for_digit("!").event == 16
    for bad in ("x", "12", ""):
        with pytest.raises(ValueError, match="not a DTMF digit"):
            TelephoneEvent.for_digit(bad)


def test_event_payloads_shape() -> None:
    packets = event_payloads("7", duration=800, step=160)
    events = [TelephoneEvent.parse(p) for p, _ in packets]
    assert [m for _, m in packets] == [True] + [False] * (len(packets) - 1)
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.digit for e in events} == {"7"}


def test_detector_reports_each_event_once_despite_end_retransmissions() -> None:
    det = DtmfDetector()
    reports = []
    for ts, digit in ((1000, "1"), (3000, "2"), (5000, "2")):  # "2" twice: two presses, two timestamps
        for payload, _ in event_payloads(digit, duration=800):
            reports.append(det.feed(ssrc=9, timestamp=ts, payload=payload))
    assert [r for r in reports if r is not None] == [("1", 100), ("2", 100), ("2", 100)]


def test_late_end_from_previous_ssrc_timestamp_is_not_reported_again() -> None:
    det = DtmfDetector()
    end = TelephoneEvent.for_digit("3", end=True, duration=480).serialize()
    assert det.feed(ssrc=1, timestamp=100, payload=end) == ("3", 60)
    start = TelephoneEvent.for_digit("4", duration=160).serialize()
    assert det.feed(ssrc=1, timestamp=900, payload=start) is None
    assert det.feed(ssrc=1, timestamp=100, payload=end) is None  # reordered retransmission of "3"


def test_event_whose_end_packets_were_lost_is_reported_when_the_next_starts() -> None:
    det = DtmfDetector()
    for d in (160, 320, 480):
        assert det.feed(ssrc=1, timestamp=100, payload=TelephoneEvent(5, duration=d).serialize()) is None
    assert det.feed(ssrc=1, timestamp=2000, payload=TelephoneEvent(6, duration=160).serialize()) == ("5", 60)
    assert det.flush() == ("6", 20)
    assert det.flush() is None


def test_same_timestamp_on_another_ssrc_is_a_new_event() -> None:
    det = DtmfDetector()
    end = TelephoneEvent(1, end=True, duration=800).serialize()
    assert det.feed(ssrc=1, timestamp=100, payload=end) == ("1", 100)
    assert det.feed(ssrc=2, timestamp=100, payload=end) == ("1", 100)
