"""What an operator relies on: probes that do not take the fleet out for a TextMagic blip, metrics that move with
calls, a replica that keeps serving at its share while Redis is down and says when it is back, deletes
reconciled while the server runs, and spans that reach the exporter when a worker stops."""

from __future__ import annotations

import http.server
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.sandbox import Emulator
from tests.helpers import (
    TOKEN,
    ServedEmulator,
    account_environment,
    connect,
    free_port,
    http_processes,
    http_server,
    mcp_client,
    newest,
    preview_token,
    records,
    running_redis,
    shell_environment,
    text_of,
)

pytestmark = pytest.mark.anyio
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "replica-shared-secret-0123456789abcdef"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx2.AsyncClient, url: str) -> Samples:
    answer = await http.get(f"{url}/metrics", headers=BEARER)
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


async def test_a_textmagic_outage_is_reported_by_the_probe_not_routed_on(
    served: ServedEmulator, emulator: Emulator
) -> None:
    """Finding 5: with /readyz as the balancer's check, a 1-2 s TextMagic restart took every replica out for
    10-13 s. Now the replica stays in while TextMagic fails; calls fail only while it does."""
    session_id = newest(emulator)[0]
    with http_server(served, retry_attempts=1) as url:
        async with httpx2.AsyncClient() as http, mcp_client(url) as client:
            before = await client.call_tool("get_message_session", {"id": session_id})
            answering = await http.get(f"{url}/readyz")
            # TextMagic goes down.
            emulator.fail_next(503, times=1000)
            during = await client.call_tool("get_message_session", {"id": session_id})
            probed = await http.get(f"{url}/readyz", headers=BEARER)
            # It is back: the next call, routed by the same probe, is served at once.
            emulator.reset()
            routed = await http.get(f"{url}/readyz")
            after = await client.call_tool("get_message_session", {"id": session_id})
            recovered = await http.get(f"{url}/readyz")
    assert not before.is_error and answering.json()["textmagic"] == "answering"
    assert during.is_error and "503" in text_of(during)
    assert probed.status_code == 200 and probed.json()["textmagic"] == "failing"
    assert "503" in probed.json()["textmagic_problem"]
    assert routed.status_code == 200
    assert not after.is_error and recovered.json()["textmagic"] == "answering"


async def test_metrics_move_with_calls(served: ServedEmulator, emulator: Emulator) -> None:
    first, second = newest(emulator, 2)
    with http_server(served, confirmation_secret=SECRET, rate_limit=37) as url:
        async with httpx2.AsyncClient() as http:
            anonymous = await http.get(f"{url}/metrics")
            before = await scrape(http, url)
            async with mcp_client(url) as client:
                await client.call_tool("get_message_session", {"id": first})
                await client.call_tool("get_message_session", {"id": 1})
                await client.call_tool("no_such_tool", {})
                token = await preview_token(client, "delete_message_session", {"id": first})
                forged = await client.call_tool(
                    "delete_message_session", {"id": second, "confirm": True, "confirmation_token": token}
                )
                done = await client.call_tool(
                    "delete_message_session", {"id": first, "confirm": True, "confirmation_token": token}
                )
            after = await scrape(http, url)
    assert anonymous.status_code == 401
    assert forged.is_error and done.structured_content["deleted"] is True

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("textmagic_mcp_tool_calls_total", tool="get_message_session", outcome="ok") == 1
    assert grew("textmagic_mcp_tool_calls_total", tool="get_message_session", outcome="error") == 1
    assert grew("textmagic_mcp_tool_calls_total", tool="(unknown)", outcome="error") == 1
    assert grew("textmagic_mcp_tool_call_duration_seconds_count", tool="delete_message_session") == 3
    assert grew("textmagic_mcp_textmagic_requests_total", method="GET", status="404") >= 1
    assert grew("textmagic_mcp_textmagic_requests_total", method="DELETE", status="204") == 1
    assert grew("textmagic_mcp_textmagic_request_duration_seconds_count", method="GET") >= 3
    assert grew("textmagic_mcp_pacer_wait_seconds_count") >= 4
    assert grew("textmagic_mcp_delete_calls_total", outcome="preview") == 1
    assert grew("textmagic_mcp_delete_calls_total", outcome="refused") == 1
    assert grew("textmagic_mcp_delete_calls_total", outcome="deleted") == 1
    assert grew("textmagic_mcp_confirmations_refused_total", tool="delete_message_session") == 1
    assert grew("textmagic_mcp_sessions_deleted_total") == 1
    assert value(after, "textmagic_mcp_pacer_rate") == 37
    assert value(after, "textmagic_mcp_pacer_waiting") == 0


