"""The command line as a user runs it: the installed script, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from server.sandbox import Emulator
from tests.conftest import API_KEY, USERNAME, ServedEmulator, shell_environment
from tests.test_stdio import TOOL_NAMES, console_script


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args],
        env=shell_environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tools_lists_every_tool_with_arguments() -> None:
    done = run("--sandbox", "tools")
    assert done.returncode == 0, done.stderr
    for name in TOOL_NAMES:
        assert f"{name}: " in done.stdout
    assert "limit: integer 1..100, default 10." in done.stdout
    assert "destructive, needs confirmation" in done.stdout


def test_python_dash_m_server_does_the_same() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "tools", "--sandbox"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "get_messages_by_session_id: " in done.stdout


def test_call_on_the_sandbox_prints_json() -> None:
    done = run("--sandbox", "call", "get_all_message_sessions", '{"limit": 2}')
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["limit"] == 2 and len(page["resources"]) == 2
    assert page["pageCount"] >= 10


def test_call_error_exits_non_zero() -> None:
    done = run("call", "get_message_session", '{"id": 1}', "--sandbox")
    assert done.returncode == 1
    output = json.loads(done.stdout)
    assert output["isError"] is True and "Session 1 does not exist" in output["error"]


@pytest.mark.parametrize(
    ("arguments", "expected"), [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")]
)
def test_call_with_bad_json_explains(arguments: str, expected: str) -> None:
    done = run("--sandbox", "call", "get_message_session", arguments)
    assert done.returncode == 2 and expected in done.stderr


def test_starting_without_credentials_says_what_to_set() -> None:
    done = run("tools")
    assert done.returncode == 2
    assert "TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY" in done.stderr and "--sandbox" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TEXTMAGIC_TIMEOUT", "-1"),
        ("TEXTMAGIC_BASE_URL", "not a url"),
        ("TEXTMAGIC_ALLOW_DELETE_ALL", "maybe"),
    ],
)
def test_invalid_settings_fail_at_start_naming_the_variable(variable: str, value: str) -> None:
    done = run("--sandbox", "tools", env={variable: value})
    assert done.returncode == 2
    assert variable in done.stderr and "Traceback" not in done.stderr


def test_call_against_a_real_account_shape(served: ServedEmulator, emulator: Emulator) -> None:
    env = {"TEXTMAGIC_USERNAME": USERNAME, "TEXTMAGIC_API_KEY": API_KEY, "TEXTMAGIC_BASE_URL": served.url}
    session_id = max(emulator.data.sessions)
    done = run("call", "get_message_session", json.dumps({"id": session_id}), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == emulator.data.sessions[session_id]
    refused = run(
        "call", "get_message_session", '{"id": 1}', env=env | {"TEXTMAGIC_API_KEY": "bad-" + API_KEY}
    )
    assert refused.returncode == 1 and "401" in refused.stdout
    for output in (done.stdout, done.stderr, refused.stdout, refused.stderr):
        assert API_KEY not in output


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--tools", "get_message_session,nope"), {}), ((), {"TEXTMAGIC_TOOLS": "nope"})],
)
def test_unknown_tool_in_the_allow_list_fails_at_start(args: tuple[str, ...], env: dict[str, str]) -> None:
    done = run("--sandbox", *args, "tools", env=env)
    assert done.returncode == 2
    assert "TEXTMAGIC_TOOLS: unknown tool 'nope'" in done.stderr and "get_message_session_stat" in done.stderr


def test_read_only_tools_listing() -> None:
    done = run("tools", "--sandbox", "--read-only")
    assert done.returncode == 0
    assert "delete_" not in done.stdout and "get_messages_by_session_id" in done.stdout


def test_http_beyond_loopback_needs_tokens() -> None:
    # Refused at start: nothing is ever bound to 0.0.0.0 here.
    done = run("--sandbox", "--transport", "http", "--host", "0.0.0.0")  # noqa: S104
    assert done.returncode == 2
    assert "TEXTMAGIC_MCP_TOKENS" in done.stderr and "Traceback" not in done.stderr
