"""RFC 3261 §12 dialog state: creation on both sides, requests within the dialog, CSeq ordering."""

from __future__ import annotations

import pytest

from softswitch.sip.dialog import Dialog
from softswitch.sip.errors import SipParseError
from softswitch.sip.message import Request, Response
from softswitch.sip.parser import parse_message


def message(lines: list[str], body: bytes = b"") -> Request | Response:
    text = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""]).encode() + body
    parsed = parse_message(text)
    assert isinstance(parsed, Request | Response)
    return parsed


def invite(
    *,
    record_route: tuple[str, ...] = (),
    uri: str = "sip:bob@biloxi.example.com",
    contact: str | None = "<sip:alice@192.0.2.10:5060;transport=udp>;expires=60",
) -> Request:
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds",
        *(f"Record-Route: {value}" for value in record_route),
        "Max-Forwards: 70",
        'To: "Bob" <sip:bob@biloxi.example.com>',
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    request = message(lines)
    assert isinstance(request, Request)
    return request


def response_to(
    request: Request,
    status: int,
    *,
    to_tag: str | None = "a6c85cf",
    record_route: tuple[str, ...] = (),
    contact: str | None = "<sip:bob@192.0.2.4>",
) -> Response:
    headers: list[tuple[str, str]] = [("Record-Route", value) for value in record_route]
    if contact is not None:
        headers.append(("Contact", contact))
    response = request.reply(status, to_tag=to_tag, headers=headers)
    parsed = parse_message(bytes(response))
    assert isinstance(parsed, Response)
    return parsed


P1 = "<sip:p1.example.com;lr>"
P2 = "<sip:p2.example.com;lr>"
P3 = "<sip:p3.example.com;lr>"


# ---------------------------------------------------------------------------------------------------------
# creation
# ---------------------------------------------------------------------------------------------------------


def test_uas_dialog_takes_record_route_as_received_and_the_contact_as_target() -> None:
    request = invite(record_route=(f"{P1}, {P2}", P3))
    dialog = Dialog.for_uas(request, "ourtag")
    assert dialog.id == ("a84b4c76e66710@pc33.atlanta.example.com", "ourtag", "1928301774")
    assert dialog.route_set == [P1, P2, P3]
    assert dialog.remote_target == "sip:alice@192.0.2.10:5060;transport=udp"
    assert dialog.remote_seq == 314159
    assert dialog.local_seq == 0
    assert dialog.local_uri == '"Bob" <sip:bob@biloxi.example.com>'
    assert dialog.remote_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert dialog.secure is False


def test_uas_dialog_is_secure_for_a_sips_request_uri() -> None:
    assert Dialog.for_uas(invite(uri="sips:bob@biloxi.example.com"), "t").secure is True


def test_uas_dialog_needs_a_contact() -> None:
    with pytest.raises(SipParseError) as info:
        Dialog.for_uas(invite(contact=None), "t")
    assert info.value.header == "Contact"


def test_uac_dialog_reverses_the_record_route_of_the_response() -> None:
    request = invite()
    response = response_to(request, 200, record_route=(f"{P1}, {P2}", P3))
    dialog = Dialog.for_uac(request, response)
    assert dialog.id == ("a84b4c76e66710@pc33.atlanta.example.com", "1928301774", "a6c85cf")
    assert dialog.route_set == [P3, P2, P1]
    assert dialog.remote_target == "sip:bob@192.0.2.4"
    assert dialog.local_seq == 314159
    assert dialog.remote_seq is None
    assert dialog.local_uri == '"Alice" <sip:alice@atlanta.example.com>'
    assert dialog.remote_uri == '"Bob" <sip:bob@biloxi.example.com>'


def test_uac_early_dialog_without_contact_targets_the_request_uri_until_the_2xx() -> None:
    request = invite()
    ringing = response_to(request, 180, contact=None)
    dialog = Dialog.for_uac(request, ringing)
    assert dialog.remote_target == "sip:bob@biloxi.example.com"
    ok = response_to(request, 200, record_route=(P1,), contact="<sip:bob@192.0.2.99:5070>")
    dialog.update_from_response(ok)
    assert dialog.remote_target == "sip:bob@192.0.2.99:5070"
    assert dialog.route_set == [P1]


def test_uac_dialog_needs_a_to_tag() -> None:
    request = invite()
    with pytest.raises(SipParseError):
        Dialog.for_uac(request, response_to(request, 180, to_tag=None))


# ---------------------------------------------------------------------------------------------------------
# requests within the dialog (§12.2.1.1)
# ---------------------------------------------------------------------------------------------------------

VIA = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKnew;rport"


def round_trip(request: Request) -> Request:
    parsed = parse_message(bytes(request))
    assert isinstance(parsed, Request)
    return parsed


