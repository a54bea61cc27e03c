"""The sockets under TextMagic's connections: asyncio streams, as an httpcore2 network backend.

httpcore2 reaches the network through a backend it is given (by default anyio's streams). anyio wraps every
read and write in cancel scopes and extra scheduling steps, and finds a connection's socket through a chain
of attribute lookups each time httpcore2 checks that an idle connection is still usable; with httpx2's
request and response objects, which the client leaves out too, that was a fifth of the event loop's time in
a burst of calls (``bench/README.md``). The server runs on asyncio, whose streams do the same work
directly; cancellation still reaches them, as anyio cancels asyncio tasks.
"""

# ruff: noqa: ASYNC109 - the timeout parameters are httpcore2's network-backend interface.
from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        # asyncio's own loops try a host's next address after 250 ms, as anyio does, so a dead IPv6 route costs
        # no timeout; other loops (uvloop, which uvicorn takes when it is installed) try them in turn.
        loop = asyncio.get_running_loop()
        eyeballs: dict[str, Any] = (
            {"happy_eyeballs_delay": 0.25} if isinstance(loop, asyncio.BaseEventLoop) else {}
        )
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, **eyeballs
                )
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(f"nothing received within {timeout} s") from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            # The socket usually takes a request whole: wait only when the kernel's buffer is full.
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore2.WriteTimeout(f"could not send within {timeout} s") from exc
        except OSError as exc:
            raise httpcore2.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore2.ConnectTimeout(f"no TLS handshake within {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.close()
            raise httpcore2.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle keep-alive connection with something to read has been closed (or answered out of turn)
            # by the server: httpcore2 then opens a new one rather than send on it.
            return self._readable()
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return self._writer.get_extra_info(info)

    def _readable(self) -> bool:
        if self._reader.at_eof() or self._reader.exception() is not None or self._writer.is_closing():
            return True
        # asyncio reads a socket when the loop next polls it: an end that arrived since still waits in it.
        sock = self._writer.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return True
        if hasattr(select, "poll"):
            poll = select.poll()
            poll.register(sock.fileno(), select.POLLIN)
            return bool(poll.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
