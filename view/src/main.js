// The delivery report view: renders a get_delivery_report or find_message_sessions result that the host hands
// over (MCP Apps, through the official App class), or that the page carries itself (the `report --html` file).
// It reads nothing from the network and calls no tool: everything it shows came with the result.
import { App, applyDocumentTheme, applyHostStyleVariables } from "@modelcontextprotocol/ext-apps";

const BUCKETS = ["delivered", "failed", "rejected", "pending", "other"];
const COUNTRY_ROWS = 15;
const root = document.getElementById("report");
// Where a view-capable host finds the fuller report in the result's _meta (set by tools/report_view.py).
const viewKey = document.body.dataset.viewKey;
const number = new Intl.NumberFormat("en");

// Text goes in as text nodes only: session texts, names and reasons come from third parties.
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const count = (value) => (value == null ? "" : number.format(value));
const percent = (value) => (value == null ? "n/a" : `${(value * 100).toFixed(1)}%`);
const money = (value) => (value == null ? "" : value.toFixed(2));
const moment = (value) => (value ? String(value).replace("T", " ").slice(0, 16) : "");
const clip = (text, length = 60) => (text && text.length > length ? `${text.slice(0, length - 1)}…` : text || "");
const failures = (row) => (row.failed || 0) + (row.rejected || 0);
const totalOf = (row) => BUCKETS.reduce((sum, bucket) => sum + (row[bucket] || 0), 0);

function show(result) {
  const data = result?._meta?.[viewKey] ?? result?.structuredContent;
  root.replaceChildren();
  if (result?.isError) {
    root.append(h("p", { role: "alert" }, textOf(result) || "The tool failed."));
  } else if (data && data.outcome) {
    root.append(...report(data));
  } else if (data && Array.isArray(data.sessions)) {
    root.append(...sessions(data));
  } else {
    root.append(h("p", {}, textOf(result) || "This result has no report to show."));
  }
}

function textOf(result) {
  return (result?.content || [])
    .filter((block) => block.type === "text")
    .map((block) => block.text)
    .join("\n");
}

function report(data) {
  // A report of one session (by id) has no filter, and lists that session.
  const session = data.filter == null && data.listed?.length === 1 ? data.listed[0] : null;
  const outcome = data.outcome;
  const title = session
    ? clip(session.title) || `Session ${session.id}`
    : `${count(data.sessions)} session${data.sessions === 1 ? "" : "s"}`;
  const about = session
    ? `Session ${session.id}, started ${moment(session.start_time) || "unknown"}, ${count(session.recipients)} recipients`
    : `Sessions ${data.filter || "of the account"}`;
  const pending = outcome.pending ? ` (${count(outcome.pending)} pending, not counted)` : "";
  const parts = [
    h("h1", {}, title),
    h("p", { class: "muted" }, about),
    h(
      "div",
      { class: "figures" },
      figure("Delivery rate", percent(outcome.delivery_rate), `of final messages${pending}`),
      figure("Messages", count(data.messages)),
      figure("Failed or rejected", count(failures(outcome))),
      figure("Cost", money(outcome.cost), "account currency"),
    ),
    outcomeBar(outcome),
  ];
  if (data.deleted) {
    parts.push(h("p", { class: "muted" }, `${count(data.deleted.messages)} deleted messages (${money(data.deleted.cost)}) are in the cost, not in the counts.`));
  }
  if (data.scheduled) {
    parts.push(
      h(
        "p",
        { class: "muted" },
        `Not started yet, in no count or cost: ${count(data.scheduled.sessions)} sessions to ${count(data.scheduled.recipients)} recipients (${money(data.scheduled.cost)}).`,
      ),
    );
  }
  for (const [name, rows] of groupsOf(data)) {
    parts.push(h("h2", {}, GROUPS[name]?.title || `By ${name}`), breakdown(rows, GROUPS[name]?.key || name, name));
    if (name === "country" && rows.hidden) {
      parts.push(h("p", { class: "muted" }, `and ${rows.hidden} more countries with failures`));
    }
  }
  if (data.failed_count) {
    parts.push(h("h2", {}, `Failed and rejected recipients (${count(data.failed_count)})`));
    const listed = data.failed || [];
    if (listed.length < data.failed_count) {
      parts.push(h("p", { class: "muted" }, `The newest ${count(listed.length)} are listed.`));
    }
    parts.push(
      table(
        [
          { key: "number", label: "Number" },
          { key: "name", label: "Name" },
          { key: "country", label: "Country" },
          { key: "status", label: "Status" },
          { key: "reason", label: "Reason" },
          { key: "session", label: "Session", numeric: true, show: String },
          { key: "time", label: "Time", show: moment },
        ],
        listed,
        "failed recipients",
      ),
    );
  }
  parts.push(...notes(data));
  return parts;
}