async def test_while_redis_is_down_each_replica_paces_at_its_share_and_says_when_it_is_back(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    """Finding 4: while Redis was down each replica paced alone (33-35 requests/s against a shared 20),
    /readyz stayed 200 saying nothing while every delete was refused, and no line said when Redis was back."""
    session_id = newest(emulator)[0]
    port = free_port()
    with ExitStack() as redis:
        url = redis.enter_context(running_redis(tmp_path, port))
        replicas = http_processes(served, SECRET, SECRET, TEXTMAGIC_REDIS_URL=url, TEXTMAGIC_RATE_LIMIT="100")
        with replicas as (first, second):
            async with httpx2.AsyncClient() as http:
                # Each learns of the others as it takes its slots: the first, last, knows of both.
                for replica in (second, first):
                    async with mcp_client(replica.url) as client:
                        await client.call_tool("get_message_session", {"id": session_id})
                shared = await scrape(http, first.url)
                redis.close()
                async with mcp_client(first.url) as client:
                    read = await client.call_tool("get_message_session", {"id": session_id})
                alone = await scrape(http, first.url)
                down = await http.get(f"{first.url}/readyz", headers=BEARER)
                with running_redis(tmp_path, port):
                    back = await http.get(f"{first.url}/readyz")
                    async with mcp_client(first.url) as client:
                        await client.call_tool("get_message_session", {"id": session_id})
                    again = await scrape(http, first.url)
    log = "".join(first.lines)
    assert value(shared, "textmagic_mcp_pacer_rate") == 100 and value(shared, "textmagic_mcp_redis_up") == 1
    assert not read.is_error
    assert value(alone, "textmagic_mcp_pacer_rate") == 50 and value(alone, "textmagic_mcp_redis_up") == 0
    assert down.status_code == 200 and down.json()["deletes"] == "unavailable"
    assert "TEXTMAGIC_REDIS_URL" in down.json()["deletes_problem"]
    assert back.json()["deletes"] == "available"
    assert value(again, "textmagic_mcp_pacer_rate") == 100 and value(again, "textmagic_mcp_redis_up") == 1
    assert log.index("is unreachable") < log.index("answers again")


async def test_deletes_whose_end_was_not_recorded_are_reconciled_while_the_server_runs(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.touch()
    gone = newest(emulator)[0]
    emulator.data.sessions.pop(gone)
    ours = {"operation": "op-ours", "instance": "replica-x", "tool": "delete_message_session", "ids": [gone]}
    theirs = {**ours, "operation": "op-theirs", "instance": "replica-y"}
    server = make_server(audit_log=str(audit), instance="replica-x", reconcile_interval=0.05, fresh=True)
    reconciled_seen = threading.Event()

    class Reconciled(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if '"outcome": "reconciled"' in record.getMessage():
                reconciled_seen.set()

    watcher = Reconciled()
    logging.getLogger("server.state.audit").addHandler(watcher)
    try:
        async with connect(server) as client:
            await client.list_tools()
            # Written after the start, as a "sending" whose end this replica could not record.
            with audit.open("a") as file:
                file.writelines(json.dumps({**r, "outcome": "sending"}) + "\n" for r in (ours, theirs))
            assert await anyio.to_thread.run_sync(reconciled_seen.wait, 30)
    finally:
        logging.getLogger("server.state.audit").removeHandler(watcher)
    reconciled = [r for r in records(audit) if r["outcome"] == "reconciled"]
    # Another replica's unfinished delete is its own to reconcile.
    assert [(r["operation"], r["ids"]) for r in reconciled] == [("op-ours", [gone])]
    assert "looked up later" in reconciled[0]["detail"]


class Spans:
    """An OTLP/HTTP receiver on loopback: the names of the spans exported to it."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        names = self.names = []

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                exported = ExportTraceServiceRequest.FromString(body)
                names.extend(
                    span.name
                    for resource in exported.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def receiving_spans() -> Iterator[Spans]:
    spans = Spans()
    thread = threading.Thread(target=spans.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield spans
    finally:
        spans.server.shutdown()
        thread.join(timeout=10)


@contextmanager
def instrumented_workers(environment: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """The uvicorn factory with two workers under ``opentelemetry-instrument``; yields its URL, and a list that
    holds its stderr once it has stopped on SIGTERM at the end of the block."""
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    port = free_port()
    command = [instrument, sys.executable, "-m", "uvicorn", "--factory"]
    command += ["server.wiring.http:app_from_environment", "--workers", "2", "--port", str(port)]
    process = subprocess.Popen(
        command, env=shell_environment(**environment), stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        for line in process.stderr:
            lines.append(line)
            if sum("Application startup complete" in seen for seen in lines) == 2:
                break
        else:
            raise AssertionError("the workers did not start: " + "".join(lines))
        yield f"http://127.0.0.1:{port}", lines
    finally:
        process.send_signal(signal.SIGTERM)
        lines.extend(process.stderr)
        process.wait(timeout=60)


async def test_spans_reach_the_exporter_when_workers_stop(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    """Finding 6: no span for TextMagic or Redis, the last spans lost on SIGTERM, and per-call log lines gone
    under ``--workers``. Run as an operator would: ``opentelemetry-instrument`` around the uvicorn factory."""
    with running_redis(tmp_path) as redis_url, receiving_spans() as spans:
        environment = account_environment(
            served,
            TEXTMAGIC_MCP_TOKENS=TOKEN,
            TEXTMAGIC_ALLOWED_HOSTS="127.0.0.1:*",
            TEXTMAGIC_REDIS_URL=redis_url,
            TEXTMAGIC_CONFIRMATION_SECRET=SECRET,
            OTEL_SERVICE_NAME="textmagic-sessions-mcp",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=spans.url,
            # Nothing is exported on a schedule during the test: only the flush at the end sends spans.
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        with instrumented_workers(environment) as (url, stopped):
            async with mcp_client(url) as client:
                preview = await client.call_tool("delete_message_session", {"id": newest(emulator)[0]})
    log = "".join(stopped)
    assert preview.structured_content["confirmation_token"]
    assert {"TextMagic GET", "Redis epoch", "Redis preview.put"} <= set(spans.names)
    assert '"tool": "delete_message_session", "outcome": "ok"' in log
