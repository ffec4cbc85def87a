// slmsql's one-page app. Plain JavaScript, no framework and no build step: it talks to the
// server's /v1 API (the same JSON as `slmsql ask --json`) and renders with DOM calls, never
// innerHTML, so nothing the model or the database returns is ever parsed as markup.
"use strict";

const TOKEN_KEY = "slmsql.token";
const MAX_SHOWN_ROWS = 500; // a browser table of 100,000 rows helps nobody; --json has them all
const $ = (id) => document.getElementById(id);

// ---- talking to the server ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }
}

function authHeaders(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// The server's error bodies are {"error": ..., "hint": ...}; FastAPI-style {"detail": ...} and
// plain text are read too, so an error from a proxy in front of it still says something.
async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let hint = "";
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    const detail = body.error ?? body.detail ?? body.message;
    if (typeof detail === "string") message = detail;
    else if (Array.isArray(detail)) message = detail.map((d) => d.msg ?? JSON.stringify(d)).join("; ");
    if (typeof body.hint === "string") hint = body.hint;
  } catch {
    if (text.trim()) message = text.trim().slice(0, 500);
  }
  if (response.status === 503) {
    const after = response.headers.get("Retry-After");
    hint = hint || `The server is busy with other questions${after ? `; try again in ${after} s` : "; try again shortly"}.`;
  } else if (response.status === 401 || response.status === 403) {
    hint = hint || "This server needs an access token: open “Access token” below and paste it.";
  }
  return new ApiError(response.status, message, hint);
}

async function api(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
  const headers = authHeaders({ Accept: accept });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "The server cannot be reached.", "Is `slmsql serve --http` still running?");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

// Server-sent events over a POST (EventSource can only GET): split the stream into events and
// hand each one's name and parsed data to `onEvent`.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// ---- SQL highlighting ------------------------------------------------------------------------
// Hand-written on purpose: a highlighter library means a CDN or a vendored file several hundred
// times this size, and the page only needs to colour one SELECT statement. One regular
// expression splits the text into tokens; each becomes a <span> whose text is set, not parsed.

const SQL_KEYWORDS = new Set((
  "select from where and or not in is null like glob between exists case when then else end as " +
  "join inner left right full outer cross natural on using group by having order asc desc limit " +
  "offset union all intersect except distinct with recursive cast collate escape values true false " +
  "over partition rows range preceding following unbounded current row filter window"
).split(" "));
const SQL_TOKEN = new RegExp([
  String.raw`(--[^\n]*|\/\*[\s\S]*?(?:\*\/|$))`, // 1 comment
  String.raw`('(?:[^']|'')*'?)`, // 2 string
  String.raw`("(?:[^"]|"")*"?|\x60[^\x60]*\x60?|\[[^\]]*\]?)`, // 3 quoted identifier
  String.raw`(\b\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b|\.\d+\b)`, // 4 number
  String.raw`([A-Za-z_][A-Za-z0-9_$]*)(?=\s*\()`, // 5 function name
  String.raw`([A-Za-z_][A-Za-z0-9_$]*)`, // 6 word
].join("|"), "g");

function highlightSql(target, sql) {
  target.replaceChildren();
  let last = 0;
  const add = (text, cls) => {
    if (!text) return;
    if (!cls) { target.append(text); return; }
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    target.append(span);
  };
  for (const m of sql.matchAll(SQL_TOKEN)) {
    add(sql.slice(last, m.index));
    const [text, comment, str, ident, num, fn, word] = m;
    let cls = "";
    if (comment) cls = "comment";
    else if (str) cls = "str";
    else if (ident) cls = "ident";
    else if (num) cls = "num";
    else if (fn) cls = SQL_KEYWORDS.has(fn.toLowerCase()) ? "kw" : "fn";
    else if (word && SQL_KEYWORDS.has(word.toLowerCase())) cls = "kw";
    add(text, cls);
    last = m.index + text.length;
  }
  add(sql.slice(last));
}

// ---- rendering -------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function renderTable(answer) {
  const box = $("result");
  box.replaceChildren();
  if (!answer.columns.length) return;
  const table = el("table");
  const rows = answer.rows.slice(0, MAX_SHOWN_ROWS);
  const notes = [`${answer.rows.length} row${answer.rows.length === 1 ? "" : "s"}`];
  if (answer.rows.length > rows.length) notes.push(`the first ${rows.length} shown`);
  if (answer.truncated) notes.push("the result was cut at its row or size limit");
  table.append(el("caption", { textContent: notes.join(" · ") }));
  const head = el("tr");
  for (const column of answer.columns) head.append(el("th", { scope: "col", textContent: column }));
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    for (const value of row) {
      const td = el("td", { textContent: value === null ? "NULL" : String(value) });
      if (value === null) td.className = "null";
      else if (typeof value === "number") td.className = "num";
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(el("thead", {}, head), body);
  box.append(table);
}

