"""The code's shape, as users and maintainers rely on it: a start that loads only what it uses, and layers that
point one way (the TextMagic client at the bottom, the tools above it, the app wiring on top)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import shell_environment

ROOT = Path(__file__).resolve().parents[1]
# Modules that wire the tools into a server: the only ones allowed to import the tools package.
WIRING = {"server/app.py", "server/http.py", "server/cli.py", "server/pictures.py", "server/__main__.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_wiring_imports_the_tools() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in imported_modules(path) if n.split(".")[0] == "tools")
        for path in (ROOT / "server").rglob("*.py")
        if str(path.relative_to(ROOT)) not in WIRING
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_textmagic_client_knows_nothing_above_it() -> None:
    allowed = {"server", "server.config"}
    for path in (ROOT / "server" / "textmagic").rglob("*.py"):
        ours = {
            n for n in imported_modules(path) if n.split(".")[0] in ("server", "tools", "mcp", "mcp_types")
        }
        assert {n for n in ours if n not in allowed and not n.startswith("server.textmagic")} == set(), (
            path.name
        )


def test_a_server_on_an_account_starts_without_the_sandbox_the_http_transport_or_httpcore2() -> None:
    # In a fresh interpreter, as the console script starts over stdio: what is not used yet is not imported,
    # because clients spawn the server at launch and wait for it. httpcore2 comes with the first request.
    program = """
import sys
from server.cli import _build
from server.config import load_settings
_build(load_settings(username="u", api_key="k"))
print(sorted(m for m in sys.modules if m.startswith(("server.sandbox", "server.http", "httpcore2"))))
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=shell_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
