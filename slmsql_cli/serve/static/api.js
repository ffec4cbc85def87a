// Talking to the server: its /v1 API (the same JSON as `slmsql ask --json`), the bearer token
// kept in this tab, errors as ApiError, and the server-sent events of a streamed answer.

export const TOKEN_KEY = "slmsql.token";

export class ApiError extends Error {
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

export async function api(path, { method = "GET", body, signal, accept = "application/json" } = {}) {
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
export async function readEvents(response, onEvent) {
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
