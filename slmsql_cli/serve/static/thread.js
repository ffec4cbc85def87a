// The conversation on the page: each question follows the ones answered before it on the same
// database (the server writes them into the model's prompt, conversation.py), until "New
// question" or another database starts over. The page keeps the turns itself and sends them with
// each question (/v1/ask "turns"), so a server restart loses nothing.

import { $, el } from "./dom.js";

export const MAX_TURNS = 8; // conversation.MAX_TURNS: the server takes at most these

let turns = []; // {question, sql, followUp} oldest first; sql null when the question had no answer

// What /v1/ask takes: the latest turns, questions and their SQL.
export function earlierTurns() {
  return turns.slice(-MAX_TURNS).map(({ question, sql }) => ({ question, sql }));
}

// An answered question joins the thread; its SQL only when it gave an answer (as `chat` does).
export function addTurn(question, answer) {
  const followUp = (answer.context?.turns?.length ?? 0) > 0;
  turns.push({ question, sql: answer.error ? null : answer.sql, followUp });
  showThread();
}

// The user's own edit of the last answer's SQL, once it ran: the next question follows that.
export function replaceLastSql(sql) {
  if (turns.length) turns[turns.length - 1].sql = sql;
  showThread();
}

export function newThread() {
  turns = [];
  showThread();
}

// "Follow-up of 2 earlier questions" over an answer that was one, else nothing.
export function followUpText(context) {
  const used = context?.turns?.length ?? 0;
  if (!used) return "";
  let text = `Follow-up of ${used} earlier question${used === 1 ? "" : "s"}`;
  if (context.dropped) text += ` (the oldest ${context.dropped} left out to fit the prompt)`;
  return `${text}.`;
}

function showThread() {
  const list = $("thread");
  list.replaceChildren(...turns.map((turn) => el(
    "li",
    { className: turn.followUp ? "follow-up" : "" },
    el("span", { className: "question", textContent: turn.question }),
    turn.followUp ? el("span", { className: "mark", textContent: "follow-up" }) : "",
    el("code", { className: "turn-sql", textContent: turn.sql ?? "(no answer)" }),
  )));
  $("thread-box").hidden = turns.length === 0;
}
