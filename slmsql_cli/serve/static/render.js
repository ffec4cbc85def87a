// Rendering an answer or a result: the table, chart or table, the SQL, its explanation, how sure
// the answer is, the candidates, the summary line, errors and the status line.

import { drawChart } from "./chart.js";
import { $, el } from "./dom.js";
import { highlightSql } from "./sql.js";

const MAX_SHOWN_ROWS = 500; // a browser table of 100,000 rows helps nobody; --json has them all

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

// Chart or table: the chart first when the result has one, a toggle back to the table.
export function showView(view) {
  const chart = view === "chart" && !$("view-toggle").hidden;
  $("chart").hidden = !chart;
  $("result").hidden = chart;
  $("show-chart").setAttribute("aria-pressed", String(chart));
  $("show-table").setAttribute("aria-pressed", String(!chart));
}

export function renderResult(result) {
  renderTable(result);
  const charted = drawChart(result);
  $("view-toggle").hidden = !charted;
  showView(charted ? "chart" : "table");
}

export function seconds(value) {
  return `${Number(value).toFixed(1)} s`;
}

export function summaryText(answer) {
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

export function renderCandidates(list, candidates, title) {
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

export function showSql(sql) {
  const code = $("sql").querySelector("code");
  if (sql) highlightSql(code, sql);
  else code.textContent = "(the model wrote no SQL that could be used)";
  $("sql-edit").value = sql ?? "";
}

// The explanation is made by the server from the SQL's parse: one sentence per line, a
// subquery's sentences indented by two spaces under their heading.
export function showExplanation(text) {
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
export function showConfidence(confidence) {
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

// A new question: nothing of the answer before it (its SQL, table, chart, explanation, badge,
// summary, candidates) stays on screen while the model works on this one.
export function clearAnswer() {
  $("answer").hidden = true;
  $("follow-up").hidden = true;
  $("follow-up").textContent = "";
  $("sql").querySelector("code").replaceChildren();
  $("sql-edit").value = "";
  showExplanation("");
  $("summary").textContent = "";
  showConfidence(null);
  $("result").replaceChildren();
  $("chart").replaceChildren();
  $("view-toggle").hidden = true;
  showView("table");
  $("candidates").replaceChildren();
  $("candidates-box").querySelector("summary").textContent = "Candidates";
}

export function showError(error) {
  const box = $("error");
  box.replaceChildren(el("strong", { textContent: error.message }));
  if (error.hint) box.append(el("div", { textContent: error.hint }));
  box.hidden = false;
}

export function setStatus(text) {
  $("status").textContent = text;
}
