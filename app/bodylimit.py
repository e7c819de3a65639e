"""Request body size limit for the API, as a pure ASGI middleware (no Starlette request objects).

The limit is enforced before the application parses anything:

* a ``Content-Length`` above the limit is answered 413 at once; the application is not called
  and not one byte of the body is read by it (with ``Expect: 100-continue`` the client is not
  even asked to send it);
* a body without a usable ``Content-Length`` (chunked transfer encoding) is counted as it
  streams in; as soon as the count passes the limit the client gets the 413 and the application
  gets ``http.disconnect``, so it never holds more than the limit.

The 413 body is JSON ``{"error": "body_too_large", "detail": "..."}``. After a 413, uvicorn
reads and discards the rest of the body (it keeps at most its own 64 KiB read buffer), then the
connection can be reused; the event loop is never blocked by a large body.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (64 KiB). A ``POST /jobs`` body is under 100 bytes.
MAX_BODY_BYTES = 64 * 1024


def declared_length(scope: Scope) -> int | None:
    """Return the request's ``Content-Length`` in bytes, or None when absent or unusable.

    Args:
        scope: an ASGI ``http`` scope (``headers`` is a list of ``(name, value)`` byte pairs).

    Returns:
        The value as an int when there is exactly one ``Content-Length`` header holding only
        ASCII digits; None otherwise (no header, several, or garbage; the server's HTTP parser
        normally rejects the last two first). A None length means the body is counted instead.
    """
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
    if len(values) != 1:
        return None
    raw = values[0].strip()
    if not raw or not raw.isdigit() or len(raw) > 20:
        return None
    return int(raw)


def too_large_body(max_bytes: int, declared: int | None) -> bytes:
    """The 413 JSON body: ``{"error": "body_too_large", "detail": ...}`` (UTF-8 bytes).

    Args:
        max_bytes: the limit, bytes. declared: the request's Content-Length (bytes), if any.
    """
    size = f"Content-Length {declared} bytes" if declared is not None else "the body streamed so far"
    detail = f"request body too large: {size} exceeds the limit of {max_bytes} bytes"
    return json.dumps({"error": "body_too_large", "detail": detail}).encode()


async def send_too_large(send: Send, max_bytes: int, declared: int | None) -> None:
    """Send a complete 413 response with the JSON body of :func:`too_large_body` through ``send``."""
    body = too_large_body(max_bytes, declared)
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimitMiddleware:
    """Answer 413 to HTTP requests whose body is larger than ``max_bytes`` bytes (see module doc).

    Args:
        app: the ASGI application to protect.
        max_bytes: largest accepted body, bytes (>= 0); default :data:`MAX_BODY_BYTES`.

    Raises:
        ValueError: ``max_bytes`` is negative.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; only ``http`` scopes are limited, others pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            log.info("%s %s: refused, Content-Length %d > %d bytes", scope.get("method"), scope.get("path"),
                     declared, self.max_bytes)
            await send_too_large(send, self.max_bytes, declared)
            return

        received = 0  # body bytes seen so far
        app_started = False  # the application has sent http.response.start
        refused = False  # the limit was passed: the application only gets http.disconnect now
        answered = False  # this middleware sent the 413: the application's messages are dropped

        async def limited_receive() -> Message:
            nonlocal received, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    log.info("%s %s: refused, body passed %d bytes", scope.get("method"), scope.get("path"),
                             self.max_bytes)
                    if not app_started:
                        answered = True
                        await send_too_large(send, self.max_bytes, declared)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if answered:
                return  # the 413 is the response; whatever the application says now goes nowhere
            if message["type"] == "http.response.start":
                app_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
