"""The configuration schema: what `config/softswitch.yaml` may say, with every field described.

The field descriptions are the admin's documentation: `softswitch config check` prints the description of
the field an error is about. Every model forbids unknown keys, so a misspelt key is an error rather than a
silently ignored setting.

Values that the switch compares as text (extensions, numbers, passwords, names) must be YAML strings.
YAML reads `1001` as an integer, `0123` as octal 83, `+37167000001` as an integer without its plus sign
and `no` as `false`; those are refused with a hint to quote them instead of being silently changed.

Relative paths (database file, recordings, sounds, TLS files) are relative to the working directory the
switch is started in: the repository root for `make run`.

Checks that involve several fields or entries (T2 >= T1, relax steps, duplicate numbers and ids, overflow
and DID targets, supervisor teams, overflow loops) are each written once, as a model's `_checks` method.
Pydantic runs them in an after-validator, which it skips when any field of that model (or below it) is
invalid; so that `config check` still reports every problem in one run, `cross_field_issues` runs the same
methods on a `RawView` of the unvalidated data. A view reads each field with that field's own validation
(the same value, normalised, that the model would hold); a nested model or a tuple of models that fails is
viewed in turn, entry by entry, so an agent with a bad skill level still has its id, extension and team.
A field that is missing or invalid raises `Unknown`, and the check that read it is skipped for that entry:
no report rather than a wrong one. A check against a whole list (does this overflow target, DID target or
team exist) is skipped while any entry of that list is unreadable, since the missing entry may be the one
named. For that reason no model uses `field_validator`: every field's validation lives in its annotation,
where a view finds it. Left out: mappings and tuples of plain values are read whole, so one bad DID or
queue number leaves the other entries of that field unchecked until it is fixed.

Digest HA1 values (RFC 7616 §3.4.2; RFC 8760 for SHA-256): HA1 = H(username ":" realm ":" password), with
the realm being `server.domain`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
import types
import typing
import zoneinfo
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, Union, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "AgentSettings",
    "AnnounceSettings",
    "FeatureCodes",
    "HostPort",
    "LimitSettings",
    "ListenSpec",
    "LocatedErrors",
    "OverflowSettings",
    "QueueSettings",
    "RawView",
    "RecordSettings",
    "RegistrarSettings",
    "RelaxStep",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "SupervisorSettings",
    "TimerSettings",
    "TlsSettings",
    "TrunkMatch",
    "TrunkSettings",
    "Unknown",
    "cross_field_issues",
    "digest_ha1",
]

Loc = tuple[str | int, ...]

STRATEGIES: Final = ("longest_idle", "least_calls", "round_robin", "ring_all", "best_skill", "random")
SUPPORTED_CODECS: Final = ("PCMU", "PCMA")
TRANSPORT_DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061}  # RFC 3261 §19.1.2
ALL_TEAMS: Final = "*"


class LocatedErrors(ValueError):
    """Several validation problems found by one model-level check, each at a key path below the model.

    Pydantic reports a model validator's `ValueError` at the model's own location; the loader unpacks this
    exception (kept by pydantic in the error's `ctx`) so that each problem names its own key and line.
    """

    def __init__(self, issues: list[tuple[Loc, str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{format_loc(loc) or '(top)'}: {msg}" for loc, msg in issues))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def digest_ha1(algorithm: Literal["md5", "sha256"], username: str, realm: str, password: str) -> str:
    """HA1 = H(username:realm:password) as lowercase hex (RFC 7616 §3.4.2, RFC 2617 §3.2.2.2)."""
    data = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(data).hexdigest() if algorithm == "md5" else hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------------------
# Scalar types with admin-friendly errors


def _error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is used as is (pydantic would otherwise format braces in it)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def _require_text(value: object) -> object:
    """Refuse YAML scalars that were not strings: quoting is the only way to keep them as written."""
    if isinstance(value, bool):
        raise _error(
            "quoted_string",
            f"must be a quoted string: YAML read this unquoted value as the boolean {str(value).lower()} "
            "(yes/no/on/off are booleans in YAML)",
        )
    if isinstance(value, int | float):
        raise _error(
            "quoted_string",
            f"must be a quoted string: YAML read this unquoted value as the number {value} "
            "(a leading + or 0 is lost); write it in quotes",
        )
    return value


def _matches(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise _error("pattern", f"{what}, got {value!r}")
        return value

    return AfterValidator(check)


Text = Annotated[str, BeforeValidator(_require_text), Field(min_length=1, max_length=256)]
Identifier = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"[A-Za-z0-9._-]{1,64}", "must be 1-64 letters, digits, '.', '_' or '-'"),
]
Extension = Annotated[
    str, BeforeValidator(_require_text), _matches(r"[0-9]{1,32}", "must be digits only (1-32)")
]
Number = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"\+?[0-9]{1,32}", "must be digits, optionally with a leading '+'"),
]
SkillLevel = Annotated[int, Field(ge=1, le=10)]
FeatureCode = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"[*#][0-9*#]{1,8}", "must start with '*' or '#' followed by 1-8 of 0-9 * #"),
]
Seconds = Annotated[float, Field(gt=0)]
TargetName = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"\+?[0-9]{1,32}|[A-Za-z0-9._-]{1,64}", "must be an extension, a queue number or a queue name"),
]
TeamName = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"\*|[A-Za-z0-9._-]{1,64}", "must be a team name or '*' for all teams"),
]


def _hex_of_length(length: int, name: str) -> AfterValidator:
    def check(value: str) -> str:
        value = value.strip().lower()
        if len(value) != length or not re.fullmatch(r"[0-9a-f]+", value):
            raise _error("ha1_format", f"{name} must be {length} hex digits")
        return value

    return AfterValidator(check)


Ha1Md5 = Annotated[str, BeforeValidator(_require_text), _hex_of_length(32, "an MD5 HA1")]
Ha1Sha256 = Annotated[str, BeforeValidator(_require_text), _hex_of_length(64, "a SHA-256 HA1")]
Password = Annotated[SecretStr, BeforeValidator(_require_text), Field(min_length=1)]

_HOSTNAME_RE: Final = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def normalize_host(value: str) -> str:
    """Canonical form of a host for comparisons: lower case, IPv6 without brackets and compressed."""
    host = value.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.rstrip(".")


def _check_host(value: str) -> str:
    host = normalize_host(value)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME_RE.fullmatch(host):
        raise _error("host", f"{value!r} is neither an IP address nor a valid host name")
    return host


Host = Annotated[str, BeforeValidator(_require_text), AfterValidator(_check_host)]

_ENDPOINT_RE: Final = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]/]+))(?::(?P<port>[0-9]{1,5}))?")


def _split_host_port(text: str, *, default_port: int | None) -> tuple[str, int]:
    match = _ENDPOINT_RE.fullmatch(text)
    if match is None:
        raise ValueError("expected host:port, with IPv6 addresses in brackets as in [::1]:5060")
    host = match.group("v6") or match.group("host") or ""
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    host = _check_host(host)
    port_text = match.group("port")
    if port_text is None:
        if default_port is None:
            raise ValueError("a port is required, as in 127.0.0.1:8089")
        return host, default_port
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return host, port


def _format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        """Problems involving several fields, each at a key path below this model.

        `self` may be a `RawView` of data that did not validate: reading a field may raise `Unknown`, which
        skips the rest of the check it interrupts (wrap independent checks in `suppress(Unknown)`).
        """
        return iter(())

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        issues = _run_checks(type(self), self)
        if issues:
            raise LocatedErrors(issues)
        return self


# --------------------------------------------------------------------------------------------------------
# Reading data that did not validate, for the cross-field checks


class Unknown(Exception):
    """A field a check needs is missing or invalid in the data (see `RawView`)."""


class RawView:
    """Unvalidated data of one model, read field by field with each field's own validation.

    `view.name` is the value `model.name` would have (its default when absent). When the field does not
    validate: a nested model is viewed in turn, a tuple of models becomes a tuple of validated entries and
    views, and anything else raises `Unknown`, as does data that is not a mapping at all, a missing required
    field, and any missing field of a mapping with an unknown key (which may be that field misspelt).
    """

    __slots__ = ("_cache", "data", "model")

    def __init__(self, model: type[_Model], data: object) -> None:
        self.model = model
        self.data = data
        self._cache: dict[str, object] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in self.model.model_fields:
            raise AttributeError(f"{self.model.__name__} has no field {name!r}")
        if name not in self._cache:
            self._cache[name] = self._read(name)
        value = self._cache[name]
        if value is _UNKNOWN:
            raise Unknown(name)
        return value

    def _read(self, name: str) -> object:
        field = self.model.model_fields[name]
        if not isinstance(self.data, Mapping):
            return _UNKNOWN
        if name not in self.data:
            # With a misspelt key around (pasword:), an absent field may be the one meant: unknown.
            if field.is_required() or any(key not in self.model.model_fields for key in self.data):
                return _UNKNOWN
            return field.get_default(call_default_factory=True)
        raw = self.data[name]
        try:
            return _field_adapter(self.model, name).validate_python(raw)
        except ValidationError:
            pass
        inner = _model_in(field.annotation)
        if inner is not None:
            return RawView(inner, raw)
        entry = _tuple_of_models(field.annotation)
        if entry is not None and isinstance(raw, list | tuple):
            return tuple(_validate_or_view(entry, item) for item in raw)
        return _UNKNOWN


_UNKNOWN: Final = object()


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation)


def _model_in(annotation: Any) -> type[_Model] | None:
    """The model in `Model` or `Model | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, _Model) else None


def _tuple_of_models(annotation: Any) -> type[_Model] | None:
    """The model in `tuple[Model, ...]`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _model_in(args[0])
    return None


def _validate_or_view(model: type[_Model], data: object) -> _Model | RawView:
    try:
        return model.model_validate(data)
    except ValidationError:
        return RawView(model, data)


def _run_checks(model: type[_Model], subject: _Model | RawView) -> list[tuple[Loc, str]]:
    issues: list[tuple[Loc, str]] = []
    with suppress(Unknown):
        for issue in model._checks(cast(Any, subject)):
            issues.append(issue)
    return issues


def _view_issues(view: RawView, loc: Loc) -> list[tuple[Loc, str]]:
    issues = [((*loc, *sub), message) for sub, message in _run_checks(view.model, view)]
    if not isinstance(view.data, Mapping):
        return issues
    for name in view.model.model_fields:
        try:
            value = getattr(view, name)
        except Unknown:
            continue
        if isinstance(value, RawView):
            issues.extend(_view_issues(value, (*loc, name)))
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, RawView):
                    issues.extend(_view_issues(item, (*loc, name, i)))
    return issues


# --------------------------------------------------------------------------------------------------------
# server


class ListenSpec(_Model):
    """One listening socket, written `transport://host:port` (`udp://0.0.0.0:5060`, `tcp://[::1]:5060`)."""

    transport: Literal["udp", "tcp", "tls"] = Field(
        description="udp, tcp or tls (SIP over TLS, RFC 3261 §26)."
    )
    host: Host = Field(
        description="Address to bind: an IPv4/IPv6 address (0.0.0.0 or :: for all) or a host name."
    )
    port: int = Field(
        ge=1,
        le=65535,
        description="Port to bind; defaults to 5060 for udp/tcp and 5061 for tls (RFC 3261 §19.1.2).",
    )

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        scheme, sep, rest = value.strip().partition("://")
        scheme = scheme.lower()
        if not sep:
            raise _error(
                "listen", f"expected transport://host:port such as udp://0.0.0.0:5060, got {value!r}"
            )
        if scheme not in TRANSPORT_DEFAULT_PORTS:
            raise _error("listen", f"unknown transport {scheme!r} in {value!r}; expected udp, tcp or tls")
        try:
            host, port = _split_host_port(rest.rstrip("/"), default_port=TRANSPORT_DEFAULT_PORTS[scheme])
        except ValueError as exc:
            raise _error("listen", f"{exc} in {value!r}") from None
        return {"transport": scheme, "host": host, "port": port}

    def __str__(self) -> str:
        return f"{self.transport}://{_format_host_port(self.host, self.port)}"

    @model_serializer
    def _serialize(self) -> str:
        return str(self)


class HostPort(_Model):
    """An address and port written `host:port` (`127.0.0.1:8089`, `[::1]:8089`)."""

    host: Host = Field(description="IP address or host name.")
    port: int = Field(ge=1, le=65535, description="TCP port.")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            host, port = _split_host_port(value.strip(), default_port=None)
        except ValueError as exc:
            raise _error("host_port", f"{exc}, got {value!r}") from None
        return {"host": host, "port": port}

    def __str__(self) -> str:
        return _format_host_port(self.host, self.port)

    @model_serializer
    def _serialize(self) -> str:
        return str(self)


def _parse_port_range(value: Any) -> Any:
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]{1,5})\s*-\s*([0-9]{1,5})\s*", value)
        if match is None:
            raise _error("port_range", f"expected a range LOW-HIGH such as 20000-29999, got {value!r}")
        return (int(match.group(1)), int(match.group(2)))
    return value