// ---- charts ------------------------------------------------------------------------------------
// The server says whether and how a result can be charted (`chart`: kind, label column, numeric
// columns; slmsql_cli/chart.py). Drawn here as SVG built with DOM calls: a few dozen lines, where
// a chart library would mean a CDN or a vendored file, and a build step.

const SVG = "http://www.w3.org/2000/svg";
const SERIES_COLOURS = ["#0b5cad", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function shortLabel(value, max = 18) {
  const text = value === null ? "NULL" : String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function drawChart(result) {
  const box = $("chart");
  box.replaceChildren();
  const spec = result.chart;
  if (!spec) return false;
  const labels = result.rows.map((row) => row[spec.label]);
  const series = spec.values.map((i) => ({ name: result.columns[i], values: result.rows.map((row) => row[i]) }));
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const low = Math.min(0, ...all);
  const high = Math.max(0, ...all) || 1;
  const left = 150, right = 20, top = 10, width = 760;
  const plot = width - left - right;
  const x = (v) => left + ((v - low) / (high - low)) * plot;
  let chart;
  if (spec.kind === "line") {
    const height = 260, bottom = 40;
    const plotHeight = height - top - bottom;
    const y = (v) => top + plotHeight - ((v - low) / (high - low)) * plotHeight;
    // x by value when the labels are numbers or dates (gaps show as gaps), else one step per row
    const asNumbers = labels.map((l) => (typeof l === "number" ? l : Date.parse(String(l).length === 4 ? `${l}-01-01` : String(l))));
    const spaced = asNumbers.every(Number.isFinite) && asNumbers[asNumbers.length - 1] > asNumbers[0];
    const first = asNumbers[0], span = asNumbers[asNumbers.length - 1] - asNumbers[0];
    const xAt = (i) => left + (spaced ? ((asNumbers[i] - first) / span) * plot : labels.length > 1 ? (i * plot) / (labels.length - 1) : 0);
    chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Line chart of ${series.map((s) => s.name).join(", ")} by ${result.columns[spec.label]}` });
    chart.append(svg("line", { x1: left, x2: left + plot, y1: y(0), y2: y(0), class: "axis" }));
    chart.append(svg("text", { x: left - 6, y: y(high) + 4, "text-anchor": "end", class: "tick" }, String(high)));
    chart.append(svg("text", { x: left - 6, y: y(low) + 4, "text-anchor": "end", class: "tick" }, String(low)));
    const every = Math.max(1, Math.ceil(labels.length / 10));
    labels.forEach((label, i) => {
      if (i % every === 0 || i === labels.length - 1) {
        chart.append(svg("text", { x: xAt(i), y: height - bottom + 18, "text-anchor": "middle", class: "tick" }, shortLabel(label, 12)));
      }
    });
    series.forEach((s, k) => {
      const points = s.values.map((v, i) => (v === null ? null : `${xAt(i)},${y(v)}`)).filter(Boolean);
      chart.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: SERIES_COLOURS[k % SERIES_COLOURS.length], "stroke-width": 2, class: "series" }));
      s.values.forEach((v, i) => {
        if (v === null) return;
        const dot = svg("circle", { cx: xAt(i), cy: y(v), r: 3, fill: SERIES_COLOURS[k % SERIES_COLOURS.length] });
        dot.append(svg("title", {}, `${shortLabel(labels[i], 60)} · ${s.name}: ${v}`));
        chart.append(dot);
      });
    });
  } else {
    const bar = 16, gap = 6, group = series.length * bar + gap;
    const height = top + labels.length * group + 10;
    chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Bar chart of ${series.map((s) => s.name).join(", ")} by ${result.columns[spec.label]}` });
    labels.forEach((label, i) => {
      const y0 = top + i * group;
      chart.append(svg("text", { x: left - 8, y: y0 + (series.length * bar) / 2 + 4, "text-anchor": "end", class: "tick" }, shortLabel(label)));
      series.forEach((s, k) => {
        const v = s.values[i];
        if (v === null) return;
        const rect = svg("rect", { x: Math.min(x(0), x(v)), y: y0 + k * bar, width: Math.max(Math.abs(x(v) - x(0)), 1), height: bar - 2, fill: SERIES_COLOURS[k % SERIES_COLOURS.length], class: "bar" });
        rect.append(svg("title", {}, `${shortLabel(label, 60)} · ${s.name}: ${v}`));
        chart.append(rect);
      });
    });
    chart.append(svg("line", { x1: x(0), x2: x(0), y1: top, y2: height - 10, class: "axis" }));
  }
  const legend = el("figcaption", {}, ...series.map((s, k) => el("span", { className: "legend" },
    el("span", { className: "swatch", style: `background:${SERIES_COLOURS[k % SERIES_COLOURS.length]}` }),
    `${s.name}`)));
  legend.append(` by ${result.columns[spec.label]}`);
  box.append(chart, legend);
  return true;
}

