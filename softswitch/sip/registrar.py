"""The registrar (RFC 3261 §10.3, with RFC 5626 §6 instance matching).

`Registrar.register()` takes an already authenticated REGISTER and returns an outcome: the reply to send
and, when the AOR's bindings changed, the AOR's new full set. It changes the in-memory location table at
once; the edge persists the new set through `store/` and only then sends the 200 (style 9.10: an
acknowledged registration is durable).

Every refusal and policy choice is a row of `Refusal` or a line of the policy table below, not a branch
hidden in the code:

| situation                                         | answer                                  |
|---------------------------------------------------|-----------------------------------------|
| To is not a SIP/SIPS URI                          | 416 Unsupported URI Scheme              |
| To names another user than the one authenticated  | 403 Forbidden (may not register others) |
| `Contact: *` with other contacts or Expires != 0  | 400 (§10.3 step 6)                      |
| 0 < expires < min_expires                         | 423 Interval Too Brief + Min-Expires    |
| expires > max_expires                             | granted, clamped to max_expires         |
| out-of-order CSeq for the same Call-ID            | 200 listing the unchanged bindings      |
|   (Kamailio does the same; §10.3 says "fails" but names no status, and a 200 stops a confused   |
|    phone from retrying in a tight loop)                                                          |
| more than max_contacts bindings                   | the oldest bindings are replaced        |
|   (home phones change public address often; evicting the stalest keeps them reachable)          |
| malformed Contact / Expires                       | 400 naming the header                   |
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, replace
from enum import Enum

from softswitch.sip.errors import SipParseError
from softswitch.sip.flow import Flow
from softswitch.sip.headers import unquote_string
from softswitch.sip.location import Binding, LocationTable, contact_key
from softswitch.sip.message import Request, Response
from softswitch.sip.uri import SipUri

__all__ = ["Refusal", "RegisterOutcome", "Registrar", "RegistrarPolicy"]


class Refusal(Enum):
    """Why a REGISTER is refused, with the status and reason we answer."""

    NOT_SIP_URI = (416, "Unsupported URI Scheme")
    NOT_YOUR_AOR = (403, "Forbidden")
    STAR_NEEDS_EXPIRES_0 = (400, "Bad Request (Contact: * needs Expires: 0 and no other contact)")
    INTERVAL_TOO_BRIEF = (423, "Interval Too Brief")
    MALFORMED = (400, "Bad Request")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def reason(self) -> str:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    """Expiry bounds and contact limits (defaults as Kamailio's registrar and RFC 3261 §10.2.1.1)."""

    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = 10


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    """What a REGISTER produced: the reply, and the AOR's new set when it changed (to persist first)."""

    response: Response
    aor: str
    bindings: tuple[Binding, ...]
    changed: bool
    refusal: Refusal | None = None


class Registrar:
    def __init__(self, location: LocationTable, policy: RegistrarPolicy, *, domain: str) -> None:
        self.location = location
        self.policy = policy
        self.domain = domain

    def aor_for(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    def register(
        self, request: Request, flow: Flow, *, user: str, to_tag: str, now: float, wall: float
    ) -> RegisterOutcome:
        """Process an authenticated REGISTER from `user` (§10.3 steps 5–8)."""
        aor = self.aor_for(user)
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri):
            return self._refuse(request, aor, Refusal.NOT_SIP_URI, to_tag, now)
        if to_uri.user is None or unquote_string(to_uri.user) != user:
            return self._refuse(request, aor, Refusal.NOT_YOUR_AOR, to_tag, now)
        try:
            return self._update(request, flow, aor, to_tag, now, wall)
        except SipParseError as exc:
            response = request.reply(400, f"Bad Request ({exc.reason})", to_tag=to_tag)
            return RegisterOutcome(
                response, aor, tuple(self.location.bindings(aor, now=now)), False, Refusal.MALFORMED
            )

    def _update(
        self, request: Request, flow: Flow, aor: str, to_tag: str, now: float, wall: float
    ) -> RegisterOutcome:
        policy = self.policy
        call_id = request.call_id
        cseq = request.cseq.seq
        header_expires = request.expires
        current = {b.key: b for b in self.location.bindings(aor, now=now)}

        if request.contact_star:
            if header_expires != 0 or len(request.headers.get_all("contact")) != 1:
                return self._refuse(request, aor, Refusal.STAR_NEEDS_EXPIRES_0, to_tag, now)
            for binding in current.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    return self._ok(request, aor, to_tag, now, wall, changed=False)
            self.location.replace_aor(aor, [])
            return self._ok(request, aor, to_tag, now, wall, changed=bool(current))

        contacts = request.contacts
        if not contacts:
            return self._ok(request, aor, to_tag, now, wall, changed=False)  # a query (§10.3 step 5)

        new = dict(current)
        user_agent = request.headers.get("user-agent")
        changed = False
        for contact in contacts:
            expires = _contact_expires(contact.params.get("expires"), header_expires, policy.default_expires)
            if 0 < expires < policy.min_expires:
                return self._refuse(request, aor, Refusal.INTERVAL_TOO_BRIEF, to_tag, now)
            expires = min(expires, policy.max_expires)
            instance = contact.params.get("+sip.instance")
            instance_id = unquote_string(instance) if instance else None
            reg_id_text = contact.params.get("reg-id")
            reg_id = (
                int(reg_id_text) if reg_id_text and reg_id_text.isascii() and reg_id_text.isdigit() else None
            )
            key = contact_key(contact.uri, instance_id, reg_id)
            existing = new.get(key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                # out of order (the table above): leave everything as it is
                return self._ok(request, aor, to_tag, now, wall, changed=False)
            if expires == 0:
                if existing is not None:
                    del new[key]
                    changed = True
                continue
            q_text = contact.params.get("q")
            try:
                q = float(q_text) if q_text else 1.0
            except ValueError:
                raise SipParseError("malformed q value in Contact", header="Contact") from None
            new[key] = Binding(
                aor=aor,
                contact=str(contact.uri),
                expires_at=now + expires,
                flow=flow,
                call_id=call_id,
                cseq=cseq,
                q=max(0.0, min(1.0, q)),
                instance_id=instance_id,
                reg_id=reg_id,
                user_agent=user_agent,
                registered_at=existing.registered_at if existing is not None else now,
                key=key,
            )
            changed = True

        if len(new) > policy.max_contacts:
            keep = sorted(new.values(), key=lambda b: b.registered_at, reverse=True)[: policy.max_contacts]
            new = {b.key: b for b in keep}
        if changed:
            # A refresh from a new public address (NAT rebinding) moves every binding of this
            # registration (same Call-ID) to the new flow, so we keep reaching the phone.
            for key, binding in list(new.items()):
                if binding.call_id == call_id and binding.flow != flow:
                    new[key] = replace(binding, flow=flow)
            self.location.replace_aor(aor, list(new.values()))
        return self._ok(request, aor, to_tag, now, wall, changed=changed)

    def _ok(
        self, request: Request, aor: str, to_tag: str, now: float, wall: float, *, changed: bool
    ) -> RegisterOutcome:
        bindings = tuple(self.location.bindings(aor, now=now))
        headers = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        headers.append(("Date", _http_date(wall)))
        response = request.reply(200, to_tag=to_tag, headers=headers)
        return RegisterOutcome(response, aor, bindings, changed)

    def _refuse(
        self, request: Request, aor: str, refusal: Refusal, to_tag: str, now: float
    ) -> RegisterOutcome:
        headers: list[tuple[str, str]] = []
        if refusal is Refusal.INTERVAL_TOO_BRIEF:
            headers.append(("Min-Expires", str(self.policy.min_expires)))
        response = request.reply(refusal.status, refusal.reason, to_tag=to_tag, headers=headers)
        return RegisterOutcome(response, aor, tuple(self.location.bindings(aor, now=now)), False, refusal)


_DATE_CACHE: list[tuple[int, str]] = [(-1, "")]


def _http_date(wall: float) -> str:
    """The Date header value (RFC 3261 §20.17, RFC 1123 form), formatted once per second."""
    second = int(wall)
    cached = _DATE_CACHE[0]
    if cached[0] != second:
        cached = (second, email.utils.formatdate(second, usegmt=True))
        _DATE_CACHE[0] = cached
    return cached[1]


def _contact_expires(param: str | None, header: int | None, default: int) -> int:
    if param is not None:
        text = param.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise SipParseError("malformed expires parameter in Contact", header="Contact")
        return int(text)
    if header is not None:
        return header
    return default
