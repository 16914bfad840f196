"""The network side of webhooks: the outbound URL guard and the signed POST.

Server-side request forgery guard: the host is resolved once, every address it resolves to must be public
(not loopback, private, link-local, reserved, multicast, unspecified or a cloud metadata address) unless
BRAINSCAN_WEBHOOK_ALLOW names the host or contains the address, and the request then goes to the address
that was checked, with the URL's host in the Host header and, for https, in TLS SNI and certificate
verification. A name that resolves to a public address when it is checked and to a private one a moment
later (DNS rebinding) therefore never reaches the private one. Redirects are never followed, time limits
are short, and at most 1 kB of the answer is read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

from integrations.models import RESPONSE_BODY_LIMIT

METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlRefused(ValueError):
    """The URL may not be called: the reason is meant for the administrator who registered it."""


class Unresolvable(UrlRefused):
    """The host name does not resolve (now): refused at registration, tried again later at delivery."""


@dataclass(frozen=True)
class Target:
    """A URL checked by `resolve`, and the one address the request will go to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    duration_ms: float


class SendError(Exception):
    """No answer: the connection failed or timed out (worth trying again)."""

    def __init__(self, message: str, duration_ms: float):
        super().__init__(message)
        self.duration_ms = duration_ms


def allowed_schemes() -> tuple[str, ...]:
    return ("https",) if settings.PRODUCTION else ("https", "http")


def _allow_list() -> tuple[frozenset[str], tuple]:
    hosts, networks = set(), []
    for entry in settings.WEBHOOK_ALLOW:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return frozenset(hosts), tuple(networks)


def forbidden_kind(ip) -> str | None:
    """Why an address may not be called without the allow-list, or None for a public address."""
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour):
        return forbidden_kind(ip.ipv4_mapped or ip.sixtofour)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    for attribute, kind in (("is_loopback", "loopback"), ("is_unspecified", "unspecified"),
                            ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                            ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return kind
    return None if ip.is_global else "non-public"


def resolve(url: str) -> Target:
    """Check the URL and resolve its host, once; raises UrlRefused with the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"The URL is not valid ({error}).") from None
    scheme = parts.scheme.lower()
    if scheme not in allowed_schemes():
        raise UrlRefused("Webhook URLs must use https." if settings.PRODUCTION
                         else "Webhook URLs must use https (or http outside production).")
    if parts.username or parts.password:
        raise UrlRefused("Webhook URLs may not carry a user name or password.")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UrlRefused("The URL has no host.")
    port = port or DEFAULT_PORTS[scheme]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unresolvable(f"The host {host} cannot be resolved ({error}).") from None
    addresses = list(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))
    if not addresses:
        raise Unresolvable(f"The host {host} has no address.")
    allowed_hosts, allowed_networks = _allow_list()
    if host not in allowed_hosts:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            kind = forbidden_kind(ip)
            if kind and not any(ip.version == network.version and ip in network for network in allowed_networks):
                raise UrlRefused(f"{host} resolves to {address}, a {kind} address: webhooks may only reach public "
                                 "addresses (an administrator can allow this host with BRAINSCAN_WEBHOOK_ALLOW).")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=scheme, host=host, port=port, path=path, address=addresses[0])


def post(target: Target, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to the checked address of `target`; raises SendError when there is no answer."""
    timeout = urllib3.Timeout(connect=settings.WEBHOOK_CONNECT_SECONDS, read=settings.WEBHOOK_READ_SECONDS,
                              total=settings.WEBHOOK_CONNECT_SECONDS + settings.WEBHOOK_READ_SECONDS)
    options = {"host": target.address, "port": target.port, "timeout": timeout, "retries": False, "maxsize": 1}
    if target.scheme == "https":
        # Connect to the checked address, but present and verify the URL's host name (SNI and certificate).
        pool = urllib3.HTTPSConnectionPool(**options, cert_reqs="CERT_REQUIRED", server_hostname=target.host,
                                           assert_hostname=target.host)
    else:
        pool = urllib3.HTTPConnectionPool(**options)
    started = time.monotonic()
    try:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.host_header},
                                redirect=False, retries=False, preload_content=False, assert_same_host=False)
        try:
            excerpt = response.read(RESPONSE_BODY_LIMIT)
        finally:
            response.close()  # the rest of the answer is never read
        return Answer(response.status, excerpt[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace"),
                      (time.monotonic() - started) * 1000)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise SendError(f"{type(error).__name__}: {error}"[:500], (time.monotonic() - started) * 1000) from error
    finally:
        pool.close()