def test_request_without_route_set_goes_to_the_remote_target() -> None:
    dialog = Dialog.for_uac(invite(), response_to(invite(), 200))
    bye = round_trip(dialog.create_request("BYE", via=VIA, contact=None))
    assert str(bye.uri) == "sip:bob@192.0.2.4"
    assert "route" not in bye.headers
    assert bye.cseq.seq == 314160 and bye.cseq.method == "BYE"
    assert bye.from_.tag == "1928301774" and bye.to.tag == "a6c85cf"
    assert bye.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert bye.max_forwards == 70
    assert "contact" not in bye.headers
    assert dialog.local_seq == 314160


def test_loose_routing_keeps_the_request_uri_and_lists_the_route_set() -> None:
    dialog = Dialog.for_uas(invite(record_route=(P1, P2)), "ourtag")
    reinvite = round_trip(
        dialog.create_request(
            "INVITE",
            via=VIA,
            contact="sip:softswitch@198.51.100.1:5060",
            body=b"v=0\r\n",
            content_type="application/sdp",
        )
    )
    assert str(reinvite.uri) == "sip:alice@192.0.2.10:5060;transport=udp"
    assert reinvite.headers.values("route") == [P1, P2]
    assert reinvite.headers.get("contact") == "<sip:softswitch@198.51.100.1:5060>"
    assert reinvite.body == b"v=0\r\n" and reinvite.content_type == "application/sdp"
    # A UAS's first request: the local sequence number was empty.
    assert reinvite.cseq.seq == 1
    assert reinvite.from_.tag == "ourtag" and reinvite.to.tag == "1928301774"
    assert str(reinvite.to.uri) == "sip:alice@atlanta.example.com"


def test_strict_router_goes_into_the_request_uri_and_the_target_becomes_the_last_route() -> None:
    strict = "<sip:strict.example.com;maddr=10.0.0.1;method=INVITE>"
    dialog = Dialog.for_uas(invite(record_route=(strict, P2)), "ourtag")
    bye = round_trip(dialog.create_request("BYE", via=VIA, contact=None))
    # §12.2.1.1: the first route's URI, stripped of parameters not allowed in a Request-URI (method).
    assert str(bye.uri) == "sip:strict.example.com;maddr=10.0.0.1"
    assert bye.headers.values("route") == [P2, "<sip:alice@192.0.2.10:5060;transport=udp>"]


def test_ack_and_cancel_take_the_invite_cseq_and_leave_the_local_sequence() -> None:
    dialog = Dialog.for_uac(invite(), response_to(invite(), 200))
    ack = dialog.create_request("ACK", via=VIA, contact=None, cseq=314159)
    assert ack.cseq.seq == 314159 and ack.cseq.method == "ACK"
    assert dialog.local_seq == 314159
    with pytest.raises(ValueError):
        dialog.create_request("ACK", via=VIA, contact=None)


def test_sequence_numbers_increase_by_one_per_request() -> None:
    dialog = Dialog.for_uac(invite(), response_to(invite(), 200))
    numbers = [dialog.create_request(m, via=VIA, contact=None).cseq.seq for m in ("INFO", "UPDATE", "BYE")]
    assert numbers == [314160, 314161, 314162]


# ---------------------------------------------------------------------------------------------------------
# the peer's requests (§12.2.2)
# ---------------------------------------------------------------------------------------------------------


def in_dialog(method: str, seq: int) -> Request:
    request = message(
        [
            f"{method} sip:softswitch@198.51.100.1 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKx" + str(seq),
            "Max-Forwards: 70",
            "From: <sip:bob@biloxi.example.com>;tag=a6c85cf",
            "To: <sip:alice@atlanta.example.com>;tag=1928301774",
            "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
            f"CSeq: {seq} {method}",
            "Contact: <sip:bob@192.0.2.200>",
        ]
    )
    assert isinstance(request, Request)
    return request


def test_remote_cseq_empty_accepts_anything_then_orders() -> None:
    dialog = Dialog.for_uac(invite(), response_to(invite(), 200))
    assert dialog.accepts_remote_cseq(in_dialog("INFO", 7))
    assert dialog.remote_seq == 7
    assert dialog.accepts_remote_cseq(in_dialog("INFO", 8))
    assert not dialog.accepts_remote_cseq(in_dialog("BYE", 5))
    assert dialog.remote_seq == 8
    assert dialog.accepts_remote_cseq(in_dialog("ACK", 1))  # ACK carries its INVITE's number
    assert dialog.remote_seq == 8


def test_uas_remote_cseq_starts_at_the_invite() -> None:
    dialog = Dialog.for_uas(invite(), "ourtag")
    assert not dialog.accepts_remote_cseq(in_dialog("BYE", 314158))
    assert dialog.accepts_remote_cseq(in_dialog("BYE", 314160))


def test_target_refresh_follows_the_contact() -> None:
    dialog = Dialog.for_uac(invite(), response_to(invite(), 200))
    dialog.refresh_target(in_dialog("INVITE", 1))
    assert dialog.remote_target == "sip:bob@192.0.2.200"