const GROUPS = {
  country: { title: "Failures by country", key: "Country" },
  reject_reason: { title: "By reject reason", key: "Reason code" },
  session: { title: "By session", key: "Session" },
  day: { title: "By day", key: "Day" },
  status: { title: "By status", key: "Status" },
  sender: { title: "By sender", key: "Sender" },
};

// Where failures happened first, then why, then any other breakdown the result carries.
function groupsOf(data) {
  const groups = data.groups || {};
  const names = ["country", "reject_reason", ...Object.keys(groups).filter((name) => !["country", "reject_reason"].includes(name))];
  const shown = [];
  for (const name of names) {
    let rows = groups[name] || [];
    if (name === "country") {
      const failing = rows.filter((row) => failures(row) > 0).sort((a, b) => failures(b) - failures(a));
      rows = failing.slice(0, COUNTRY_ROWS);
      rows.hidden = failing.length - rows.length;
    } else if (name === "reject_reason") {
      rows = rows.filter((row) => row.key != null);
    } else if (name === "session" && rows.length < 2) {
      rows = [];
    }
    if (rows.length) shown.push([name, rows]);
  }
  return shown;
}

function figure(label, value, detail) {
  return h("div", { class: "figure" }, h("span", { class: "muted" }, label), h("b", {}, value), detail && h("span", { class: "muted" }, detail));
}

function outcomeBar(outcome) {
  const total = totalOf(outcome);
  const share = (bucket) => (total ? outcome[bucket] / total : 0);
  const shown = BUCKETS.filter((bucket) => bucket !== "other" || outcome.other);
  const words = shown.map((bucket) => `${bucket} ${count(outcome[bucket])} (${percent(share(bucket))})`);
  const bar = h("div", { class: "bar", role: "img", "aria-label": `Outcomes: ${words.join(", ")}` });
  for (const bucket of shown) {
    if (!outcome[bucket]) continue;
    const segment = h("span", { class: bucket, title: `${bucket}: ${count(outcome[bucket])}` });
    segment.style.width = `${share(bucket) * 100}%`;
    bar.append(segment);
  }
  const legend = h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    shown.map((bucket) =>
      h(
        "li",
        { "data-bucket": bucket },
        h("span", { class: `swatch ${bucket}` }),
        h("span", {}, bucket[0].toUpperCase() + bucket.slice(1)),
        h("b", {}, count(outcome[bucket])),
        h("span", { class: "muted" }, percent(share(bucket))),
      ),
    ),
  );
  return h("section", { "aria-label": "Outcomes" }, bar, legend);
}

function breakdown(rows, label, name) {
  const widest = Math.max(...rows.map(failures), 1);
  return table(
    [
      // What matters most first: a narrow view shows it without scrolling.
      { key: "key", label, show: (value) => value ?? "unknown" },
      {
        key: "failures",
        label: "Failures",
        value: failures,
        numeric: true,
        cell: (row) => meter(failures(row) / widest, "failed", count(failures(row))),
      },
      { key: "delivery_rate", label: "Delivery rate", numeric: true, show: percent },
      { key: "failed", label: "Failed", numeric: true, show: count },
      { key: "rejected", label: "Rejected", numeric: true, show: count },
      { key: "total", label: "Messages", numeric: true, show: count, value: totalOf },
    ],
    rows,
    `group-${name}`,
    `rows by ${label.toLowerCase()}`,
  );
}

function meter(fraction, bucket, text) {
  const fill = h("span", { class: bucket });
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return [h("span", { class: "meter", "aria-hidden": "true" }, fill), " ", text];
}

