"""The command line: its parsing and commands in this process, through ``server.wiring.cli.main`` as the console script
calls it; the installed script and ``python -m server`` once each, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx2
import pytest

from server.sandbox import Emulator
from server.wiring.cli import main
from tests.helpers import (
    API_KEY,
    TOOL_NAMES,
    USERNAME,
    ServedEmulator,
    console_script,
    newest,
    run_script,
    shell_environment,
)
from tests.table import present


@pytest.fixture(autouse=True)
def fresh_shell(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TEXTMAGIC_* variables from the test run: as in a fresh shell."""
    for name in [name for name in os.environ if name.startswith("TEXTMAGIC_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line with ``args``; its exit code, standard output and standard error."""
    code: Any = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def test_the_installed_script_and_python_dash_m_server() -> None:
    done = run_script("--sandbox", "call", "get_all_message_sessions", '{"limit": 2}')
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["limit"] == 2 and len(page["resources"]) == 2 and page["pageCount"] >= 10
    module = subprocess.run(
        [sys.executable, "-m", "server", "tools", "--sandbox"], capture_output=True, text=True, timeout=60
    )
    assert module.returncode == 0, module.stderr
    assert "get_messages_by_session_id: " in module.stdout


def test_tools_lists_every_tool_with_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--sandbox", "tools")
    assert code == 0
    for name in TOOL_NAMES:
        assert f"{name}: " in out
    assert "limit: integer 1..100, default 10." in out
    assert "destructive, needs confirmation" in out


def test_call_error_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "call", "get_message_session", '{"id": 1}', "--sandbox")
    assert code == 1
    output = json.loads(out)
    assert output["isError"] is True and "Session 1 does not exist" in output["error"]


@pytest.mark.parametrize(
    ("arguments", "expected"), [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")]
)
def test_call_with_bad_json_explains(
    capsys: pytest.CaptureFixture[str], arguments: str, expected: str
) -> None:
    code, _, err = cli(capsys, "--sandbox", "call", "get_message_session", arguments)
    assert code == 2 and expected in err


def test_starting_without_credentials_says_what_to_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "tools")
    assert code == 2
    assert "TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY" in err and "--sandbox" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEXTMAGIC_TIMEOUT", "-1"),
        ("TEXTMAGIC_BASE_URL", "not a url"),
        ("TEXTMAGIC_ALLOW_DELETE_ALL", "maybe"),
    ],
)
def test_invalid_settings_fail_at_start_naming_the_variable(
    capsys: pytest.CaptureFixture[str], fresh_shell: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    fresh_shell.setenv(variable, value)
    code, _, err = cli(capsys, "--sandbox", "tools")
    assert code == 2
    assert variable in err and "Traceback" not in err


def test_call_against_a_real_account_shape(
    capsys: pytest.CaptureFixture[str],
    fresh_shell: pytest.MonkeyPatch,
    served: ServedEmulator,
    emulator: Emulator,
) -> None:
    for name, value in {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": served.url,
    }.items():
        fresh_shell.setenv(name, value)
    [session_id] = newest(emulator)
    code, out, err = cli(capsys, "call", "get_message_session", json.dumps({"id": session_id}))
    assert code == 0, err
    assert json.loads(out) == present(emulator.data.sessions[session_id])
    fresh_shell.setenv("TEXTMAGIC_API_KEY", "bad-" + API_KEY)
    refused, refused_out, refused_err = cli(capsys, "call", "get_message_session", '{"id": 1}')
    assert refused == 1 and "401" in refused_out
    for output in (out, err, refused_out, refused_err):
        assert API_KEY not in output


@pytest.mark.parametrize(
    ("args", "variable"),
    [(("--tools", "get_message_session,nope"), None), ((), "nope")],
    ids=["flag", "environment"],
)
def test_unknown_tool_in_the_allow_list_fails_at_start(
    capsys: pytest.CaptureFixture[str],
    fresh_shell: pytest.MonkeyPatch,
    args: tuple[str, ...],
    variable: str | None,
) -> None:
    if variable:
        fresh_shell.setenv("TEXTMAGIC_TOOLS", variable)
    code, _, err = cli(capsys, "--sandbox", *args, "tools")
    assert code == 2
    assert "TEXTMAGIC_TOOLS: unknown tool 'nope'" in err and "get_message_session_stat" in err


def test_read_only_and_tools_flags(capsys: pytest.CaptureFixture[str]) -> None:
    _, read_only, _ = cli(capsys, "tools", "--sandbox", "--read-only")
    assert "delete_" not in read_only and "get_messages_by_session_id" in read_only
    _, listed, _ = cli(capsys, "--sandbox", "--tools", "get_message_session", "tools")
    assert listed.startswith("get_message_session: ") and "get_all_message_sessions: " not in listed


def test_http_beyond_loopback_needs_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    # Judged from the address bound, which is closed again before it listens: nothing ever listens on 0.0.0.0.
    code, _, err = cli(capsys, "--sandbox", "--transport", "http", "--host", "0.0.0.0", "--port", "0")  # noqa: S104
    assert code == 2
    assert "refusing to serve HTTP on 0.0.0.0" in err
    assert "TEXTMAGIC_MCP_TOKENS" in err and "Traceback" not in err


def test_http_on_a_loopback_name_needs_no_token() -> None:
    # "localhost" is a name, not an address: what it resolves to, once bound, decides.
    process = subprocess.Popen(
        [console_script(), "--sandbox", "--transport", "http", "--host", "localhost", "--port", "0"],
        env=shell_environment(),
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "serving MCP at http://localhost:" in line, line
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
            "Host": "localhost",
        }
        answer = httpx2.post(line.split(" at ")[1].strip(), json=listing, headers=headers)
        assert answer.status_code == 200 and answer.json()["result"]["tools"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_emulator_plays_a_network_distance() -> None:
    process = subprocess.Popen(
        [console_script(), "emulator", "--port", "0", "--latency", "300"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = line.split(" on ")[1].split(" ")[0]
        started = time.perf_counter()
        answer = httpx2.get(
            f"{url}/api/v2/sessions", params={"limit": 1}, auth=("sandbox", "sandbox-key-not-a-secret")
        )
        waited = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "every answer 300 ms late" in line
    assert answer.status_code == 200 and answer.json()["pageCount"] == 37
    assert waited >= 0.3


def test_a_reader_that_goes_away_ends_the_output_quietly() -> None:
    """`textmagic-sessions-mcp --sandbox tools | head` ended in a BrokenPipeError traceback."""
    process = subprocess.Popen(
        [console_script(), "--sandbox", "tools"],
        env=shell_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    # Gone before the first line is written: every write meets a closed pipe.
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
