"""The emulator reached inside the process: the TextMagic client's connections, without a socket."""

from __future__ import annotations

from collections.abc import AsyncIterable

import httpcore2
import httpx2
from starlette.types import ASGIApp


class InProcess:
    """Hands each request to an ASGI app in this process and returns its answer, body read and untouched.

    A fault in the app answers 500, as a server would, instead of raising into the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = httpx2.ASGITransport(app=app, raise_app_exceptions=False)

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        assert isinstance(request.stream, AsyncIterable)
        sent = httpx2.Request(
            request.method.decode("ascii"),
            bytes(request.url).decode("ascii"),
            headers=request.headers,
            content=b"".join([part async for part in request.stream]),
        )
        answer = await self._app.handle_async_request(sent)
        # The raw bytes, compressed or not: decoding is the client's part, as with a real connection.
        assert isinstance(answer.stream, AsyncIterable)
        body = b"".join([part async for part in answer.stream])
        response = httpcore2.Response(answer.status_code, headers=answer.headers.raw, content=body)
        await response.aread()
        return response

    async def aclose(self) -> None:
        await self._app.aclose()
