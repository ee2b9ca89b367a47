"""SIP dialogs (RFC 3261 §12).

A `Dialog` is the state §12 names — Call-ID, local and remote tag, local and remote URI, remote target,
route set, local and remote sequence numbers, and the secure flag — with the three things that state is
for:

* creating it, from the INVITE we received and our tag (UAS, §12.1.1) or from the INVITE we sent and the
  response that carried the peer's tag (UAC, §12.1.2): `Dialog.for_uas`, `Dialog.for_uac`;
* building a request inside it (§12.2.1.1), loose routing when the first route carries `;lr`, the
  RFC 2543 strict-routing form otherwise: `create_request`;
* checking the order of the peer's requests (§12.2.2): `accepts_remote_cseq`, and following the peer's
  target refreshes (§12.2.1.2, §12.2.2): `refresh_target`.

A dialog is identified by (Call-ID, local tag, remote tag): `Dialog.id`. The dialog does not know whether
it is early or confirmed, nor which usage it serves: that is the INVITE usage's business (sip/invite.py).

Not here: the dialog state machine for non-INVITE usages (SUBSCRIBE/NOTIFY, RFC 6665), sending requests
over the route set's first hop (we always send on the leg's flow; see sip/invite.py), and §12.2.1.1's
rule that a SIPS dialog must use TLS on every hop (the transport's concern).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from softswitch.sip.errors import SipParseError
from softswitch.sip.headers import NameAddr, parse_name_addr
from softswitch.sip.message import Headers, Message, Request, Response
from softswitch.sip.uri import SipUri

__all__ = ["Dialog", "DialogId"]

#: (Call-ID, local tag, remote tag), the dialog identifier of §12.
DialogId = tuple[str, str, str]

#: URI parameters §19.1.1 (Table 1) does not allow in a Request-URI; stripped from a strict route.
_NOT_IN_REQUEST_URI = ("method",)


def _without_tag(address: NameAddr) -> str:
    """A From/To value as name-addr text without its tag (the dialog's local or remote URI)."""
    params = {k: v for k, v in address.params.items() if k != "tag"}
    return str(NameAddr(uri=address.uri, display=address.display, params=params))


def _contact_uri(message: Message) -> str | None:
    contacts = message.contacts
    return str(contacts[0].uri) if contacts else None


@dataclass(slots=True)
class Dialog:
    """The dialog state of RFC 3261 §12. See the module docstring."""

    call_id: str
    local_tag: str
    remote_tag: str
    #: From/To URIs as name-addr text without the tag, e.g. `"Alice" <sip:alice@example.com>`.
    local_uri: str
    remote_uri: str
    #: The URI of the peer's Contact: the Request-URI of our requests in the dialog.
    remote_target: str
    #: Record-Route values, in the order our requests must carry them as Route (§12.1.1, §12.1.2).
    route_set: list[str]
    #: The CSeq number of our last request in the dialog; 0 while "empty" (a UAS before its first).
    local_seq: int
    #: The CSeq number of the peer's last request in the dialog; None while "empty" (a UAC, §12.1.2).
    remote_seq: int | None
    #: The INVITE's Request-URI was a SIPS URI (§12.1.1; TLS on the wire is the transport's business).
    secure: bool = False

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation (§12.1) ---------------------------------------------------------------------------------

    @classmethod
    def for_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """§12.1.1: the dialog a UAS creates when it answers `invite` with a 101-299 carrying `local_tag`.

        The route set is the INVITE's Record-Route as received (top first); the remote target its
        Contact; the remote sequence number its CSeq; the local sequence number is empty (0).
        Raises `SipParseError` (400) when the INVITE has no Contact or no From tag.
        """
        target = _contact_uri(invite)
        if target is None:
            raise SipParseError("missing Contact header", header="Contact")
        remote_tag = invite.from_.tag
        if not remote_tag:
            raise SipParseError("From without a tag", header="From")
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(invite.to),
            remote_uri=_without_tag(invite.from_),
            remote_target=target,
            route_set=invite.headers.values("record-route"),
            local_seq=0,
            remote_seq=invite.cseq.seq,
            secure=isinstance(invite.uri, SipUri) and invite.uri.scheme == "sips",
        )

    @classmethod
    def for_uac(cls, invite: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a UAC creates from a 101-299 response (with a To tag) to its `invite`.

        The route set is the response's Record-Route in reverse order; the remote target its Contact
        (a provisional response often has none: then the INVITE's Request-URI, until a target refresh or
        the 2xx says otherwise); the local sequence number the INVITE's CSeq; the remote one empty.
        Raises `SipParseError` when the response has no To tag.
        """
        remote_tag = response.to.tag
        if not remote_tag:
            raise SipParseError("response without a To tag", header="To")
        local_tag = invite.from_.tag
        assert local_tag is not None, "our INVITE always has a From tag"
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=_without_tag(invite.from_),
            remote_uri=_without_tag(response.to),
            remote_target=_contact_uri(response) or str(invite.uri),
            route_set=list(reversed(response.headers.values("record-route"))),
            local_seq=invite.cseq.seq,
            remote_seq=None,
            secure=isinstance(invite.uri, SipUri) and invite.uri.scheme == "sips",
        )

    def update_from_response(self, response: Response) -> None:
        """§13.2.2.4: a 2xx confirming an early dialog recomputes the route set (§12.1.2) and target."""
        self.route_set = list(reversed(response.headers.values("record-route")))
        self.refresh_target(response)

    # -- requests within the dialog (§12.2) -----------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """Build a request within the dialog as §12.2.1.1 says.

        To is the remote URI and tag, From the local URI and tag, the Call-ID the dialog's. The CSeq
        number is the local sequence number plus one (which becomes the new local sequence number),
        except for an ACK or CANCEL, which take `cseq` — the number of the INVITE they belong to
        (§13.2.2.4, §9.1). `via` is the whole Via value (with a fresh branch); `contact` a URI for the
        Contact header (required in target refresh requests: INVITE, UPDATE), or None.

        Routing: with an empty route set the Request-URI is the remote target and there is no Route.
        When the first route has `lr` (a loose router) the Request-URI is the remote target and the route
        set becomes the Route header. Otherwise (a strict router, RFC 2543) the first route's URI, without
        parameters a Request-URI may not carry, becomes the Request-URI, and Route is the rest of the
        route set followed by the remote target.
        """
        if method in ("ACK", "CANCEL"):
            if cseq is None:
                raise ValueError(f"{method} takes the CSeq number of its INVITE")
            number = cseq
        else:
            number = self.local_seq + 1 if cseq is None else cseq
            self.local_seq = number
        request_uri, routes = self.request_target()
        out = Headers()
        out.add("Via", via)
        out.add("Max-Forwards", "70")
        for route in routes:
            out.add("Route", route)
        out.add("From", f"{self.local_uri};tag={self.local_tag}")
        out.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{number} {method}")
        if contact is not None:
            out.add("Contact", contact if contact.startswith("<") else f"<{contact}>")
        for name, value in headers:
            out.add(name, value)
        request = Request(method, request_uri, out)
        request.set_body(body, content_type)
        return request

    def request_target(self) -> tuple[str, list[str]]:
        """The Request-URI and Route values for the next request (§12.2.1.1, loose or strict)."""
        if not self.route_set:
            return self.remote_target, []
        first = parse_name_addr(self.route_set[0], header="Route")
        uri = first.uri
        if isinstance(uri, SipUri) and "lr" not in uri.params:
            # A strict router: it expects to find itself in the Request-URI.
            params = {k: v for k, v in uri.params.items() if k not in _NOT_IN_REQUEST_URI}
            stripped = uri.copy(params=params, headers={})
            return str(stripped), [*self.route_set[1:], f"<{self.remote_target}>"]
        return self.remote_target, list(self.route_set)

    def accepts_remote_cseq(self, request: Request) -> bool:
        """§12.2.2: whether the peer's `request` is in order, recording its CSeq number if it is.

        With the remote sequence number empty any number is accepted. A number lower than the last one
        is out of order: answer 500 (and the remote sequence number stays). ACK and CANCEL carry their
        INVITE's number and are not checked: this always accepts them and records nothing.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, message: Message) -> None:
        """A target refresh (§12.2.1.2 for a 2xx to ours, §12.2.2 for the peer's re-INVITE or UPDATE):
        the remote target becomes the message's Contact URI, when it has one."""
        target = _contact_uri(message)
        if target is not None:
            self.remote_target = target
