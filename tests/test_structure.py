"""The code's shape, as users and maintainers rely on it: a start that loads only what it uses, and layers that
point one way, checked for every module from one table."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import shell_environment

ROOT = Path(__file__).resolve().parents[1]
# Each layer, bottom first, and what of ours it may import besides itself. The root package ``server`` (its
# version) may be imported from anywhere.
LAYERS: dict[str, set[str]] = {
    "server.observability": set(),
    "server.textmagic": {"server.observability"},
    "server.sandbox": set(),
    "server.state": {"server.observability", "server.textmagic"},
    "tools": {"server.observability", "server.state", "server.textmagic"},
    "server.wiring": {"server.observability", "server.state", "server.textmagic", "server.sandbox", "tools"},
}
# The packages of the SDK that only the MCP layers use: the client at the bottom knows nothing of MCP.
MCP = ("mcp", "mcp_types")


def layer_of(module: str) -> str | None:
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("server", "tools"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found.append((name, path))
    return found


def test_every_module_stands_in_a_layer() -> None:
    # Besides the layers, only the root package (its version) and ``python -m server``, which runs the wiring.
    assert {name for name, _ in modules() if layer_of(name) is None} == {"server", "server.__main__"}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_each_layer_imports_only_what_lies_below_it(layer: str) -> None:
    allowed = LAYERS[layer] | {layer}
    wrong = {}
    for name, path in modules():
        if layer_of(name) != layer:
            continue
        ours = {m for m in imported_modules(path) if m.split(".")[0] in ("server", "tools") and m != "server"}
        mcp = {m for m in imported_modules(path) if m.split(".")[0] in MCP}
        beyond = {m for m in ours if layer_of(m) not in allowed} | (
            mcp if layer == "server.textmagic" else set()
        )
        if beyond:
            wrong[name] = sorted(beyond)
    assert wrong == {}


def test_a_server_on_an_account_starts_without_the_sandbox_the_http_transport_or_httpcore2() -> None:
    # In a fresh interpreter, as the console script starts over stdio: what is not used yet is not imported,
    # because clients spawn the server at launch and wait for it. httpcore2 comes with the first request.
    program = """
import sys
from server.state.settings import load_settings
from server.wiring.cli import _build
_build(load_settings(username="u", api_key="k"))
print(sorted(m for m in sys.modules if m.startswith(("server.sandbox", "server.wiring.http", "httpcore2"))))
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
