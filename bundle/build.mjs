// Builds dist/textmagic-sessions-mcp.mcpb, the Claude Desktop bundle: manifest.json beside the Python project
// (pyproject.toml, server/, tools/, README.md, LICENSE), which the host runs with uv. The manifest is validated
// and the bundle packed by @anthropic-ai/mcpb, pinned in package-lock.json.
//
//   cd bundle && npm ci && npm run build
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const stage = join(root, "build", "bundle");
const output = join(root, "dist", "textmagic-sessions-mcp.mcpb");
const mcpb = join(here, "node_modules", ".bin", "mcpb");

// The version lives in server/__init__.py; the manifest must say the same.
const version = /__version__ = "([^"]+)"/.exec(readFileSync(join(root, "server", "__init__.py"), "utf8"))[1];
const manifest = JSON.parse(readFileSync(join(here, "manifest.json"), "utf8"));
if (manifest.version !== version) {
  console.error(`bundle/manifest.json says version ${manifest.version}, server/__init__.py ${version}`);
  process.exit(1);
}

rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
mkdirSync(dirname(output), { recursive: true });
const skipped = (source) => !/__pycache__|\.pyc$/.test(source);
for (const name of ["pyproject.toml", "README.md", "LICENSE", "server", "tools"]) {
  cpSync(join(root, name), join(stage, name), { recursive: true, filter: skipped });
}
cpSync(join(here, "manifest.json"), join(stage, "manifest.json"));

execFileSync(mcpb, ["validate", join(stage, "manifest.json")], { stdio: "inherit" });
execFileSync(mcpb, ["pack", stage, output], { stdio: "inherit" });
console.log(`wrote ${output}`);