// Chart or table: the chart first when the result has one, a toggle back to the table.
function showView(view) {
  const chart = view === "chart" && !$("view-toggle").hidden;
  $("chart").hidden = !chart;
  $("result").hidden = chart;
  $("show-chart").setAttribute("aria-pressed", String(chart));
  $("show-table").setAttribute("aria-pressed", String(!chart));
}

function renderResult(result) {
  renderTable(result);
  const charted = drawChart(result);
  $("view-toggle").hidden = !charted;
  showView(charted ? "chart" : "table");
}

function seconds(value) {
  return `${Number(value).toFixed(1)} s`;
}

function summaryText(answer) {
  const parts = [];
  const inGroup = (g) => answer.candidates.filter((c) => c.group === g).length;
  if (answer.saved_answer !== null && answer.saved_answer !== undefined) {
    parts.push(`saved answer #${answer.saved_answer}: its SQL ran again on the current data`);
  } else if (!answer.candidates.some((c) => c.group !== null)) {
    parts.push(`none of the ${answer.candidates.length} candidates produced SQL that ran`);
  } else {
    parts.push(`${answer.votes}/${answer.candidates_sampled} ${answer.merged ? "revisions" : "candidates"} agreed`);
  }
  if (answer.merged) {
    parts.push(`merge used on drafts with ${inGroup(0)} and ${inGroup(1)} of ${answer.candidates.length} votes`);
  }
  else if (answer.saved_answer == null && inGroup(0) && answer.candidates.every((c) => c.group === 0 || c.group === null)) {
    parts.push("no merge needed");
  }
  const t = answer.timings || {};
  const detail = ["generate", "execute", "merge"].filter((k) => k in t).map((k) => `${k} ${seconds(t[k])}`);
  if ("total" in t) parts.push(seconds(t.total) + (detail.length ? ` (${detail.join(", ")})` : ""));
  if (answer.schema_pruned) {
    parts.push(`schema pruned to ${answer.schema_pruned.kept_tables}/${answer.schema_pruned.total_tables} tables`);
  }
  return parts.join(" · ");
}

function renderCandidates(list, candidates, title) {
  if (!candidates.length) return;
  if (title) list.append(el("li", { className: "heading" }, el("strong", { textContent: title })));
  candidates.forEach((c, i) => {
    const votes = c.group === null ? `no vote: ${c.error}` : `group ${c.group + 1} · ${c.votes} vote${c.votes === 1 ? "" : "s"}`;
    const item = el("li", { className: c.group === 0 ? "winner" : "" },
      el("div", { className: "meta", textContent: `#${i + 1} · ${votes}` }));
    if (c.sql) {
      const code = el("code");
      highlightSql(code, c.sql);
      item.append(el("pre", { className: "sql" }, code));
    }
    if (c.text) {
      item.append(el("details", {}, el("summary", { textContent: "what the model wrote" }), el("pre", { textContent: c.text })));
    }
    list.append(item);
  });
}

function showSql(sql) {
  const code = $("sql").querySelector("code");
  if (sql) highlightSql(code, sql);
  else code.textContent = "(the model wrote no SQL that could be used)";
  $("sql-edit").value = sql ?? "";
}

// The explanation is made by the server from the SQL's parse: one sentence per line, a
// subquery's sentences indented by two spaces under their heading.
function showExplanation(text) {
  const list = $("explanation");
  list.replaceChildren();
  $("explain-box").hidden = !text;
  for (const line of (text || "").split("\n")) {
    const item = el("li", { textContent: line.trimStart() });
    if (line.startsWith("  ")) item.className = "sub";
    list.append(item);
  }
}

