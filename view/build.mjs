// Builds the delivery report view into one self-contained HTML document: tools/view.html (see tools/view.py).
//
//   cd view && npm ci && npm run build
//
// Rollup bundles src/main.js with the pinned @modelcontextprotocol/ext-apps (esbuild alone cannot drop the
// locales zod exports as a namespace), esbuild minifies the script and the style, and both are inlined into
// src/view.html. The same sources and package-lock.json give the same bytes.
import { readFile, writeFile } from "node:fs/promises";
import { nodeResolve } from "@rollup/plugin-node-resolve";
import { transform } from "esbuild";
import { rollup } from "rollup";

const here = (path) => new URL(path, import.meta.url);
const OUTPUT = here("../tools/view.html");
// The bound for a view a host loads with every report.
const MAX_BYTES = 300 * 1024;

const bundle = await rollup({
  input: "src/main.js",
  plugins: [nodeResolve({ browser: true })],
  onwarn(warning, warn) {
    // The SDK's modules use `this` at the top level, circular imports and comments Rollup cannot place:
    // none matters in one script.
    if (!["THIS_IS_UNDEFINED", "CIRCULAR_DEPENDENCY", "INVALID_ANNOTATION"].includes(warning.code)) warn(warning);
  },
});
const { output } = await bundle.generate({ format: "iife" });
await bundle.close();

const script = (await transform(output[0].code, { minify: true, target: "es2022", legalComments: "none" })).code;
const style = (await transform(await readFile(here("src/view.css"), "utf8"), { loader: "css", minify: true }))
  .code;
if (/<\/script/i.test(script) || /<\/style/i.test(style)) throw new Error("a closing tag inside inlined code");

const template = await readFile(here("src/view.html"), "utf8");
const html = template
  .replace("/*STYLE*/", () => style.trim())
  .replace("/*SCRIPT*/", () => script.trim());
const size = Buffer.byteLength(html);
if (size > MAX_BYTES) throw new Error(`the view is ${size} bytes, over ${MAX_BYTES}`);
await writeFile(OUTPUT, html);
console.log(`wrote ${OUTPUT.pathname} (${size} bytes)`);
