"""Who may talk to `argen serve`: an ASGI middleware in front of every route.

A server on 127.0.0.1 is still reachable from any web page the user opens: a page may POST to it (cross-site
request forgery), and a domain that re-resolves to 127.0.0.1 reads its answers (DNS rebinding). So:

- the Host header must name the machine by an IP address, as `localhost`, or as one of the names the user allows
  (`argen serve --allow-host NAME`, for a reverse proxy; `*` turns the check off). A rebinding attack always
  arrives with its own domain name, never an address;
- a request that changes something (POST) must come from the server's own page: a browser's Origin header, when
  sent, must name the host the request is addressed to, and the body must be declared `application/json`, which a
  foreign page cannot send without a CORS preflight that this server never grants;
- a declared Content-Length over the limit is refused before a byte of the body is read.

Every refusal is a JSON error with one line, like the app's own.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def host_name(host: str) -> str:
    """The name part of a Host header value ("[::1]:8000" -> "::1", "localhost:8000" -> "localhost")."""
    return urlsplit(f"//{host}").hostname or ""


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Guard:
    """Host, Origin, Content-Type and Content-Length checks before the app sees a request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, allowed_hosts: tuple[str, ...] = ()):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = {"localhost", *(name.lower() for name in allowed_hosts)}

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must not reach the app, else None."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host = headers.get("host", "")
        name = host_name(host).lower() if host else ""
        if not self.any_host and not (_is_address(name) or name in self.allowed_hosts):
            return 421, (
                f"this server does not answer to the host name {name or '(none)'!r}; open it by its "
                "address or as localhost, or start it with --allow-host NAME"
            )
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        origin = headers.get("origin")
        # The page's own origin names the host it was loaded from (behind a TLS proxy its scheme is https while
        # this server sees http, so the host is what is compared).
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"requests from the page at {origin} are refused: only this server's own page may start runs"
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return 415, "the body must be sent with Content-Type: application/json"
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, f"Content-Length {length!r} is not a byte count"
            if int(length) > self.max_body_bytes:
                return 413, f"the body has {int(length)} bytes; at most {self.max_body_bytes}"
        return None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message = refused
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
