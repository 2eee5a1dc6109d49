// The agentguild HTTP API as the web UI uses it: JSON calls and streamed runs (SSE).

const TOKEN_KEY = "agentguild.token";

/** An API failure: `status` (0 when the server could not be reached), `type`, `message`. */
export class ApiError extends Error {
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  return h;
}

async function errorOf(response) {
  let type = "http_error";
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      type = body.error.type || type;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's error page): the status line says enough.
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, type, message, retry === null ? null : Number(retry));
}

async function send(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "Cannot reach the server. Check your connection.");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** A JSON API call; resolves to the parsed body (null for 204). */
export async function call(method, path, body) {
  const response = await send(method, path, body);
  return response.status === 204 ? null : response.json();
}

/** Every item of a paginated listing, following `next_cursor` (at most `maxPages`). */
export async function listAll(path, limit, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page++) {
    const sep = path.includes("?") ? "&" : "?";
    const query = `${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const body = await call("GET", path + query);
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}

export async function login(username, password) {
  session.token = null;
  const body = await call("POST", "/auth/token", { username, password });
  session.token = body.access_token;
  return body;
}

/**
 * Start a streamed run and call `onEvent(type, data, id)` for each event until the stream
 * ends. EventSource cannot send an Authorization header, so this reads the SSE body of a
 * fetch. Aborting `signal` closes the connection, which cancels the run on the server.
 */
export async function streamRun(conversationId, body, onEvent, signal) {
  const path = `/api/conversations/${encodeURIComponent(conversationId)}/runs`;
  const response = await send("POST", path, { ...body, mode: "stream" }, signal);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = frameEnd(buffer)) !== null) {
      const frame = buffer.slice(0, end.index);
      buffer = buffer.slice(end.index + end.length);
      dispatch(frame, onEvent);
    }
  }
  if (buffer.trim()) dispatch(buffer, onEvent);
}

function frameEnd(buffer) {
  const match = /\r?\n\r?\n/.exec(buffer);
  return match ? { index: match.index, length: match[0].length } : null;
}

function dispatch(frame, onEvent) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue; // comments are keep-alive pings
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (!data.length) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return; // a malformed frame is skipped, not fatal
  }
  onEvent(type, parsed, id);
}
