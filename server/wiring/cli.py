"""Command line: serve over stdio (default), list the tools, call one tool, write a delivery report (HTML or
Markdown), or serve the TextMagic emulator."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from server import __version__
from server.state.settings import ConfigError, Settings, load_settings
from server.wiring import logs, store_commands
from tools.filters import SessionQuery, listed

if TYPE_CHECKING:
    from server.wiring.app import SessionsServer

PROG = "textmagic-sessions-mcp"


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except BrokenPipeError:
        # The reader went away (``tools | head``): nothing more to say, and no traceback to say it with.
        # stdout is pointed at /dev/null so that the interpreter's own flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _main(argv: list[str] | None) -> None:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "emulator":
        _serve_emulator(args.host, args.port, args.seed, args.latency)
        return
    try:
        # Flags may stand before or after the command; SUPPRESS leaves them unset where absent, so the
        # environment decides.
        settings = load_settings(
            # Clearing the store touches no account: it needs no credentials.
            sandbox=True if getattr(args, "sandbox", False) or command == "cache" else None,
            cache_fresh=True if getattr(args, "fresh", False) else None,
            read_only=True if getattr(args, "read_only", False) else None,
            tools=getattr(args, "tools", None),
            transport=getattr(args, "transport", None),
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
        )
        # Only warnings when a person reads the output (tools, call, report); sync logs its one line.
        logs.configure(settings.log_level if command == "serve" else logging.WARNING)
        logging.getLogger("server.sync").setLevel(logging.INFO)
        if command == "cache":
            sys.exit(store_commands.clear(settings))
        if command == "sync":
            store_commands.needs_a_file(settings)
        server = _build(settings)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if command == "serve":
        if settings.transport == "http":
            from server.wiring.http import serve_http

            try:
                serve_http(server, settings)
            except ConfigError as exc:
                print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
                sys.exit(2)
        else:
            server.run("stdio")
    elif command == "tools":
        sys.exit(_run(_list_tools(server)))
    elif command == "report":
        sys.exit(_run(_report(server, _report_arguments(args), args.html)))
    elif command == "sync":
        period = {name: getattr(args, name) for name in ("since", "until", "timezone") if getattr(args, name)}
        sys.exit(_run(store_commands.sync(server, period)))
    else:
        sys.exit(_run(_call_tool(server, args.tool, _arguments(args.arguments))))


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--sandbox",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the built-in TextMagic emulator (made-up data, no account needed); TEXTMAGIC_SANDBOX=true",
    )
    common.add_argument(
        "--read-only",
        action="store_true",
        default=argparse.SUPPRESS,
        help="serve only the read tools; delete calls are refused (TEXTMAGIC_READ_ONLY=true)",
    )
    common.add_argument(
        "--fresh",
        action="store_true",
        default=argparse.SUPPRESS,
        help="read everything from TextMagic, not from the store of settled sessions (TEXTMAGIC_CACHE_FRESH=true)",
    )
    common.add_argument(
        "--tools",
        metavar="NAME,NAME",
        default=argparse.SUPPRESS,
        help="serve only these tools (TEXTMAGIC_TOOLS)",
    )
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default=argparse.SUPPRESS,
        help="stdio (default) or streamable HTTP at /mcp (TEXTMAGIC_TRANSPORT)",
    )
    serving.add_argument(
        "--host", default=argparse.SUPPRESS, help="HTTP: address to bind, default 127.0.0.1 (TEXTMAGIC_HOST)"
    )
    serving.add_argument(
        "--port", type=int, default=argparse.SUPPRESS, help="HTTP: port, default 8000 (TEXTMAGIC_PORT)"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common, serving],
        description="MCP server for the message sessions of a TextMagic account. "
        "Credentials come from TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[common, serving], help="serve MCP over stdio or HTTP (the default)")
    commands.add_parser("tools", parents=[common], help="print the tools and their arguments")
    call = commands.add_parser(
        "call", parents=[common], help="run one tool through an in-process MCP client and print its result"
    )
    call.add_argument("tool", help="tool name, as printed by the tools command")
    call.add_argument(
        "arguments", nargs="?", default="{}", help="arguments as a JSON object, e.g. '{\"id\": 1}'"
    )
    report = commands.add_parser(
        "report",
        parents=[common],
        help="write a delivery report (get_delivery_report) as a standalone HTML page or print it as Markdown",
        description="A delivery report of one session (--id) or of the sessions a filter matches, with "
        "failures by country and reject reason: for nightly jobs and e-mail.",
    )
    scope = report.add_argument_group("what to report on (--id, or any of the filter options)")
    scope.add_argument("--id", type=int, help="one session")
    for name, field in SessionQuery.model_fields.items():
        many = " (comma-separated)" if listed(field) else ""
        scope.add_argument(f"--{name}", help=f"{field.description}{many}")
    report.add_argument(
        "--group-by",
        metavar="KEY,KEY",
        default="country,reject_reason",
        help="rows per country, status, reject_reason, sender, session or day (default country,reject_reason)",
    )
    report.add_argument("--failed-limit", type=int, default=100, help="failed messages listed (default 100)")
    report.add_argument("--include-deleted", action="store_true", help="count deleted messages too")
    output = report.add_mutually_exclusive_group(required=True)
    output.add_argument("--html", metavar="FILE", help="write the report view, data inside, to FILE")
    output.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    warm = commands.add_parser(
        "sync",
        parents=[common],
        help="read into the store on disk (TEXTMAGIC_CACHE_PATH) the sessions of a period it does not hold yet",
        description="Fill the store of settled sessions ahead of the questions: a nightly job runs it before its "
        "report. Incremental: what the store holds is not read again.",
    )
    warm.add_argument("--since", required=True, help="ISO 8601 date or date-time: from when")
    warm.add_argument("--until", help="ISO 8601 date (included) or date-time: until when (default: now)")
    warm.add_argument("--timezone", help="IANA zone the dates are read in (default TEXTMAGIC_TIMEZONE)")
    cache = commands.add_parser("cache", help="the store of settled sessions on disk")
    cache.add_argument("action", choices=["clear"], help="clear: empty it (remove its file)")
    emulator = commands.add_parser(
        "emulator", help="serve the TextMagic emulator over HTTP, for tests and demos"
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8089, help="port to bind (default 8089)")
    emulator.add_argument("--seed", type=int, default=7, help="seed of the made-up account (default 7)")
    emulator.add_argument(
        "--latency",
        metavar="MS",
        type=float,
        default=0.0,
        help="hold every answer this many milliseconds, as a real network distance would (default 0)",
    )
    return parser


def _build(settings: Settings) -> SessionsServer:
    from server.wiring.app import build_server

    return build_server(settings)


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        print(
            f"{PROG}: the arguments are not valid JSON ({exc}); pass an object such as '{{\"id\": 1}}'",
            file=sys.stderr,
        )
        sys.exit(2)
    if not isinstance(value, dict):
        print(f"{PROG}: the arguments must be a JSON object such as '{{\"id\": 1}}'", file=sys.stderr)
        sys.exit(2)
    return value


def _run(coroutine: Any) -> int:
    import anyio

    async def run() -> int:
        code: int = await coroutine
        return code

    return anyio.run(run)


async def _list_tools(server: SessionsServer) -> int:
    from mcp import Client

    async with Client(server) as client:
        listing = await client.list_tools()
    for tool in listing.tools:
        hints = tool.annotations
        kind = "read-only" if hints and hints.read_only_hint else "destructive, needs confirmation"
        print(f"{tool.name}: {tool.title} ({kind})")
        required = set(tool.input_schema.get("required", []))
        definitions = tool.input_schema.get("$defs", {})
        for name, schema in tool.input_schema.get("properties", {}).items():
            default = "required" if name in required else f"default {json.dumps(schema.get('default'))}"
            kind = _describe_type(schema, definitions)
            print(f"    {name}: {kind}, {default}. {schema.get('description', '')}".rstrip())
    return 0


async def _call_tool(server: SessionsServer, tool: str, arguments: dict[str, Any]) -> int:
    from mcp import Client

    async with Client(server) as client:
        result = await client.call_tool(tool, arguments)
    text = "\n".join(block.text for block in result.content if block.type == "text")
    if result.is_error:
        print(json.dumps({"isError": True, "error": text}, ensure_ascii=False, indent=2))
        return 1
    output = result.structured_content if result.structured_content is not None else text
    print(json.dumps(output, ensure_ascii=False, indent=2))
    return 0


def _report_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """get_delivery_report's arguments from the report command's options: the tool checks them."""
    many = {name for name, field in SessionQuery.model_fields.items() if listed(field)} | {"group_by"}
    arguments: dict[str, Any] = {}
    for name in ("id", *SessionQuery.model_fields, "group_by", "failed_limit"):
        value = getattr(args, name)
        if value is not None:
            arguments[name] = (
                [part.strip() for part in value.split(",") if part.strip()] if name in many else value
            )
    return arguments | {"include_deleted": args.include_deleted}


async def _report(server: SessionsServer, arguments: dict[str, Any], html_file: str | None) -> int:
    import anyio
    from mcp import Client
    from mcp.client.extension import advertise
    from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

    from tools.markdown import report_markdown
    from tools.models import DeliveryReport
    from tools.view import standalone_html

    # Asked as a host that shows the view would ask: the result then carries what the picture needs.
    view = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    async with Client(server, extensions=[view] if html_file else []) as client:
        result = await client.call_tool("get_delivery_report", arguments)
    if result.is_error:
        text = "\n".join(block.text for block in result.content if block.type == "text")
        print(f"{PROG}: {text}", file=sys.stderr)
        return 1
    if html_file is None:
        print(report_markdown(DeliveryReport.model_validate(result.structured_content)), end="")
        return 0
    page = standalone_html({"structuredContent": result.structured_content, "_meta": result.meta or {}})
    try:
        await anyio.Path(html_file).write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: cannot write {html_file}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{PROG}: wrote the report to {html_file}", file=sys.stderr)
    return 0


def _describe_type(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    kinds = []
    for option in options:
        kind = str(option.get("type", "value"))
        if kind == "array":
            items = option.get("items", {})
            items = definitions.get(items.get("$ref", "").rsplit("/", 1)[-1], items)
            kind = f"list of {'|'.join(items['enum'])}" if "enum" in items else f"list of {items.get('type')}"
        low, high = option.get("minimum"), option.get("maximum")
        if low is not None and high is not None and high < 10**9:
            kind += f" {low}..{high}"
        elif low is not None:
            kind += f" >= {low}"
        kinds.append(kind)
    return " or ".join(kinds) + (" or null" if len(options) < len(schema.get("anyOf", [schema])) else "")


def _serve_emulator(host: str, port: int, seed: int, latency_ms: float) -> None:
    import uvicorn

    from server.sandbox import SANDBOX_API_KEY, SANDBOX_USERNAME, Emulator
    from server.wiring.http import listening_socket

    emulator = Emulator(seed=seed)
    emulator.latency = latency_ms / 1000
    sock = listening_socket(host, port)
    delay = f", every answer {latency_ms:g} ms late" if latency_ms else ""
    # The socket listens already, so whoever reads this line can connect at once.
    print(
        f"TextMagic emulator on http://{host}:{sock.getsockname()[1]} (made-up data, seed {seed}{delay}); "
        f"username {SANDBOX_USERNAME!r}, API key {SANDBOX_API_KEY!r}",
        file=sys.stderr,
        flush=True,
    )
    # Idle connections are kept as long as nginx keeps them by default (uvicorn alone: 5 s).
    config = uvicorn.Config(emulator.app, log_level="warning", timeout_keep_alive=75)
    uvicorn.Server(config).run(sockets=[sock])
