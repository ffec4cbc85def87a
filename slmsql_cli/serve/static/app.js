// slmsql's one-page app: the flow of a question (ask, cancel, edit and run the SQL, keep the
// answer), the database list and schema, and the token form. No framework and no build step: the
// browser loads these ES modules as they are (api.js, render.js, thread.js, chart.js, sql.js, dom.js).

import { ApiError, TOKEN_KEY, api, readEvents } from "./api.js";
import { $, el } from "./dom.js";
import {
  clearAnswer, renderCandidates, renderResult, seconds, setStatus, showConfidence, showError, showExplanation,
  showSql, showView, summaryText,
} from "./render.js";
import { addTurn, earlierTurns, followUpText, newThread, replaceLastSql } from "./thread.js";

// ---- the flow --------------------------------------------------------------------------------

let running = null; // the AbortController of the question being answered
let answeredDatabase = ""; // the database the shown answer is about: an edited SQL runs there
let answeredQuestion = ""; // the question it answers: "Keep this answer" saves it with the SQL shown
let shown = null; // {question, sql, evidence} that "Keep this answer" would save

function showAnswer(answer) {
  $("answer").hidden = false;
  $("answer-title").textContent = "Answer";
  const followUp = followUpText(answer.context);  // which earlier questions the model read
  $("follow-up").textContent = followUp;
  $("follow-up").hidden = !followUp;
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
  clearAnswer();  // the answer before this one is not this question's
  shown = null;
  setBusy(true);
  setStatus("Waiting for the model…");
  const started = performance.now();
  try {
    const response = await api("/v1/ask", {
      method: "POST", signal, accept: "text/event-stream, application/json",
      body: { database, question, stream: true, turns: earlierTurns() },
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
    addTurn(question, answer);
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
    $("follow-up").hidden = true;
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
    else if (answeredQuestion) replaceLastSql(sql);  // the next question follows the SQL shown
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

// "New question": the thread is forgotten, and the next question is asked alone.
function startOver() {
  running?.abort();
  newThread();
  answeredQuestion = "";
  $("answer").hidden = true;
  $("error").hidden = true;
  setStatus("");
  $("question").value = "";
  $("question").focus();
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
  $("new-thread").addEventListener("click", startOver);
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
  $("database").addEventListener("change", startOver);  // earlier turns are about the other one
  loadDatabases();
}

start();
