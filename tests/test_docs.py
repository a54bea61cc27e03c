"""docs/deploy.md runs as written: the quick remote command tells its token, and the systemd unit passes
``systemd-analyze verify`` and serves under its environment, its audit log in the directory systemd makes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from server.sandbox import Emulator
from tests.helpers import (
    API_KEY,
    USERNAME,
    ServedEmulator,
    free_port,
    newest,
    records,
    required_service,
    shell_environment,
)

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    text = DEPLOY.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


@contextmanager
def running(command: list[str], env: dict[str, str], marker: str) -> Iterator[str]:
    """``command`` until the block ends (SIGTERM to its process group); its output up to the line saying
    ``marker``, which the server prints once it listens."""
    process = subprocess.Popen(
        command,
        env=shell_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                break
        else:
            raise AssertionError("the documented command did not serve: " + "".join(seen))
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield "".join(seen)
    finally:
        # The whole group: a shell's child too.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_the_quick_remote_command_tells_its_token() -> None:
    [script] = blocks(section("Remote use over HTTP").split("###")[0], "bash")
    port = free_port()
    script = script.replace("--port 8000", f"--port {port}").replace(
        "textmagic-sessions-mcp", str(BIN / "textmagic-sessions-mcp")
    )
    # The sandbox stands in for an account; the address is loopback here, as tests allow no other network.
    script = script.replace("--host 0.0.0.0", "--host 127.0.0.1")
    with running(["bash", "-c", script], {"TEXTMAGIC_SANDBOX": "true"}, "serving MCP at") as output:
        token = output.split("clients send: Authorization: Bearer ")[1].split()[0]
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        }
        answer = httpx2.post(f"http://127.0.0.1:{port}/mcp", json=listing, headers=headers, timeout=30)
    assert len(token) == 48 and answer.status_code == 200 and "find_message_sessions" in answer.text


def test_the_systemd_unit_verifies_and_its_command_serves(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    analyze = required_service("systemd-analyze", "it comes with systemd")
    text = section("As a service")
    [unit] = blocks(text, "ini")
    environment_file = blocks(text, "bash")[0]
    logs, state = tmp_path / "log", tmp_path / "state"
    logs.mkdir()
    state.mkdir()
    here = (
        unit.replace("/opt/textmagic-mcp/.venv/bin/", f"{BIN}/")
        .replace("/etc/textmagic-mcp.env", str(tmp_path / "textmagic-mcp.env"))
        .replace("/var/log/textmagic-mcp", str(logs))
        .replace("/var/lib/textmagic-mcp", str(state))
    )
    (tmp_path / "textmagic-mcp.env").write_text(environment_file)
    (tmp_path / "textmagic-mcp.service").write_text(here)
    verified = subprocess.run(
        [analyze, "verify", str(tmp_path / "textmagic-mcp.service")], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr
    assert "LogsDirectory=textmagic-mcp" in unit and "StateDirectory=textmagic-mcp" in unit

    # The command under the unit's environment: its file (the account's values put in) and Environment= lines.
    settings = dict(
        line.split("=", 1) for line in environment_file.splitlines() if line and not line.startswith("#")
    )
    settings |= dict(re.findall(r"^Environment=(\w+)=(.*)$", here, flags=re.MULTILINE))
    port = free_port()
    settings |= {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": served.url,
        "TEXTMAGIC_ALLOWED_HOSTS": f"127.0.0.1:{port}",
    }
    [command] = re.findall(r"^ExecStart=(.*)$", here, flags=re.MULTILINE)
    command = command.replace("--host 0.0.0.0", "--host 127.0.0.1").replace("--port 8000", f"--port {port}")
    session_id = newest(emulator)[0]
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "delete_message_session", "arguments": {"id": session_id}},
    }
    headers = {
        "Authorization": f"Bearer {settings['TEXTMAGIC_MCP_TOKENS']}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    with running(command.split(), settings, "serving MCP at"), httpx2.Client() as http:
        preview = http.post(f"http://127.0.0.1:{port}/mcp", json=call, headers=headers, timeout=30)
    assert preview.status_code == 200 and "confirmation_token" in preview.text
    [record] = records(logs / "audit.jsonl")
    assert (state / "store.db").exists()
    assert (record["outcome"], record["ids"]) == ("preview", [session_id])