function sessions(data) {
  const rows = data.sessions;
  const withStats = rows.some((row) => row.delivered != null);
  const columns = [
    { key: "id", label: "Session", numeric: true, show: String },
    { key: "startTime", label: "Started", show: moment },
    { key: "title", label: "Title or text", wrap: true, value: (row) => row.title || row.text || "", show: (value) => clip(value, 80) },
    { key: "numbersCount", label: "Recipients", numeric: true, show: count },
  ];
  if (withStats) {
    columns.push(
      { key: "delivered", label: "Delivered", numeric: true, show: count },
      { key: "failed", label: "Failed", numeric: true, show: count },
      { key: "rejected", label: "Rejected", numeric: true, show: count },
      { key: "pending", label: "Pending", numeric: true, show: count },
      {
        key: "delivery_rate",
        label: "Delivery rate",
        numeric: true,
        cell: (row) => meter(row.delivery_rate ?? 0, "delivered", percent(row.delivery_rate)),
      },
    );
  }
  columns.push({ key: "price", label: "Price", numeric: true, show: money });
  const about = [`${count(data.scanned)} scanned`, `${count(data.recipients)} recipients`, `price ${money(data.price)}`];
  return [
    h("h1", {}, `${count(data.matched)} session${data.matched === 1 ? "" : "s"} matched`),
    h("p", { class: "muted" }, about.join(", ")),
    rows.length < data.matched ? h("p", { class: "muted" }, `${count(rows.length)} are listed.`) : null,
    table(columns, rows, "sessions"),
    ...notes(data),
  ].filter(Boolean);
}

function notes(data) {
  return [data.more, data.complete === false ? data.reason : null]
    .filter(Boolean)
    .map((note) => h("p", { class: "note muted" }, note));
}

// A table that sorts by any column (click its header) and filters by any text, without another call.
function table(columns, rows, name, label = name) {
  const valueOf = (column, row) => (column.value ? column.value(row) : row[column.key]);
  const state = { column: null, descending: false, filter: "" };
  const body = h("tbody");
  const shown = h("span", { class: "muted", "aria-live": "polite" });
  const headers = columns.map((column) => {
    const header = h("th", { scope: "col", class: column.numeric ? "num" : null, "data-key": column.key });
    header.append(
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            state.descending = state.column === column ? !state.descending : Boolean(column.numeric);
            state.column = column;
            render();
          },
        },
        column.label,
      ),
    );
    return header;
  });
  const search = h("input", {
    type: "search",
    placeholder: "Filter",
    "aria-label": `Filter the ${label}`,
    oninput: (event) => {
      state.filter = event.target.value.trim().toLowerCase();
      render();
    },
  });
  function render() {
    let visible = rows;
    if (state.filter) {
      visible = rows.filter((row) =>
        columns.some((column) => String(valueOf(column, row) ?? "").toLowerCase().includes(state.filter)),
      );
    }
    if (state.column) {
      const column = state.column;
      const sign = state.descending ? -1 : 1;
      visible = [...visible].sort((a, b) => compare(valueOf(column, a), valueOf(column, b), sign));
    }
    for (const [index, header] of headers.entries()) {
      const sorted = columns[index] === state.column;
      if (sorted) header.setAttribute("aria-sort", state.descending ? "descending" : "ascending");
      else header.removeAttribute("aria-sort");
    }
    body.replaceChildren(
      ...visible.map((row) =>
        h(
          "tr",
          {},
          columns.map((column) => {
            const value = valueOf(column, row);
            const content = column.cell ? column.cell(row) : column.show ? column.show(value) : (value ?? "");
            return h("td", { class: column.numeric ? "num" : column.wrap ? "wrap" : null }, content);
          }),
        ),
      ),
    );
    shown.textContent = `${count(visible.length)} of ${count(rows.length)} shown`;
  }
  render();
  return h(
    "div",
    { class: "table", "data-table": name },
    h("div", { class: "tools" }, search, shown),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, headers)), body)),
  );
}

// Numbers as numbers, text as text; what is missing sorts last either way.
function compare(a, b, sign) {
  const missing = (value) => value == null || value === "";
  if (missing(a) || missing(b)) return missing(a) - missing(b);
  if (typeof a === "number" && typeof b === "number") return sign * (a - b);
  return sign * String(a).localeCompare(String(b), "en", { numeric: true });
}

function follow(context) {
  if (context?.theme) applyDocumentTheme(context.theme);
  if (context?.styles?.variables) applyHostStyleVariables(context.styles.variables);
}

const embedded = document.getElementById("tool-result");
if (embedded) {
  show(JSON.parse(embedded.textContent));
} else {
  const app = new App({ name: "textmagic-delivery-report", version: "1.0.0" });
  app.ontoolresult = show;
  app.onhostcontextchanged = follow;
  app.connect().then(
    () => follow(app.getHostContext()),
    (error) => root.replaceChildren(h("p", { role: "alert" }, `The host did not connect: ${error.message}`)),
  );
}