// How sure the answer is: a badge, and the reasons to check it (the server's `confidence`).
function showConfidence(confidence) {
  const box = $("confidence");
  box.replaceChildren();
  box.hidden = !confidence;
  if (!confidence) return;
  const flagged = confidence.flags.length > 0;
  box.className = `confidence ${flagged ? "check" : "ok"}`;
  box.append(el("span", { className: "badge", textContent: flagged ? "Check this answer" : "No warning signs" }));
  if (confidence.merged) {
    box.append(el("span", { className: "note", textContent: confidence.merge_changed ? " The merge model changed the voted answer." : " The merge model kept the voted answer." }));
  }
  if (flagged) box.append(el("ul", {}, ...confidence.flags.map((f) => el("li", { textContent: f.reason }))));
}

function showAnswer(answer) {
  $("answer").hidden = false;
  $("answer-title").textContent = "Answer";
  showSql(answer.sql);
  showExplanation(answer.explanation);
  $("summary").textContent = summaryText(answer);
  showConfidence(answer.confidence);
  renderResult(answer);
  shown = { question: answeredQuestion, sql: answer.sql, evidence: "" };
  $("keep").hidden = !answer.sql || !!answer.error;
  const list = $("candidates");
  list.replaceChildren();
  renderCandidates(list, answer.candidates, answer.merge_candidates.length ? "drafts" : "");
  renderCandidates(list, answer.merge_candidates, "merge revisions");
  $("candidates-box").querySelector("summary").textContent = `Candidates (${answer.candidates.length + answer.merge_candidates.length})`;
  const look = "Open “Candidates” to see what the model wrote; rephrasing often helps, or edit and run the SQL yourself.";
  if (!answer.sql) showError(new ApiError(200, "The model wrote no usable SQL for this question.", look));
  else if (answer.error) showError(new ApiError(200, `No answer: ${answer.error}`, look));  // ask's words
}

function showError(error) {
  const box = $("error");
  box.replaceChildren(el("strong", { textContent: error.message }));
  if (error.hint) box.append(el("div", { textContent: error.hint }));
  box.hidden = false;
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- the flow --------------------------------------------------------------------------------

let running = null; // the AbortController of the question being answered
let answeredDatabase = ""; // the database the shown answer is about: an edited SQL runs there
let answeredQuestion = ""; // the question it answers: "Keep this answer" saves it with the SQL shown
let shown = null; // {question, sql, evidence} that "Keep this answer" would save

function setBusy(busy) {
  $("ask").disabled = busy;
  $("cancel").hidden = !busy;
  $("progress-box").hidden = !busy;
  $("answer").setAttribute("aria-busy", String(busy));
}

// The server's stream: queued, started, progress, tokens, round (a voted round), then answer or error.
function progressText(event, data) {
  switch (event) {
    case "queued":
      return data.queue_length > 0 ? `Waiting for the model: ${data.queue_length} question(s) ahead…` : "Waiting for the model…";
    case "started":
      return "The model is reading the schema…";
    case "progress":
      return `${data.message}…`;
    case "tokens":
      return `Sampling: ${data.generated} tokens…`;
    case "round": {
      const ran = data.candidates.filter((c) => c.group !== null).length;
      return `${data.step === "merge" ? "Revisions" : "Candidates"} done: ${ran} of ${data.candidates.length} ran; voting…`;
    }
    default:
      return "";
  }
}

async function ask(database, question) {
  running?.abort();
  running = new AbortController();
  const { signal } = running;
  $("error").hidden = true;
  setBusy(true);
  setStatus("Waiting for the model…");
  const started = performance.now();
  try {
    const response = await api("/v1/ask", {
      method: "POST", signal, accept: "text/event-stream, application/json",
      body: { database, question, stream: true },
    });
    let answer = null;
    if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      await readEvents(response, (event, data) => {
        if (event === "answer") answer = data;
        else if (event === "error") throw new ApiError(data.status ?? 500, data.error ?? "the server failed", data.hint);
        else {
          const text = progressText(event, data);
          if (text) setStatus(text);
        }
      });
      if (!answer) throw new ApiError(0, "The answer stream ended early.", "The server may have stopped; try again.");
    } else {
      answer = await response.json();
    }
    answeredDatabase = database;
    answeredQuestion = question;
    showAnswer(answer);
    setStatus(`Answered in ${seconds((performance.now() - started) / 1000)}.`);
  } catch (error) {
    if (error.name === "AbortError") setStatus("Cancelled.");
    else {
      setStatus("");
      showError(error instanceof ApiError ? error : new ApiError(0, String(error)));
    }
  } finally {
    if (running?.signal === signal) {
      running = null;
      setBusy(false);
    }
  }
}

