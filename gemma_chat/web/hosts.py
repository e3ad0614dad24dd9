"""Which Host names the app answers to, and whether a request comes from another origin.

DNS rebinding: a page on attacker.example whose name the attacker points at 127.0.0.1 is, to the
browser, same-origin with the app it reaches, so Origin and SameSite say nothing. Only the Host
header tells: it names the attacker's domain. The app answers to the loopback names, the --host
it listens on and `allowed_hosts`; when it listens on every interface (0.0.0.0, ::) any IP literal
too, since rebinding needs a name (an address cannot be re-pointed).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_host(value: str | None) -> tuple[str, int | None] | None:
    """A Host header (or an allowed_hosts entry) as (lower-case name, port or None); None if malformed."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:7860
        end = value.find("]")
        if end == -1:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] or None
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:  # a bare IPv6 address
        name, port = value, None
    else:
        name, port = value, None
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/@ \\?#"):
        return None
    return name, int(port) if port else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostNames:
    names: frozenset[str]
    any_ip: bool  # listening on every interface: any address literal is fine

    @classmethod
    def for_server(cls, listen_host: str, allowed_hosts=()) -> "HostNames":
        names = set(LOOPBACK_NAMES)
        listen = (listen_host or "").strip().lower().strip("[]")
        if listen not in WILDCARD_HOSTS:
            names.add(listen)
        for entry in allowed_hosts:
            parsed = split_host(entry)
            if parsed is not None:
                names.add(parsed[0])
        return cls(frozenset(names), any_ip=listen in WILDCARD_HOSTS)

    def allows(self, host_header: str | None) -> bool:
        parsed = split_host(host_header)
        if parsed is None:
            return False
        return parsed[0] in self.names or (self.any_ip and _is_ip(parsed[0]))


def origin_of(scheme: str, host_header: str | None) -> tuple[str, str, int] | None:
    parsed = split_host(host_header)
    if parsed is None:
        return None
    name, port = parsed
    return scheme, name, port or DEFAULT_PORTS.get(scheme, 0)


def parse_origin(origin: str) -> tuple[str, str, int] | None:
    """An Origin header as (scheme, host, port) with the scheme's default port; None for "null" or junk."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.rstrip("."), port or DEFAULT_PORTS[parts.scheme]


def is_foreign(scheme: str, host_header: str | None, origin: str | None, fetch_site: str | None) -> bool:
    """Does the request come from a page of another origin?

    Sec-Fetch-Site, which the browser sets and a page cannot, says it outright ("same-site" is
    another port or subdomain: still another origin). Origin is compared as (scheme, host, port).
    Neither header (a script, curl, an old browser's GET) is not a browser page of another site.
    """
    if fetch_site is not None and fetch_site.strip().lower() in ("cross-site", "same-site"):
        return True
    if origin is None:
        return False
    ours = origin_of(scheme, host_header)
    return ours is None or parse_origin(origin) != ours
