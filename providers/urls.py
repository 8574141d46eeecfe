"""Where a URL may point (pure): host allow-lists, finished videos (OUTPUT_HOSTS), input images.

`output_url_problem(url, allowed)` says whether the finalize step may download a finished video.

`image_url_problem(url, allowed)` is the only judge of `imageUrl` (`web/schemas.py` calls it with no
allow-list; the RunwayML validation with IMAGE_URL_HOSTS). A provider fetches that URL, so it must
name a public web server, checked in this order::

    https only, no user:password@, no port but 443
    a DNS name: never an IP literal in any notation (127.0.0.1, 2130706433, 0x7f000001, 127.1, [::1])
    letters, digits and hyphens, under a public suffix of the Public Suffix List (bundled with the
      `publicsuffixlist` package and read offline): so localhost, *.internal, *.local, single-label
      names and unknown top-level domains are refused, and so is a bare public suffix (co.uk)
    no name that embeds an IP address (four numeric labels, 127-0-0-1 style labels) and no
      wildcard-DNS service that answers with the address written in the name (nip.io, sslip.io, ...)
    with an allow-list: only the hosts on it (`host`, or `.domain` for its subdomains)

The name is not resolved: a public name may still point at a private address (DNS rebinding), which
is the fetching provider's side of the wall; an allow-list closes it where that matters.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

# Services that resolve any name to the address written in it (`10.0.0.1.nip.io`, `7f000001.nip.io`)
# or to loopback (`anything.localtest.me`): a public suffix, an internal target.
WILDCARD_DNS = (
    "nip.io",
    "sslip.io",
    "xip.io",
    "traefik.me",
    "localtest.me",
    "lvh.me",
    "vcap.me",
    "lacolhost.com",
    "local.gd",
)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")  # what inet_aton takes as one part of an IPv4 address
_EMBEDDED_IP = re.compile(r"(?:^|[.-])\d{1,3}[.-]\d{1,3}[.-]\d{1,3}[.-]\d{1,3}(?:$|[.-])")


def host_allowed(host: str, port: int | None, allowed: Sequence[str]) -> bool:
    """`host` matches an entry exactly (`host` or `host:port`) or ends with a `.domain` entry."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("."):
            if host.endswith(entry) and len(host) > len(entry):
                return True
        elif entry in (host, f"{host}:{port}"):
            return True
    return False


def output_url_problem(url: str, allowed: Sequence[str]) -> str | None:
    """Why a finished video at `url` may not be downloaded, or None: https on an OUTPUT_HOSTS host
    (plain http only on loopback, for the local stack)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "the output URL is malformed"
    if not host or parts.username or parts.password:
        return "the output URL has no plain host"
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
        return f"the output URL must be https (got {parts.scheme or 'no scheme'})"
    if not host_allowed(host, port, allowed):
        return f"the output host {host} is not in OUTPUT_HOSTS"
    return None


def host_of(url: str) -> str | None:
    """The host of `url`, or None when it has none (or is malformed)."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def image_url_problem(url: str, allowed: Sequence[str] = ()) -> str | None:
    """Why a provider may not be sent to fetch `url` (no field name in it), or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "must be a well-formed https:// URL"
    if parts.scheme != "https" or not host:
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if port not in (None, 443):
        return "must use the default https port"
    if problem := host_problem(host):
        return problem
    if allowed and not host_allowed(host, None, allowed):
        return f"the host {host} is not one of the allowed image hosts (IMAGE_URL_HOSTS)"
    return None


def host_problem(host: str) -> str | None:
    """Why `host` is not a public DNS name (see the module docstring), or None."""
    name = host.lower().removesuffix(".")
    if _is_ip_literal(name):
        return "must use a domain name, not an IP address"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "must use a plain domain name (letters, digits and hyphens)"
    if _psl().privatesuffix(name, accept_unknown=False) is None:
        return "must use a public domain name (not localhost, an internal or a single-label name)"
    if _EMBEDDED_IP.search(name) or any(name == d or name.endswith("." + d) for d in WILDCARD_DNS):
        return "must not use a name that stands for an IP address"
    return None


def _is_ip_literal(name: str) -> bool:
    """An IPv4/IPv6 address as resolvers read it, short and octal/hex forms included (`0x7f.1`)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        parts = name.split(".")
        return 1 <= len(parts) <= 4 and all(_NUMBER.fullmatch(part) for part in parts)
    return True


@functools.lru_cache(maxsize=1)
def _psl() -> Any:
    """The bundled Public Suffix List, loaded on first use (about 0.2 s), never fetched."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()
