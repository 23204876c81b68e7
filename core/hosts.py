"""Django's rules for a request's Host and scheme, for code that reads an ASGI scope before Django does."""

from __future__ import annotations

from collections.abc import Sequence

from django.http.request import split_domain_port, validate_host


def host_allowed(netloc: str, allowed_hosts: Sequence[str]) -> bool:
    """HttpRequest.get_host()'s check: a host (port aside) that ALLOWED_HOSTS names; an empty one never."""
    host, _ = split_domain_port(netloc)
    return bool(host) and validate_host(host, allowed_hosts)


def asgi_ssl_header(meta_header: tuple[str, str] | None) -> tuple[bytes, bytes] | None:
    """SECURE_PROXY_SSL_HEADER as ASGI spells the header.

    ("HTTP_X_FORWARDED_PROTO", "https") -> (b"x-forwarded-proto", b"https").
    """
    if not meta_header:
        return None
    name, value = meta_header
    return name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1"), value.encode("latin-1")


def is_secure(scope: dict, headers: dict, ssl_header: tuple[bytes, bytes] | None) -> bool:
    """HttpRequest.is_secure() on an ASGI scope: the proxy's header when present, else the scheme."""
    if ssl_header is not None:
        name, value = ssl_header
        forwarded = headers.get(name)
        if forwarded is not None:
            return forwarded.split(b",", 1)[0].strip() == value
    return scope.get("scheme") == "https"