// The user's own edit of the SQL, through POST /v1/sql: the same read-only executor as the model's.
async function runSql(database, sql) {
  $("error").hidden = true;
  $("run-sql").disabled = true;
  setStatus("Running the SQL…");
  try {
    const result = await (await api("/v1/sql", { method: "POST", body: { database, sql } })).json();
    $("answer-title").textContent = "Your SQL";
    showSql(sql);
    showExplanation(result.explanation);
    showConfidence(null);
    renderResult(result);
    shown = { question: answeredQuestion, sql, evidence: "" };
    $("keep").hidden = !answeredQuestion || !!result.error;
    const rows = `${result.row_count} row${result.row_count === 1 ? "" : "s"}`;
    $("summary").textContent = `your edit of the SQL · ${rows} · ${seconds(result.seconds)}`;
    setStatus("");
    if (result.error) showError(new ApiError(200, `The SQL failed: ${result.error}`, result.timed_out ? "It ran past the server's time limit." : ""));
  } catch (error) {
    setStatus("");
    showError(error);
  } finally {
    $("run-sql").disabled = false;
  }
}

// "Keep this answer": the question with the SQL on screen (the model's, or the user's edit),
// saved on the server; asked again exactly, the question is answered from it without the model.
async function keepAnswer() {
  if (!shown || !shown.sql) return;
  $("keep").disabled = true;
  try {
    const body = { database: answeredDatabase, question: shown.question, sql: shown.sql, evidence: shown.evidence };
    const saved = await (await api("/v1/saved", { method: "POST", body })).json();
    setStatus(`Kept as saved answer #${saved.id}: asking this question again answers with this SQL, without the model.`);
  } catch (error) {
    showError(error);
  } finally {
    $("keep").disabled = false;
  }
}

async function loadSchema() {
  const name = $("database").value;
  const target = $("schema");
  if (!name || !$("schema-box").open || target.dataset.database === name) return;
  target.textContent = "loading…";
  try {
    const response = await api(`/v1/databases/${encodeURIComponent(name)}/schema`);
    const body = await response.json();
    target.textContent = body.schema ?? body.ddl ?? JSON.stringify(body, null, 2);
    target.dataset.database = name;
  } catch (error) {
    target.textContent = `${error.message}${error.hint ? `\n${error.hint}` : ""}`;
  }
}

async function loadDatabases() {
  const select = $("database");
  try {
    const body = await (await api("/v1/databases")).json();
    const databases = Array.isArray(body) ? body : body.databases;
    select.replaceChildren(...databases.map((d) => {
      const name = typeof d === "string" ? d : d.name;
      const count = Array.isArray(d.tables) ? d.tables.length : d.tables;
      const tables = count === undefined ? "" : ` (${count} table${count === 1 ? "" : "s"})`;
      return el("option", { value: name, textContent: name + tables });
    }));
    const remembered = sessionStorage.getItem("slmsql.database");
    if (remembered && databases.some((d) => (d.name ?? d) === remembered)) select.value = remembered;
    $("database-note").textContent = databases.length ? "" : "The server was started without --db.";
    $("error").hidden = true;
  } catch (error) {
    select.replaceChildren(el("option", { value: "", textContent: "(unavailable)" }));
    showError(error);
    if (error.status === 401 || error.status === 403) $("token-box").open = true;
  }
}

function start() {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) ?? "";
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    loadDatabases();
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
  });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const database = $("database").value;
    const question = $("question").value.trim();
    if (!database) return showError(new ApiError(0, "Choose a database first."));
    if (!question) return showError(new ApiError(0, "Type a question first."));
    sessionStorage.setItem("slmsql.database", database);
    ask(database, question);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  $("cancel").addEventListener("click", () => running?.abort());
  $("sql-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const sql = $("sql-edit").value.trim();
    if (!sql) return showError(new ApiError(0, "Type a SQL statement first."));
    runSql(answeredDatabase || $("database").value, sql);
  });
  $("sql-edit").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("sql-form").requestSubmit();
  });
  $("keep").addEventListener("click", keepAnswer);
  $("show-chart").addEventListener("click", () => showView("chart"));
  $("show-table").addEventListener("click", () => showView("table"));
  $("schema-box").addEventListener("toggle", loadSchema);
  $("database").addEventListener("change", loadSchema);
  loadDatabases();
}

start();