def _check_port_range(value: tuple[int, int]) -> tuple[int, int]:
    low, high = value
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise _error("port_range", "ports must be within 1-65535")
    if low % 2:
        # RFC 3550 §11: RTP uses an even port and RTCP the next odd one.
        raise _error("port_range", f"the low port {low} must be even (RFC 3550 §11)")
    if low >= high:
        raise _error("port_range", "the low port must be below the high port")
    return value


PortRange = Annotated[tuple[int, int], BeforeValidator(_parse_port_range), AfterValidator(_check_port_range)]


def _version_text(value: Any) -> Any:
    return str(value) if isinstance(value, float) else value  # YAML reads 1.2 as a number


class TlsSettings(_Model):
    cert: Path = Field(
        default=Path("var/tls/cert.pem"),
        description="PEM certificate chain for tls:// listeners (`make run` makes a self-signed one).",
    )
    key: Path = Field(default=Path("var/tls/key.pem"), description="PEM private key matching `cert`.")
    min_version: Annotated[Literal["1.2", "1.3"], BeforeValidator(_version_text)] = Field(
        default="1.2", description="Oldest TLS version accepted; RFC 8996 deprecates TLS 1.0 and 1.1."
    )


class LimitSettings(_Model):
    # Kamailio's BUF_SIZE and the largest UDP datagram are both 65535 bytes.
    max_message_size: int = Field(
        default=65535,
        ge=1024,
        le=1 << 20,
        description="Largest SIP message accepted, in bytes (headers + body).",
    )
    # No RFC limit; real phones send 10-25 headers, so 128 only stops header floods.
    max_headers: int = Field(
        default=128, ge=16, le=4096, description="Most header fields accepted in one message."
    )
    # Same order as the common HTTP server limit (Apache's LimitRequestFieldSize is 8190 bytes).
    max_line_length: int = Field(
        default=8192, ge=256, le=1 << 20, description="Longest start line or header line accepted, in bytes."
    )


