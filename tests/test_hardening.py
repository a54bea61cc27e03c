"""The adversarial review's findings, one test each (the numbers are the review's), through the real parts: the SDK's
client, the emulator over HTTP on 127.0.0.1, hostile TextMagics on loopback or behind an httpx2 transport."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute, SocketStream
from mcp_types import ElicitRequestParams, ElicitResult, Implementation, InputRequiredResult

from server.sandbox import Emulator
from server.state.settings import ConfigError, environment_proxy, load_settings
from server.textmagic import RetryPolicy, TextMagicError
from tests.helpers import (
    API_KEY,
    USERNAME,
    HttpProcess,
    ServedEmulator,
    User,
    connect,
    deletions,
    mcp_client,
    newest,
    preview_token,
    records,
    sent,
    text_of,
    textmagic_client,
    tm_requests,
)

pytestmark = pytest.mark.anyio

BULK = "delete_message_sessions_bulk"
HIDDEN = "\u202e\u200b\U000e0041\u2066"


async def test_2_concurrent_confirmations_send_one_delete(make_server: Any, emulator: Emulator) -> None:
    ids = newest(emulator, 3)
    async with connect(make_server()) as client:
        token = await preview_token(client, BULK, {"ids": ids})
        confirming = {"ids": ids, "confirm": True, "confirmation_token": token}
        results: list[Any] = []
        async with anyio.create_task_group() as group:
            for _ in range(5):

                async def confirm() -> None:
                    results.append(await client.call_tool(BULK, confirming))

                group.start_soon(confirm)
    done = [r for r in results if not r.is_error and r.structured_content["deleted"]]
    refused = [r for r in results if r.is_error]
    assert len(done) == 1 and len(refused) == 4 and all("used already" in text_of(r) for r in refused)
    assert sent(emulator, "POST") == 1 and sorted(emulator.deleted_ids) == sorted(ids)


async def test_1_the_accepted_round_cannot_be_sent_again(make_server: Any, emulator: Emulator) -> None:
    """On 2026-07-28 the person's answer travels in a round the client resends; the second time it deletes nothing."""
    first, second = newest(emulator, 2)

    async def never(_ctx: Any, _params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("answered by hand")

    async with connect(make_server(), "modern", elicitation_callback=never) as client:
        token = await preview_token(client, "delete_message_session", {"id": first})
        arguments = {"id": first, "confirm": True, "confirmation_token": token}
        asked = await client.session.call_tool("delete_message_session", arguments, allow_input_required=True)
        assert isinstance(asked, InputRequiredResult) and asked.input_requests
        [key] = asked.input_requests
        answer = {key: ElicitResult(action="accept", content={"confirm": True})}
        rounds = []
        for _ in range(2):
            rounds.append(
                await client.session.call_tool(
                    "delete_message_session",
                    arguments,
                    input_responses=answer,
                    request_state=asked.request_state,
                    allow_input_required=True,
                )
            )
    done, replayed = rounds
    assert not isinstance(done, InputRequiredResult) and done.structured_content["deleted"] is True
    assert not isinstance(replayed, InputRequiredResult) and replayed.is_error
    assert "used already" in text_of(replayed)
    assert (
        sent(emulator, "DELETE") == 1 and emulator.deleted_ids == [first] and second in emulator.data.sessions
    )


async def test_3_a_cancelled_delete_leaves_its_trail(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    ids = newest(emulator, 2)
    async with connect(make_server(audit_log=str(audit))) as client:
        token = await preview_token(client, BULK, {"ids": ids})
        # TextMagic carries the delete out, then holds its answer while the client gives up.
        emulator.fail_next(stall=5.0, method="POST", carry_out=True)
        before = len(emulator.requests)
        async with anyio.create_task_group() as group:
            group.start_soon(
                client.call_tool, BULK, {"ids": ids, "confirm": True, "confirmation_token": token}
            )
            assert await anyio.to_thread.run_sync(emulator.wait_for_requests, before + 3)
            group.cancel_scope.cancel()
    outcomes = [(r["outcome"], r["ids"]) for r in records(audit)]
    assert outcomes == [("preview", sorted(ids)), ("sending", sorted(ids)), ("cancelled", sorted(ids))]
    assert "may have been done" in records(audit)[-1]["detail"]


async def test_3_refusals_for_bad_arguments_are_audited_and_records_are_bounded_lines(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    name = "evil\u2028client\u2029\x85\x1c" + "x" * 3_900_000
    info = Implementation(name=name, version="1")
    async with connect(make_server(audit_log=str(audit)), client_info=info) as client:
        await client.call_tool(BULK, {"ids": [1, "two"], "confirm": True})
        await client.call_tool("delete_message_session", {"id": 5, "session": 5})
        await client.call_tool(BULK, {"ids": [7], "confirm": "yes"})
    text = audit.read_text()
    lines = text.splitlines()
    assert len(lines) == 3 and all(len(line.encode()) <= 4096 for line in lines)
    assert [r["outcome"] for r in records(audit)] == ["refused"] * 3
    assert (
        "ids.1" in records(audit)[0]["detail"] and "unknown argument 'session'" in records(audit)[1]["detail"]
    )
    assert records(audit)[0]["client"].startswith("evil\u2028client") and text.isascii()
    assert tm_requests(emulator) == []


def test_4_a_proxy_password_with_a_hash_is_refused_unshown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.wiring.cli import main

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:Pw0rd#x@host:9")
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as refused:
        environment_proxy("https://rest.textmagic.com")
    monkeypatch.setenv("TEXTMAGIC_USERNAME", USERNAME)
    monkeypatch.setenv("TEXTMAGIC_API_KEY", API_KEY)
    with pytest.raises(SystemExit) as stopped:
        main(["tools"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "HTTPS_PROXY" in err and "%23" in err
    for shown in (str(refused.value), err):
        assert "Pw0rd" not in shown and "Traceback" not in shown
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:99999")
    with pytest.raises(ConfigError, match="port must be a number from 1 to 65535"):
        environment_proxy("https://rest.textmagic.com")


def gzip_of_zeros(megabytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(2**20)
    return b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()


async def test_5_a_gzip_bomb_is_refused_with_memory_to_spare() -> None:
    bomb = gzip_of_zeros(300)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(bomb), 65536):
            yield bomb[start : start + 65536]

    def answer(_request: httpx2.Request) -> httpx2.Response:
        # Streamed, as from a socket: the client reads it, and must stop reading.
        return httpx2.Response(200, headers={"content-encoding": "gzip"}, content=chunks())

    tracemalloc.start()
    try:
        async with textmagic_client(
            "https://textmagic.test", transport=httpx2.MockTransport(answer)
        ) as client:
            with pytest.raises(TextMagicError, match="more than 8 MB once decompressed") as refused:
                await client.list_sessions(page=1, limit=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 300 MB inflated; what was held at once stayed near the bound.
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MB"
    assert "Tried 1 time" not in str(refused.value), "an answer that big is not asked for again"


@pytest.mark.parametrize(("count", "refused"), [(1_000_000, True), (60_000, False)])
async def test_5_a_page_longer_than_asked_for_is_not_read_past_it(count: int, refused: bool) -> None:
    page = json.dumps(
        {"page": 1, "pageCount": 1, "limit": 10, "resources": [{"id": n} for n in range(count)]}
    )

    def answer(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=page.encode())

    async with textmagic_client("https://textmagic.test", transport=httpx2.MockTransport(answer)) as client:
        if refused:
            with pytest.raises(TextMagicError, match="more than 8 MB"):
                await client.list_sessions(page=1, limit=10)
        else:
            listed = await client.list_sessions(page=1, limit=10)
            assert [session.id for session in listed.resources] == list(range(10))


async def test_6_a_drip_fed_answer_ends_at_the_deadline() -> None:
    async def drip(client: SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while True:
                await client.send(b"{")
                await anyio.sleep(0.05)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as serving:
        serving.start_soon(listener.serve, drip)
        port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio's typed attributes, not Django)
        started = time.perf_counter()
        async with textmagic_client(
            f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=1), timeout=0.5
        ) as client:
            with pytest.raises(TextMagicError, match=r"no answer within 0\.5 s"):
                await client.get_session(1)
        elapsed = time.perf_counter() - started
        serving.cancel_scope.cancel()
    assert elapsed < 1.5, "each byte came in time; the request as a whole did not"


SLOW_CONNECTIONS = 1_100
MORE_WHILE_CALLING = 400
CLIENTS = 20
CALLS_PER_CLIENT = 3


async def test_7_clients_are_served_beside_a_thousand_slow_connections(
    served: ServedEmulator, emulator: Emulator
) -> None:
    """Finding 7, and the soak: at a 1,024 file limit, 1,100 connections sending half a header locked every
    authenticated client out. Now 20 clients get every answer beside them, while more keep coming."""
    [session_id] = newest(emulator)
    # Twenty clients share one token: one caller, allowed as many calls at once.
    server = HttpProcess(served, open_files=1024, TEXTMAGIC_CALLS_PER_CALLER=str(CLIENTS))
    address = httpx2.URL(server.url)
    slow: list[socket.socket] = []
    flooded = anyio.Event()
    answers: list[bool] = []
    try:
        # Bounded in time: on a server that slow connections lock, the clients would wait for ever.
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def flood() -> None:
                    # The clients start once the finding's 1,100 are in; more keep coming while they call.
                    for n in range(SLOW_CONNECTIONS + MORE_WHILE_CALLING):
                        slow.append(await _half_a_request(address.host, address.port))
                        if n + 1 == SLOW_CONNECTIONS:
                            flooded.set()

                async def client() -> None:
                    await flooded.wait()
                    async with mcp_client(server.url) as mcp:
                        for _ in range(CALLS_PER_CLIENT):
                            result = await mcp.call_tool("get_message_session", {"id": session_id})
                            answers.append(
                                not result.is_error and result.structured_content["id"] == session_id
                            )

                group.start_soon(flood)
                for _ in range(CLIENTS):
                    group.start_soon(client)
            # The longest waiting are dropped once too many wait: all but the newest 256 (the limit at 1,024
            # files), in the order they came. The server may still be taking in the last ones: each is waited
            # for until its end arrives (the header deadline would drop the rest too, later).
            for sock in slow[: len(slow) - 256]:
                await anyio.wait_readable(sock)
        dropped = [_closed_by_peer(sock) for sock in slow[: len(slow) - 256]]
    finally:
        for sock in slow:
            sock.close()
        server.stop()
    assert answers == [True] * (CLIENTS * CALLS_PER_CLIENT)
    # The slow ones were let in, and the longest waiting dropped.
    assert len(slow) == SLOW_CONNECTIONS + MORE_WHILE_CALLING
    assert all(dropped)


async def _half_a_request(host: str, port: int) -> socket.socket:
    """A connection that sends the start of a request's headers and nothing more."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex((host, port))
    await anyio.wait_writable(sock)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    sock.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 302, "headers": {"Location": "http://portal.example/login"}, "raw": b""},
        {"status": 200, "raw": b"<html><body>Sign in to the hotel Wi-Fi</body></html>"},
    ],
    ids=["redirect", "captive-portal"],
)
@pytest.mark.parametrize("tool", ["delete_message_session", BULK])
async def test_8_only_textmagic_confirming_a_delete_counts(
    make_server: Any, emulator: Emulator, tmp_path: Path, answer: dict[str, Any], tool: str
) -> None:
    audit = tmp_path / "audit.jsonl"
    [session_id] = newest(emulator)
    arguments = {"id": session_id} if tool == "delete_message_session" else {"ids": [session_id]}
    async with connect(make_server(audit_log=str(audit))) as client:
        token = await preview_token(client, tool, arguments)
        emulator.fail_next(method="DELETE" if tool != BULK else "POST", **answer)
        done = await client.call_tool(tool, {**arguments, "confirm": True, "confirmation_token": token})
    result = done.structured_content
    assert result["deleted"] is False and "not a confirmation" in result["message"]
    # Not TextMagic's word either way: still there when looked at twice, reported unknown, never "not deleted".
    assert result["uncertain_ids"] == [session_id] and "Looked twice" in result["message"]
    assert session_id in emulator.data.sessions and emulator.deleted_ids == []
    assert [r["outcome"] for r in records(audit)][-2:] == ["sending", "uncertain"]
    # Not followed, not sent again.
    assert [r.method for r in tm_requests(emulator)].count("DELETE" if tool != BULK else "POST") == 1


async def test_9_hidden_characters_are_neutralised_wherever_they_come_from(
    make_server: Any, emulator: Emulator
) -> None:
    [session_id] = newest(emulator)
    message = emulator.data.messages[session_id][0]
    message.update(
        status="j",
        deleted=False,
        receiver=f"4477{HIDDEN}00",
        rejectReason=f"c{HIDDEN}",
        session={"id": session_id, "referenceId": f"ref{HIDDEN}"},
        addedLater={f"key{HIDDEN}": [f"deep{HIDDEN}"]},
    )
    async with connect(make_server()) as client:
        page = await client.call_tool("get_messages_by_session_id", {"id": session_id, "limit": 1})
        report = await client.call_tool("get_delivery_report", {"id": session_id, "failed_limit": 500})
        failed = await client.call_tool("get_recipients", {"id": session_id})
        emulator.fail_next(
            400, {"code": 400, "message": f"Bad{HIDDEN}", "errors": {"fields": {f"f{HIDDEN}": ["x"]}}}
        )
        error = await client.call_tool("get_message_session", {"id": session_id})
    for result in (page, report, failed, error):
        for shown in (text_of(result), json.dumps(result.structured_content, ensure_ascii=False)):
            assert not any(char in shown for char in HIDDEN), shown[:200]
    assert page.structured_content["resources"][0]["receiver"] == "4477\\u202e\\u200b\\U000e0041\\u206600"
    assert "\\u202e" in text_of(error)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"rate_limit": 1e-9}, "TEXTMAGIC_RATE_LIMIT: Input should be greater than or equal to 0.1"),
        ({"confirmation_secret": "x"}, "TEXTMAGIC_CONFIRMATION_SECRET: is too short"),
        ({"base_url": "http://rest.textmagic.com"}, "TEXTMAGIC_ALLOW_INSECURE_HTTP=true"),
        ({"api_key": "   "}, "TEXTMAGIC_API_KEY: is blank"),
        ({"username": " acme "}, "TEXTMAGIC_USERNAME: has spaces around it"),
        ({"redis_url": "memcached://x"}, "TEXTMAGIC_REDIS_URL: must be a redis://"),
    ],
)
def test_10_settings_that_cannot_be_safe_stop_the_start(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(**{"username": USERNAME, "api_key": API_KEY, **overrides})
    assert variable in str(refused.value)
    for value in overrides.values():
        if isinstance(value, str) and len(value.strip()) > 3:
            assert value not in str(refused.value)


def test_10_insecure_http_when_asked_for_and_loopback_always() -> None:
    assert load_settings(username="u", api_key="k", base_url="http://127.0.0.1:8089").api_root
    explicit = load_settings(username="u", api_key="k", base_url="http://tm.lan", allow_insecure_http=True)
    assert explicit.api_root == "http://tm.lan"


async def test_11_only_json_true_confirms(make_server: Any, emulator: Emulator) -> None:
    first, second = newest(emulator, 2)
    async with connect(make_server()) as client:
        token = await preview_token(client, "delete_message_session", {"id": first})
        loose = await client.call_tool(
            "delete_message_session", {"id": first, "confirm": "yes", "confirmation_token": token}
        )
        one = await client.call_tool(
            "delete_message_session", {"id": first, "confirm": 1, "confirmation_token": token}
        )
        every = await client.call_tool(BULK, {"all": "true"})
    user = User("accept", {"confirm": "yes"})
    async with connect(make_server(), "legacy", elicitation_callback=user) as client:
        token = await preview_token(client, "delete_message_session", {"id": second})
        answered = await client.call_tool(
            "delete_message_session", {"id": second, "confirm": True, "confirmation_token": token}
        )
    for result in (loose, one, every):
        assert result.is_error and "Input should be a valid boolean" in text_of(result)
    assert user.questions and (answered.is_error or answered.structured_content["deleted"] is False)
    assert deletions(emulator) == [] and emulator.deleted_ids == []


async def test_12_the_form_names_each_session(make_server: Any, emulator: Emulator) -> None:
    ids = newest(emulator, 3)
    user = User("decline")
    async with connect(make_server(), "modern", elicitation_callback=user) as client:
        token = await preview_token(client, BULK, {"ids": [*ids, 31337]})
        await client.call_tool(BULK, {"ids": ids, "confirm": True, "confirmation_token": token})
    [question] = user.questions
    for session_id in ids:
        session = emulator.data.sessions[session_id]
        start = (session["title"] or session["text"])[:20]
        # Quoted: a title reads as a title, never as the form's own words.
        assert f'{session_id} ({session["startTime"][:10]}, "{start}' in question
    assert "31337" not in question, "an id that does not exist is not offered to the person"