class TimerSettings(_Model):
    # RFC 3261 §17.1.1.1 and Table 4 (Appendix A); the same values as pjsip's PJSIP_T1/T2/T4_TIMEOUT.
    t1: Seconds = Field(
        default=0.5, description="T1, the round-trip time estimate, in seconds (RFC 3261: 500 ms)."
    )
    t2: Seconds = Field(
        default=4.0,
        description="T2, the cap on non-INVITE retransmission intervals, in seconds (RFC 3261: 4 s).",
    )
    t4: Seconds = Field(
        default=5.0, description="T4, the longest a message stays in the network, in seconds (RFC 3261: 5 s)."
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        if self.t2 < self.t1:
            yield ("t2",), f"T2 ({self.t2}) must not be shorter than T1 ({self.t1})"


class RegistrarSettings(_Model):
    # min/default/max match Asterisk res_pjsip's AOR defaults (minimum_expiration 60,
    # default_expiration 3600, maximum_expiration 7200) and Kamailio registrar's min/default_expires.
    min_expires: int = Field(
        default=60,
        ge=1,
        description="Shortest registration accepted, in seconds; shorter asks get 423 (RFC 3261 §10.3).",
    )
    max_expires: int = Field(
        default=7200, ge=1, description="Longest registration granted, in seconds; longer asks are shortened."
    )
    default_expires: int = Field(
        default=3600, ge=1, description="Registration time when the phone names none, in seconds."
    )
    # Kamailio's registrar allows unlimited contacts by default; a cap stops one leaked password from
    # filling the location table. Ten covers a desk phone, softphones and a mobile per agent.
    max_contacts: int = Field(
        default=10, ge=1, le=1000, description="Most simultaneous registrations per user."
    )
    # Many home NATs drop idle UDP mappings after 30-60 s; qualifying every 30 s keeps them open.
    qualify_interval: float = Field(
        default=30,
        ge=0,
        description="Seconds between OPTIONS pings to each registered phone; 0 turns them off.",
    )
    # Asterisk's qualify_timeout is 3 s; home Wi-Fi sometimes needs more.
    qualify_timeout: Seconds = Field(
        default=5.0,
        description="Seconds to wait for an OPTIONS answer before marking the contact unreachable.",
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        with suppress(Unknown):
            if self.min_expires > self.max_expires:
                yield (
                    ("min_expires",),
                    f"min_expires ({self.min_expires}) exceeds max_expires ({self.max_expires})",
                )
            elif not self.min_expires <= self.default_expires <= self.max_expires:
                yield (
                    ("default_expires",),
                    f"default_expires ({self.default_expires}) must lie between min_expires "
                    f"({self.min_expires}) and max_expires ({self.max_expires})",
                )
        with suppress(Unknown):
            if self.qualify_interval and self.qualify_timeout >= self.qualify_interval:
                yield ("qualify_timeout",), "qualify_timeout must be shorter than qualify_interval"


def _listed_once(value: tuple[str, ...]) -> tuple[str, ...]:
    for i, item in enumerate(value):
        if item in value[:i]:
            raise _error("listed_twice", f"{item} is listed twice")
    return value


class SecuritySettings(_Model):
    # Kamailio's and OpenSIPS's auth modules default nonce_expire to 300 s.
    nonce_ttl: Seconds = Field(default=300, description="Seconds a digest nonce stays valid (RFC 7616 §3.3).")
    # Failure counting in the spirit of fail2ban (maxretry/findtime/bantime), applied in the switch itself.
    auth_failures: int = Field(
        default=10, ge=1, description="Failed authentications from one source address that trigger a ban."
    )
    auth_window: Seconds = Field(
        default=60, description="Window in seconds in which auth_failures are counted."
    )
    ban_time: float = Field(
        default=600, ge=0, description="Seconds a banned source is ignored; 0 turns banning off."
    )
    # RFC 8760 lets a server offer several algorithms in its order of preference; a phone answers the first
    # one it supports. In practice phones are less kind: sipp 3.6 and sipsak only do MD5 and take the first
    # challenge, pjsua2 answers only the first, and baresip 1.0 refuses a 401 that holds any non-MD5
    # challenge at all. So the default offers MD5 alone (what Asterisk and Kamailio offer by default); list
    # SHA-256 (first, or alone) when every phone in the centre supports it.
    digest_algorithms: Annotated[tuple[Literal["MD5", "SHA-256"], ...], AfterValidator(_listed_once)] = Field(
        default=("MD5",),
        min_length=1,
        description="Digest algorithms offered in 401 challenges, most preferred first (RFC 8760).",
    )


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _check_database_url(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://.*", value):
        raise _error(
            "database_url", f"expected a database URL such as sqlite:///var/softswitch.db, got {value!r}"
        )
    return value


class ServerSettings(_Model):
    listen: tuple[ListenSpec, ...] = Field(
        default=(
            ListenSpec(transport="udp", host="0.0.0.0", port=5060),
            ListenSpec(transport="tcp", host="0.0.0.0", port=5060),
            ListenSpec(transport="tls", host="0.0.0.0", port=5061),
        ),
        min_length=1,
        description="Sockets to listen on, each transport://host:port (udp, tcp, tls).",
    )
    domain: Host = Field(description="Our SIP domain and the digest realm; users are sip:ID@domain.")
    aliases: tuple[Host, ...] = Field(
        default=(),
        description="Other host names and IP addresses we answer for; other domains are refused.",
    )
    public_address: Host | None = Field(
        default=None, description="Address to advertise in Via/Contact/SDP when the host sits behind 1:1 NAT."
    )
    rtp_ports: PortRange = Field(
        default=(20000, 29999),
        description="UDP port range for media, LOW-HIGH; LOW must be even (RTP/RTCP pairs).",
    )
    database: Annotated[str, AfterValidator(_check_database_url)] = Field(
        default="sqlite:///var/softswitch.db",
        description="SQLAlchemy database URL: sqlite:///relative/path.db, sqlite:////absolute.db or postgresql://...",
    )
    recordings_dir: Path = Field(
        default=Path("var/recordings"), description="Directory call recordings are written to."
    )
    sounds_dir: Path = Field(
        default=Path("var/sounds"),
        description="Generated prompts (position, estimated wait, confirmations) and the default music on "
        "hold; `softswitch prompts` (run by `make run`) writes them here.",
    )
    control: HostPort = Field(
        default=HostPort(host="127.0.0.1", port=8089),
        description="host:port of the control API the CLI talks to; keep it on loopback.",
    )
    control_token_file: Path = Field(
        default=Path("var/control.token"),
        description="File holding the control API token (created if missing).",
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings, description="Certificate and key for tls:// listeners."
    )
    limits: LimitSettings = Field(
        default_factory=LimitSettings, description="Message size limits (bytes / counts)."
    )
    timers: TimerSettings = Field(
        default_factory=TimerSettings, description="SIP timers T1, T2, T4 in seconds."
    )
    registrar: RegistrarSettings = Field(
        default_factory=RegistrarSettings, description="Registration times, contact limits and qualify pings."
    )
    security: SecuritySettings = Field(
        default_factory=SecuritySettings,
        description="Nonce lifetime and banning of sources that fail to authenticate.",
    )
    # Kamailio's tcp_connection_lifetime defaults to 120 s; RFC 5626 §4.4.1 phones send keep-alives every
    # 95-120 s, so 600 s tolerates several lost ones before a registered agent's flow is dropped.
    tcp_idle_timeout: Seconds = Field(
        default=600, description="Seconds an idle TCP/TLS connection is kept open."
    )
    # Asterisk's rtp_timeout is off by default; 30 s catches vanished phones without cutting long silences
    # (phones send comfort noise or keep sending silence frames).
    rtp_timeout: Seconds = Field(
        default=30, description="Seconds without RTP after which an answered call is hung up."
    )
    ring_timeout: Seconds = Field(
        default=30,
        description="Seconds a direct call to an extension rings before giving up (queues have their own).",
    )
    shutdown_grace: float = Field(
        default=5, ge=0, description="Seconds to let calls finish after SIGTERM before hanging them up."
    )
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field(
        default="info", description="Logging level."
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        seen: dict[tuple[str, str, int], int] = {}
        for i, spec in enumerate(self.listen):
            with suppress(Unknown):
                key = (spec.transport, spec.host, spec.port)
                if key in seen:
                    yield ("listen", i), f"{spec} is already listed as listen[{seen[key]}]"
                seen.setdefault(key, i)


# --------------------------------------------------------------------------------------------------------
# agents and supervisors


class _UserSettings(_Model):
    id: Identifier = Field(description="SIP username; the address of record is sip:ID@domain.")
    name: Text | None = Field(default=None, description="Display name; defaults to the id.")
    password: Password | None = Field(
        default=None, description="SIP digest password (or give ha1_md5 / ha1_sha256)."
    )
    ha1_md5: Ha1Md5 | None = Field(
        default=None,
        repr=False,
        description="MD5(id:domain:password) in hex, instead of a plaintext password.",
    )
    ha1_sha256: Ha1Sha256 | None = Field(
        default=None,
        repr=False,
        description="SHA-256(id:domain:password) in hex (RFC 8760), instead of a password.",
    )
    extension: Extension | None = Field(
        default=None, description="Internal number that rings this person's phones directly; omit for none."
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        if self.password is None and self.ha1_md5 is None and self.ha1_sha256 is None:
            yield (), "give a password, ha1_md5 or ha1_sha256 (at least one is required)"

    @property
    def display_name(self) -> str:
        return self.name or self.id


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _error(
            "timezone", f"unknown time zone {value!r}; use an IANA name such as Europe/Riga or UTC"
        ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(_require_text), AfterValidator(_check_timezone)]
SkillName = Annotated[
    str,
    BeforeValidator(_require_text),
    _matches(r"[A-Za-z0-9._-]{1,64}", "skill names are 1-64 letters, digits, '.', '_' or '-'"),
]


class AgentSettings(_UserSettings):
    timezone: TimeZoneName = Field(
        default="UTC",
        description="IANA time zone used for this agent's statistics and reports (e.g. Europe/Riga).",
    )
    skills: dict[SkillName, SkillLevel] = Field(
        default_factory=dict, description="Skills with proficiency 1 (basic) .. 10 (expert)."
    )
    team: Identifier | None = Field(default=None, description="Team name; supervisors watch teams.")
    max_missed: int | None = Field(
        default=None,
        ge=0,
        description="Unanswered offers in a row before auto-pause; overrides the queue's value; 0 = never.",
    )

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class SupervisorSettings(_UserSettings):
    teams: tuple[TeamName, ...] = Field(
        default=(),
        description="Teams this supervisor may monitor, whisper to and barge into; '*' means all teams.",
    )

    def supervises(self, team: str | None) -> bool:
        return ALL_TEAMS in self.teams or (team is not None and team in self.teams)


# --------------------------------------------------------------------------------------------------------
# queues


class OverflowSettings(_Model):
    after: Seconds = Field(description="Seconds a caller waits in this queue before moving to `to`.")
    to: Identifier = Field(description="Name of the queue callers overflow to.")


class RelaxStep(_Model):
    after: Seconds = Field(description="Seconds of waiting after which these lower skill minimums apply.")
    skills: dict[SkillName, Annotated[int, Field(ge=0, le=10)]] = Field(
        description="New minimum levels for some of the queue's skills; 0 drops the requirement."
    )


class AnnounceSettings(_Model):
    every: Seconds | None = Field(
        default=None, description="Seconds between announcements to waiting callers."
    )
    position: bool = Field(default=False, description="Tell callers their position in the queue.")
    prompt: Path | None = Field(default=None, description="WAV file played at each announcement.")

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        if self.every is not None and not self.position and self.prompt is None:
            yield ("every",), "announcements need position: true or a prompt"


class RecordSettings(_Model):
    mode: Literal["all", "none", "sample"] = Field(
        default="none", description="Record all calls, none, or a sample."
    )
    percent: float | None = Field(
        default=None, gt=0, le=100, description="With mode sample: share of calls recorded, in percent."
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        if self.mode == "sample" and self.percent is None:
            yield ("percent",), "mode sample needs percent (1-100)"
        if self.mode != "sample" and self.percent is not None:
            yield ("percent",), f"percent only applies to mode sample, not {self.mode}"


DtmfKey = Annotated[
    str, BeforeValidator(_require_text), _matches(r"[0-9*#A-Da-d]", "must be one DTMF key: 0-9, *, # or A-D")
]


class QueueSettings(_Model):
    name: Identifier = Field(description="Queue name used in reports, the CLI and overflow targets.")
    numbers: tuple[Number, ...] = Field(
        default=(), description="Numbers (DIDs or internal) that reach this queue."
    )
    skills: dict[SkillName, SkillLevel] = Field(
        default_factory=dict, description="Required skills with the minimum proficiency 1..10 an agent needs."
    )
    strategy: Literal["longest_idle", "least_calls", "round_robin", "ring_all", "best_skill", "random"] = (
        Field(
            default="longest_idle",
            description="How to choose among eligible agents: " + ", ".join(STRATEGIES) + ".",
        )
    )
    priority: int = Field(default=0, description="Calls from higher-priority queues are offered first.")
    vip_numbers: tuple[Number, ...] = Field(
        default=(), description="Caller numbers that get vip_priority instead of priority."
    )
    vip_priority: int | None = Field(
        default=None, description="Priority of VIP callers; default priority + 10."
    )
    # Asterisk's app_queue rings a member for 15 s by default; we allow a little longer for softphones.
    ring_timeout: Seconds = Field(
        default=20, description="Seconds an offer rings an agent before trying the next."
    )
    # Asterisk's wrapuptime defaults to 0; contact centres usually give a few seconds for notes.
    wrap_up: float = Field(default=10, ge=0, description="Seconds an agent is left alone after a call.")
    max_wait: Seconds = Field(
        default=600, description="Longest wait in seconds; then overflow, exit_to or hang up."
    )
    max_callers: int | None = Field(
        default=None, ge=1, description="Most callers waiting; more are sent to exit_to or refused."
    )
    overflow: OverflowSettings | None = Field(
        default=None, description="Move callers to another queue after a wait."
    )
    relax: tuple[RelaxStep, ...] = Field(
        default=(), description="Lower skill minimums as callers wait, by ascending after."
    )
    moh: Path | None = Field(default=None, description="Music on hold WAV file; none plays ringback silence.")
    announce: AnnounceSettings | None = Field(
        default=None, description="Periodic announcements to waiting callers."
    )
    # The 80/20 convention: 80 % of calls answered within 20 s.
    service_level: Seconds = Field(
        default=20, description="Seconds; the service level is the share of calls answered within this time."
    )
    record: RecordSettings = Field(default_factory=RecordSettings, description="Call recording policy.")
    # Asterisk's joinempty defaults to yes and leavewhenempty to no.
    join_empty: bool = Field(default=True, description="Let callers join when no agent is logged in.")
    leave_when_empty: bool = Field(
        default=False, description="Send callers out when the last agent logs out."
    )
    exit_key: DtmfKey | None = Field(
        default=None, description="DTMF key a waiting caller presses to leave the queue."
    )
    exit_to: TargetName | None = Field(
        default=None,
        description="Where exit_key, max_wait and a full queue send callers: an extension or a queue.",
    )
    # Asterisk's autopause pauses after one miss; three tolerates a dropped Wi-Fi packet or a short absence.
    max_missed: int = Field(
        default=3,
        ge=0,
        description="Consecutive unanswered offers before an agent is auto-paused; 0 = never.",
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        with suppress(Unknown):
            seen: dict[str, int] = {}
            for i, number in enumerate(self.numbers):
                if number in seen:
                    yield ("numbers", i), f"{number!r} is already numbers[{seen[number]}]"
                seen.setdefault(number, i)
        with suppress(Unknown):  # one unreadable step hides the order of the ones after it
            previous = 0.0
            for i, step in enumerate(self.relax):
                if step.after <= previous:
                    yield (
                        ("relax", i, "after"),
                        f"relax steps must have ascending after ({step.after} <= {previous})",
                    )
                previous = max(previous, step.after)
        with suppress(Unknown):
            skills = self.skills
            for i, step in enumerate(self.relax):
                with suppress(Unknown):
                    for skill, level in step.skills.items():
                        if skill not in skills:
                            known = ", ".join(skills) or "none"
                            yield (
                                ("relax", i, "skills", skill),
                                f"queue does not require {skill!r} (skills: {known})",
                            )
                        elif level > skills[skill]:
                            yield (
                                ("relax", i, "skills", skill),
                                f"relaxing can only lower {skill!r} below {skills[skill]}",
                            )
        with suppress(Unknown):
            if self.vip_priority is not None and self.vip_priority <= self.priority:
                yield ("vip_priority",), f"vip_priority must exceed priority ({self.priority})"
        with suppress(Unknown):
            if self.exit_key is not None and self.exit_to is None:
                yield ("exit_key",), "exit_key needs exit_to, the place callers go when they press it"
        with suppress(Unknown):
            if self.overflow is not None and self.overflow.to == self.name:
                yield ("overflow", "to"), "a queue cannot overflow to itself"

    def priority_for(self, caller_number: str | None) -> int:
        """The priority of a call from `caller_number` (VIP callers get vip_priority)."""
        if caller_number is not None and caller_number in self.vip_numbers:
            return self.vip_priority if self.vip_priority is not None else self.priority + 10
        return self.priority

    def skills_at(self, waited: float) -> dict[str, int]:
        """Skill minimums after `waited` seconds, applying every relax step due; level 0 drops a skill."""
        current = dict(self.skills)
        for step in self.relax:
            if waited < step.after:
                break
            current.update(step.skills)
        return {skill: level for skill, level in current.items() if level > 0}


# --------------------------------------------------------------------------------------------------------
# trunks and features

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _to_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _parse_network(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _error("cidr", f"{value!r} is not an IP address or network such as 198.51.100.0/24") from None
    raise _error("cidr", f"{value!r} has host bits set; did you mean {loose}?")


Network = Annotated[IPNetwork, BeforeValidator(_parse_network)]


def _not_empty(value: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    if not value:
        raise _error("empty", "give at least one source address or network")
    return value


class TrunkMatch(_Model):
    source: Annotated[tuple[Network, ...], BeforeValidator(_to_list), AfterValidator(_not_empty)] = Field(
        description="Source address or CIDR network (or a list) the carrier sends from."
    )


def _upper_each(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class TrunkSettings(_Model):
    name: Identifier = Field(description="Trunk name used in logs and call records.")
    match: TrunkMatch = Field(
        description="How requests from this trunk are recognised (no digest auth for trunks)."
    )
    dids: dict[Number, Number] = Field(
        default_factory=dict,
        description="Dialled number (as the carrier sends it) -> extension or queue number.",
    )
    codecs: Annotated[tuple[Literal["PCMU", "PCMA"], ...] | None, BeforeValidator(_upper_each)] = Field(
        default=None,
        description="Codecs offered to and accepted from this trunk, in order; default PCMU, PCMA.",
    )

    def matches(self, address: str) -> bool:
        """Whether a request from `address` comes from this trunk."""
        ip = ipaddress.ip_address(normalize_host(address))
        return any(ip in network for network in self.match.source)


class FeatureCodes(_Model):
    login: FeatureCode = Field(default="*11", description="Dial to log in to your queues.")
    logout: FeatureCode = Field(default="*12", description="Dial to log out of your queues.")
    pause: FeatureCode = Field(
        default="*13", description="Dial to pause; digits after it give a reason code (*133)."
    )
    resume: FeatureCode = Field(default="*14", description="Dial to resume after a pause.")
    end_wrap_up: FeatureCode = Field(
        default="*15", description="Dial to end wrap-up early and become available."
    )

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        codes: dict[str, str] = {}
        for name in FeatureCodes.model_fields:
            with suppress(Unknown):
                codes[name] = getattr(self, name)
        for name, code in codes.items():
            for other, other_code in codes.items():
                if name != other and code.startswith(other_code) and (code != other_code or name > other):
                    yield (name,), f"{code!r} collides with {other} ({other_code!r})"

    def codes(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    def match(self, dialled: str) -> tuple[str, str] | None:
        """(feature, argument) for a dialled string: `*13` + `2` → ("pause", "2"); None if no feature."""
        for name, code in self.codes().items():
            if dialled == code:
                return name, ""
            if name == "pause" and dialled.startswith(code) and dialled[len(code) :].isdigit():
                return name, dialled[len(code) :]
        return None


# --------------------------------------------------------------------------------------------------------
# the whole file

Target = AgentSettings | SupervisorSettings | QueueSettings


class Settings(_Model):
    """The whole configuration file. Build it with `softswitch.config.load_settings`."""

    server: ServerSettings = Field(description="Listening sockets, domain, storage and protocol limits.")
    agents: tuple[AgentSettings, ...] = Field(
        default=(), description="Agents: people who answer queue calls."
    )
    supervisors: tuple[SupervisorSettings, ...] = Field(
        default=(), description="Supervisors: may monitor, whisper and barge into their teams' calls."
    )
    queues: tuple[QueueSettings, ...] = Field(default=(), description="Call queues with skills and strategy.")
    trunks: tuple[TrunkSettings, ...] = Field(
        default=(), description="Carriers allowed to send calls by source address."
    )
    features: FeatureCodes = Field(
        default_factory=FeatureCodes, description="Feature codes agents dial from their phones."
    )

    _users: dict[str, AgentSettings | SupervisorSettings] = PrivateAttr(default_factory=dict)
    _queues: dict[str, QueueSettings] = PrivateAttr(default_factory=dict)
    _numbers: dict[str, Target] = PrivateAttr(default_factory=dict)
    _credentials: dict[str, tuple[str | None, str | None]] = PrivateAttr(default_factory=dict)
    _domains: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any, /) -> None:
        index = _cross_references(self)
        entries: dict[str, tuple[AgentSettings | SupervisorSettings | QueueSettings, ...]] = {
            "agents": self.agents,
            "supervisors": self.supervisors,
            "queues": self.queues,
        }
        self._users.update({uid: self._person(loc) for uid, loc in index.users.items()})
        self._queues.update({name: self.queues[i] for name, i in index.queues.items()})
        self._numbers.update({n: entries[str(o[0])][int(o[1])] for n, (o, _) in index.numbers.items()})
        realm = self.server.domain
        for loc in index.users.values():
            person = self._person(loc)
            self._credentials[person.id] = _ha1_pair(person, realm)
        self._domains = frozenset({self.server.domain, *self.server.aliases})

    def _person(self, loc: Loc) -> AgentSettings | SupervisorSettings:
        section, i = loc
        return self.agents[int(i)] if section == "agents" else self.supervisors[int(i)]

    def _checks(self) -> Iterator[tuple[Loc, str]]:
        yield from _cross_references(self).issues

    # ---- lookups used by the rest of the switch

    def agent_by_id(self, user_id: str) -> AgentSettings | None:
        user = self._users.get(user_id)
        return user if isinstance(user, AgentSettings) else None

    def supervisor_by_id(self, user_id: str) -> SupervisorSettings | None:
        user = self._users.get(user_id)
        return user if isinstance(user, SupervisorSettings) else None

    def user_by_id(self, user_id: str) -> AgentSettings | SupervisorSettings | None:
        """The agent or supervisor with this SIP username."""
        return self._users.get(user_id)

    def queue_by_name(self, name: str) -> QueueSettings | None:
        return self._queues.get(name)

    def resolve_number(self, number: str) -> Target | None:
        """The agent, supervisor or queue a dialled extension / queue number reaches, or None."""
        return self._numbers.get(number)

    def resolve_target(self, target: str) -> Target | None:
        """Like resolve_number, but also accepts a queue name (as `exit_to` may)."""
        return self._numbers.get(target) or self._queues.get(target)

    def numbers(self) -> Mapping[str, Target]:
        """Every dialable number and what it reaches."""
        return dict(self._numbers)

    def credentials_for(self, user_id: str) -> tuple[str | None, str | None]:
        """(HA1 for MD5, HA1 for SHA-256) of a user, hex; (None, None) for an unknown user.

        From a plaintext password both are computed with realm = server.domain; from configured HA1 values
        only those given are known.
        """
        return self._credentials.get(user_id, (None, None))

    def serves_domain(self, host: str) -> bool:
        """Whether a request-URI / To host is ours (the domain or an alias), case- and bracket-insensitive."""
        return normalize_host(host) in self._domains

    def trunk_for(self, address: str) -> TrunkSettings | None:
        """The trunk whose source networks contain `address`; the most specific network wins."""
        try:
            ip = ipaddress.ip_address(normalize_host(address))
        except ValueError:
            return None
        best: tuple[int, TrunkSettings] | None = None
        for trunk in self.trunks:
            for network in trunk.match.source:
                if (
                    ip.version == network.version
                    and ip in network
                    and (best is None or network.prefixlen > best[0])
                ):
                    best = (network.prefixlen, trunk)
        return best[1] if best else None

    def team_members(self, team: str) -> list[AgentSettings]:
        return [a for a in self.agents if a.team == team]

    def warnings(self) -> list[str]:
        """Things that are allowed but probably wrong, as 'key: message' lines for `config check`."""
        out: list[str] = []
        for i, person in _enumerate_people(self):
            if person.password is not None and len(person.password.get_secret_value()) < 8:
                out.append(f"{format_loc((*i, 'password'))}: shorter than 8 characters; easy to guess online")
        out.extend(_digest_warnings(self))
        targets = {q.overflow.to for q in self.queues if q.overflow} | {
            q.exit_to for q in self.queues if q.exit_to
        }
        targets |= {t for trunk in self.trunks for t in trunk.dids.values()}
        for i, queue in enumerate(self.queues):
            final = queue.skills_at(float("inf"))
            for skill, level in final.items():
                if not any(a.skills.get(skill, 0) >= level for a in self.agents):
                    out.append(f"queues[{i}].skills.{skill}: no agent has {skill} at level {level} or above")
            if not queue.numbers and queue.name not in targets:
                out.append(f"queues[{i}]: no number, DID, overflow or exit_to reaches this queue")
        return out


def _digest_warnings(settings: Settings) -> list[str]:
    """Users whose only HA1 is for an algorithm the 401 does not offer first (or at all).

    The switch puts one challenge per algorithm in its 401, in `digest_algorithms` order (RFC 8760);
    pjsua2 and several phones answer only the first one, so a user without an HA1 for that algorithm
    cannot register from them. A plaintext password gives both HA1s, so only HA1-only users are at risk.
    """
    offered = settings.server.security.digest_algorithms
    key_of = {"MD5": "ha1_md5", "SHA-256": "ha1_sha256"}
    out: list[str] = []
    for loc, person in _enumerate_people(settings):
        if person.password is not None:
            continue
        known = [name for name, key in key_of.items() if getattr(person, key) is not None]
        if offered[0] in known or not known:
            continue
        has = known[0]
        key = format_loc((*loc, key_of[has]))
        missing = key_of[offered[0]]
        if has not in offered:
            out.append(
                f"{key}: {person.id} has only a {has} HA1 but server.security.digest_algorithms offers "
                f"{', '.join(offered)}, so {person.id} cannot register at all; add {missing} (or a password) "
                f"or add {has} to digest_algorithms"
            )
        else:
            out.append(
                f"{key}: {person.id} has only a {has} HA1 but the 401 challenge offers {offered[0]} first "
                f"(server.security.digest_algorithms); pjsua2 and several phones answer only the first "
                f"challenge, so {person.id} cannot register from them; add {missing} (or a password), "
                f"or put {has} first if every phone supports it"
            )
    return out


def _enumerate_people(settings: Settings) -> Iterator[tuple[Loc, AgentSettings | SupervisorSettings]]:
    for i, agent in enumerate(settings.agents):
        yield ("agents", i), agent
    for i, supervisor in enumerate(settings.supervisors):
        yield ("supervisors", i), supervisor


@dataclass(slots=True)
class _CrossReferences:
    """Who owns each id, queue name and number (the first entry to claim it), and what is wrong."""

    issues: list[tuple[Loc, str]]
    users: dict[str, Loc]  # id -> ("agents" | "supervisors", index)
    queues: dict[str, int]  # queue name -> index in queues
    numbers: dict[str, tuple[Loc, Loc]]  # number -> (owner ("agents" | ..., index), key path of the claim)


def _entries(settings: Any, section: str) -> tuple[Any, ...] | None:
    try:
        return tuple(getattr(settings, section))
    except Unknown:
        return None


def _cross_references(settings: Any) -> _CrossReferences:
    """The checks between entries of a `Settings`, or of a `RawView` of one (see the module docstring).

    Entries and fields a view cannot read take no part; a check that a name exists (overflow and exit
    targets, DID targets, supervisor teams) is skipped while any entry that could define it is unreadable.
    """
    out = _CrossReferences([], {}, {}, {})
    issues = out.issues
    all_numbers = all_queues = all_teams = True

    def claim_number(number: str, owner: Loc, loc: Loc) -> None:
        if number in out.numbers:
            issues.append((loc, f"number {number!r} is already used by {format_loc(out.numbers[number][1])}"))
        else:
            out.numbers[number] = (owner, loc)

    realm: str | None = None
    with suppress(Unknown):
        realm = settings.server.domain
    teams: set[str] = set()
    for section in ("agents", "supervisors"):
        people = _entries(settings, section)
        if people is None:
            all_numbers = False
            all_teams = all_teams and section != "agents"
            continue
        for i, person in enumerate(people):
            with suppress(Unknown):
                if person.id in out.users:
                    used = format_loc((*out.users[person.id], "id"))
                    issues.append(((section, i, "id"), f"id {person.id!r} is already used by {used}"))
                else:
                    out.users[person.id] = (section, i)
            try:
                if person.extension is not None:
                    claim_number(person.extension, (section, i), (section, i, "extension"))
            except Unknown:
                all_numbers = False
            if realm is not None:
                for algorithm in ("md5", "sha256"):
                    with suppress(Unknown):
                        issues.extend(
                            ((section, i, *loc), msg) for loc, msg in _ha1_issue(person, realm, algorithm)
                        )
            if section == "agents":
                try:
                    if person.team is not None:
                        teams.add(person.team)
                except Unknown:
                    all_teams = False

    queues = _entries(settings, "queues")
    if queues is None:
        queues, all_queues, all_numbers = (), False, False
    for i, queue in enumerate(queues):
        try:
            if queue.name in out.queues:
                first = out.queues[queue.name]
                issues.append(
                    (("queues", i, "name"), f"queue name {queue.name!r} is already used by queues[{first}]")
                )
            else:
                out.queues[queue.name] = i
        except Unknown:
            all_queues = False
        try:
            for j, number in enumerate(queue.numbers):
                claim_number(number, ("queues", i), ("queues", i, "numbers", j))
        except Unknown:
            all_numbers = False

    for i, queue in enumerate(queues if all_queues else ()):
        with suppress(Unknown):
            to = queue.overflow.to if queue.overflow is not None else None
            if to is not None and to != queue.name and to not in out.queues:
                issues.append((("queues", i, "overflow", "to"), _unknown("queue", to, out.queues)))
        with suppress(Unknown):
            exit_to = queue.exit_to
            if (
                all_numbers
                and exit_to is not None
                and exit_to not in out.numbers
                and exit_to not in out.queues
            ):
                issues.append((("queues", i, "exit_to"), f"{exit_to!r} is neither an extension nor a queue"))
    issues.extend(_overflow_cycles(queues, out.queues))

    for i, supervisor in enumerate((_entries(settings, "supervisors") or ()) if all_teams else ()):
        with suppress(Unknown):
            for j, team in enumerate(supervisor.teams):
                if team != ALL_TEAMS and team not in teams:
                    issues.append(
                        (("supervisors", i, "teams", j), _unknown("team", team, teams, what="no agent is in"))
                    )

    trunk_names: set[str] = set()
    for i, trunk in enumerate(_entries(settings, "trunks") or ()):
        with suppress(Unknown):
            if trunk.name in trunk_names:
                issues.append((("trunks", i, "name"), f"trunk name {trunk.name!r} is used twice"))
            trunk_names.add(trunk.name)
        with suppress(Unknown):
            for did, target in trunk.dids.items() if all_numbers else ():
                if target not in out.numbers:
                    issues.append(
                        (("trunks", i, "dids", did), f"target {target!r} is not an extension or queue number")
                    )
    return out


def _overflow_cycles(queues: tuple[Any, ...], names: dict[str, int]) -> list[tuple[Loc, str]]:
    """One issue per loop of overflow targets, at the last queue of the loop (reached from the first)."""
    edges: dict[str, str] = {}
    for name, i in names.items():
        with suppress(Unknown):
            if queues[i].overflow is not None:
                edges[name] = queues[i].overflow.to
    issues: list[tuple[Loc, str]] = []
    reported: set[str] = set()
    for start in names:
        path = [start]
        current = start
        while (nxt := edges.get(current)) is not None and nxt in names and nxt != current:
            if nxt in path:
                cycle = path[path.index(nxt) :]
                if not reported & set(cycle):
                    loop = " -> ".join([*cycle, nxt])
                    issues.append((("queues", names[cycle[-1]], "overflow", "to"), f"overflow loop: {loop}"))
                    reported.update(cycle)
                break
            path.append(nxt)
            current = nxt
    return issues


def _unknown(
    kind: str, name: str, known: Mapping[str, object] | set[str], *, what: str = "there is no"
) -> str:
    names = ", ".join(sorted(known)) or "none"
    return f"{what} {kind} {name!r} (known: {names})"


def _ha1_issue(person: Any, realm: str, algorithm: Literal["md5", "sha256"]) -> list[tuple[Loc, str]]:
    """A configured HA1 that does not match the configured password, for one algorithm."""
    if person.password is None:
        return []
    key = f"ha1_{algorithm}"
    configured = getattr(person, key)
    if configured is None or configured == digest_ha1(
        algorithm, person.id, realm, person.password.get_secret_value()
    ):
        return []
    return [((key,), f"does not match the password for realm {realm!r}")]


def _ha1_pair(person: AgentSettings | SupervisorSettings, realm: str) -> tuple[str | None, str | None]:
    if person.password is not None:
        password = person.password.get_secret_value()
        return digest_ha1("md5", person.id, realm, password), digest_ha1("sha256", person.id, realm, password)
    return person.ha1_md5, person.ha1_sha256


def cross_field_issues(data: object) -> list[tuple[Loc, str]]:
    """The cross-field problems in configuration data that does not validate, read through `RawView`s.

    Pydantic reports a model's `_checks` only when all of the model validates; this finds the ones it left
    out (and again the ones it did report, so callers merge the two without duplicates).
    """
    return _view_issues(RawView(Settings, data), ())
