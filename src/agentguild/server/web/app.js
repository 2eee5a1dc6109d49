// The agentguild web UI: log in, pick an agent, chat with it, watch its replies stream in.
// Model output is only ever set as text (textContent / text nodes), never parsed as HTML.

import { ApiError, call, listAll, login, session, streamRun } from "./api.js";

const AGENT_KEY = "agentguild.agent";
const TITLE_CHARS = 60;

const $ = (id) => document.getElementById(id);
const ui = {
  loginView: $("login-view"),
  loginForm: $("login-form"),
  loginError: $("login-error"),
  loginSubmit: $("login-submit"),
  appView: $("app-view"),
  sidebarToggle: $("sidebar-toggle"),
  agentSelect: $("agent-select"),
  userName: $("user-name"),
  logout: $("logout-button"),
  newConversation: $("new-conversation"),
  conversationList: $("conversation-list"),
  conversationEmpty: $("conversation-empty"),
  chatTitle: $("chat-title"),
  runStatus: $("run-status"),
  banner: $("banner"),
  bannerText: $("banner-text"),
  bannerClose: $("banner-close"),
  transcript: $("transcript"),
  composer: $("composer"),
  input: $("message-input"),
  send: $("send-button"),
  stop: $("stop-button"),
};

const state = {
  me: null,
  agents: [],
  conversations: [],
  moreConversations: null, // next_cursor of the conversation list
  current: null, // the open conversation; null for a new, not yet created one
  view: 0, // counts navigations, so a conversation that loads late is not shown
  loading: false, // a conversation is loading: sending waits for it
  sending: false, // a message is being sent (its run may not have started yet)
  run: null, // the run in progress: {controller, runId, bubble, stopping, completed, failed, detached}
  tools: new Map(), // tool call id -> its <details> block, in the open transcript
};

// ---- small DOM helpers -------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function textOf(content) {
  if (content == null) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part.text === "string" ? part.text : "")).join("");
  }
  return JSON.stringify(content);
}

function prettyJson(raw) {
  try {
    return JSON.stringify(JSON.parse(raw), null, 2);
  } catch {
    return String(raw ?? "");
  }
}

function titleFrom(text) {
  const line = text.split("\n").find((l) => l.trim()) || text;
  const title = line.replace(/\s+/g, " ").trim();
  return title.length > TITLE_CHARS ? `${title.slice(0, TITLE_CHARS - 1)}…` : title;
}

function shortDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { month: "short", day: "numeric" });
}

function describe(error) {
  if (!(error instanceof ApiError)) return error?.message || String(error);
  if (error.status === 429) {
    const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter)} s.` : "";
    return `Too many requests: ${error.message.replace(/\.$/, "")}.${wait}`;
  }
  if (error.status === 0) return error.message;
  return `${error.message} (${error.status} ${error.type})`;
}

// ---- views ---------------------------------------------------------------------------

function showLogin(message = "") {
  stopRun(true);
  ui.appView.hidden = true;
  ui.loginView.hidden = false;
  ui.loginError.textContent = message;
  $("login-password").value = "";
  $("login-username").focus();
}

function showBanner(message) {
  ui.bannerText.textContent = message;
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
  ui.bannerText.textContent = "";
}

/** Handle a failed API call: an expired session goes back to the login form. */
function fail(error, context) {
  if (error instanceof ApiError && error.status === 401) {
    session.token = null;
    showLogin("Your session has expired. Please log in again.");
    return;
  }
  showBanner(context ? `${context}: ${describe(error)}` : describe(error));
}

async function showApp() {
  const me = await call("GET", "/api/me");
  state.me = me;
  ui.userName.textContent = me.username || me.role;
  ui.loginView.hidden = true;
  ui.appView.hidden = false;
  const canRun = me.permissions.includes("agents:execute");
  ui.input.disabled = !canRun;
  ui.send.disabled = !canRun;
  if (!canRun) ui.input.placeholder = `Your role (${me.role}) can read conversations but not run agents.`;
  await Promise.all([loadAgents(), loadConversations()]);
  await route();
  if (!ui.input.disabled) ui.input.focus();
}

// ---- agents --------------------------------------------------------------------------

async function loadAgents() {
  try {
    state.agents = await listAll("/api/agents", 200, 5);
  } catch (error) {
    fail(error, "Could not load the agents");
    return;
  }
  ui.agentSelect.replaceChildren();
  for (const agent of state.agents) {
    const option = el("option", "", agent.name);
    option.value = agent.id;
    if (agent.description) option.title = agent.description;
    ui.agentSelect.append(option);
  }
  if (!state.agents.length) {
    ui.agentSelect.append(el("option", "", "No agents"));
    ui.agentSelect.disabled = true;
    showBanner("There are no agents yet. Create one with POST /api/agents (see /docs).");
    return;
  }
  ui.agentSelect.disabled = false;
  const preferred = localStorage.getItem(AGENT_KEY) || "assistant";
  const match = state.agents.find((a) => a.name === preferred) || state.agents[0];
  ui.agentSelect.value = match.id;
}

function agentName(agentId) {
  return state.agents.find((a) => a.id === agentId)?.name || "";
}

// ---- conversation list ---------------------------------------------------------------

async function loadConversations(append = false) {
  const cursor = append && state.moreConversations;
  const query = `/api/conversations?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  try {
    const page = await call("GET", query);
    state.conversations = append ? [...state.conversations, ...page.items] : page.items;
    state.moreConversations = page.next_cursor;
  } catch (error) {
    fail(error, "Could not load the conversations");
    return;
  }
  renderConversations();
}

function renderConversations() {
  const items = state.conversations.map((conversation) => {
    const button = el("button", "conversation");
    button.type = "button";
    button.dataset.id = conversation.id;
    button.append(
      el("span", "conversation-title", conversation.title || "Untitled"),
      el("span", "conversation-date", shortDate(conversation.updated_at || conversation.created_at)),
    );
    if (state.current && state.current.id === conversation.id) button.setAttribute("aria-current", "page");
    const item = el("li");
    item.append(button);
    return item;
  });
  if (state.moreConversations) {
    const more = el("button", "ghost wide", "Show older conversations");
    more.type = "button";
    more.addEventListener("click", () => loadConversations(true));
    const item = el("li");
    item.append(more);
    items.push(item);
  }
  ui.conversationList.replaceChildren(...items);
  ui.conversationEmpty.hidden = state.conversations.length > 0;
}

function conversationHash(id) {
  return id ? `#/c/${encodeURIComponent(id)}` : "#/";
}

function routedId() {
  const match = /^#\/c\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function route() {
  const id = routedId();
  if (id === (state.current?.id ?? null) && id !== null) return;
  stopRun(true);
  if (id) await openConversation(id);
  else startNewConversation();
}

function closeSidebar() {
  ui.appView.classList.remove("sidebar-open");
  ui.sidebarToggle.setAttribute("aria-expanded", "false");
}

// ---- transcript ----------------------------------------------------------------------

function clearTranscript(placeholder) {
  state.tools = new Map();
  const empty = el("p", "empty-state", placeholder);
  empty.id = "transcript-empty";
  ui.transcript.replaceChildren(empty);
}

function nearBottom() {
  const t = ui.transcript;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 80;
}

function add(node) {
  const stick = nearBottom();
  $("transcript-empty")?.remove();
  ui.transcript.append(node);
  if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return node;
}

function addBubble(role, text, author) {
  const article = el("article", `message ${role}`);
  article.dataset.role = role;
  const label = role === "user" ? "You" : author || agentName(ui.agentSelect.value) || "Agent";
  article.append(el("div", "message-author", label));
  const body = el("div", "message-text");
  body.append(document.createTextNode(text));
  article.append(body);
  return add(article);
}

function addNote(text, kind = "note") {
  const note = el("p", `note ${kind}`, text);
  if (kind === "error") note.setAttribute("role", "alert");
  return add(note);
}

function toolBlock(callId, name, args) {
  let block = state.tools.get(callId);
  if (!block) {
    block = el("details", "tool");
    block.dataset.callId = callId;
    block.dataset.status = "running";
    const summary = el("summary");
    summary.append(
      el("span", "tool-kind", "Tool"),
      el("span", "tool-name", name || "tool"),
      el("span", "tool-state", "running…"),
    );
    const argsPre = el("pre", "tool-arguments", prettyJson(args));
    const resultPre = el("pre", "tool-result", "");
    block.append(
      summary,
      el("div", "tool-label", "Arguments"),
      argsPre,
      el("div", "tool-label", "Result"),
      resultPre,
    );
    state.tools.set(callId, block);
    add(block);
  } else if (args && !block.querySelector(".tool-arguments").textContent) {
    block.querySelector(".tool-arguments").textContent = prettyJson(args);
  }
  return block;
}

function toolResult(callId, name, content, isError, durationMs) {
  const block = toolBlock(callId, name, "");
  block.querySelector(".tool-result").textContent = content;
  // The stored tool message follows its tool_result event: it adds nothing to the state.
  if (isError === undefined && block.dataset.status !== "running") return;
  if (isError !== undefined) block.dataset.status = isError ? "error" : "done";
  else if (block.dataset.status === "running") block.dataset.status = "done";
  const status = block.dataset.status === "error" ? "failed" : "done";
  let took = "";
  if (typeof durationMs === "number") {
    took = ` · ${durationMs < 10 ? durationMs.toFixed(1) : Math.round(durationMs)} ms`;
  }
  block.querySelector(".tool-state").textContent = status + took;
}

function renderHistory(messages) {
  for (const message of messages) {
    const text = textOf(message.content);
    if (message.role === "user") addBubble("user", text);
    else if (message.role === "assistant") {
      if (text) addBubble("assistant", text, message.name || agentName(state.current?.agent_id));
      for (const call of message.tool_calls || []) {
        toolBlock(call.id, call.function?.name, call.function?.arguments);
      }
    } else if (message.role === "tool") toolResult(message.tool_call_id, message.name, text);
    else if (text) addNote(`${message.role}: ${text}`);
  }
}

function startNewConversation() {
  state.view += 1;
  state.loading = false;
  state.current = null;
  ui.chatTitle.textContent = "New conversation";
  clearTranscript("Send a message to start the conversation.");
  renderConversations();
  hideBanner();
}

async function openConversation(id) {
  const view = ++state.view;
  state.loading = true;
  hideBanner();
  clearTranscript("Loading…");
  ui.chatTitle.textContent = "Loading…";
  try {
    const [conversation, messages] = await Promise.all([
      call("GET", `/api/conversations/${encodeURIComponent(id)}`),
      listAll(`/api/conversations/${encodeURIComponent(id)}/messages`, 500),
    ]);
    if (view !== state.view) return; // the user went elsewhere meanwhile
    state.loading = false;
    state.current = conversation;
    ui.chatTitle.textContent = conversation.title || "Untitled";
    if (state.agents.some((a) => a.id === conversation.agent_id)) {
      ui.agentSelect.value = conversation.agent_id;
    }
    clearTranscript("No messages yet.");
    renderHistory(messages);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  } catch (error) {
    if (view !== state.view) return;
    state.loading = false;
    state.current = null;
    clearTranscript("Send a message to start the conversation.");
    ui.chatTitle.textContent = "New conversation";
    fail(error, "Could not open the conversation");
  }
  renderConversations();
}

// ---- runs ----------------------------------------------------------------------------

function setRunning(running) {
  ui.send.disabled = running;
  ui.stop.hidden = !running;
  ui.stop.disabled = !running;
  ui.transcript.setAttribute("aria-busy", running ? "true" : "false");
  ui.runStatus.textContent = running ? "Agent is replying…" : "";
}

function finishBubble(run) {
  const bubble = run.bubble;
  run.bubble = null;
  if (!bubble) return;
  bubble.dataset.streaming = "false";
  if (!bubble.querySelector(".message-text").textContent) bubble.remove();
}

function appendDelta(run, text, agent) {
  if (run.bubble && run.bubble.dataset.agent !== agent) finishBubble(run);
  if (!run.bubble) {
    run.bubble = addBubble("assistant", "", agent);
    run.bubble.dataset.agent = agent;
    run.bubble.dataset.streaming = "true";
    run.bubble.dataset.deltas = "0";
    if (run.runId) run.bubble.dataset.runId = run.runId;
  }
  const stick = nearBottom();
  run.bubble.querySelector(".message-text").firstChild.appendData(text);
  run.bubble.dataset.deltas = String(Number(run.bubble.dataset.deltas) + 1);
  if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function onMessage(run, message, agent) {
  if (message.role === "assistant") {
    const text = textOf(message.content);
    if (run.bubble) {
      // The stored message is authoritative: it replaces the streamed pieces.
      if (text) run.bubble.querySelector(".message-text").firstChild.data = text;
    } else if (text) {
      run.bubble = addBubble("assistant", text, agent);
    }
    finishBubble(run);
    for (const call of message.tool_calls || []) {
      toolBlock(call.id, call.function?.name, call.function?.arguments);
    }
  } else if (message.role === "tool") {
    toolResult(message.tool_call_id, message.name, textOf(message.content));
  }
}

function onRunEvent(run, type, data) {
  if (run.detached) return;
  switch (type) {
    case "run_started":
      run.runId = data.run_id;
      break;
    case "text_delta":
      appendDelta(run, data.text, data.agent);
      break;
    case "message":
      onMessage(run, data.message, data.agent);
      break;
    case "tool_call":
      finishBubble(run);
      toolBlock(data.call.id, data.call.name, data.call.arguments);
      break;
    case "tool_result":
      toolResult(data.call_id, data.name, data.content, data.is_error, data.duration_ms);
      break;
    case "error":
      run.failed = true;
      finishBubble(run);
      addNote(`The run failed: ${data.message} (${data.type})`, "error");
      break;
    case "run_completed":
      run.completed = data;
      finishBubble(run);
      if (data.status === "cancelled") addNote("Stopped.");
      else if (data.status !== "completed" && !run.failed) {
        addNote(`The run ended: ${data.status}.`, "error");
      } else if (data.stop_reason === "max_turns") {
        addNote("The agent stopped at its turn limit.");
      }
      break;
    case "handoff":
      finishBubble(run);
      addNote(`${data.source} handed the conversation to ${data.target}.`);
      break;
    default:
      break; // other team and task events are not shown
  }
}

/** Stop the run in progress; `detach` also stops rendering it (leaving the conversation). */
function stopRun(detach = false) {
  const run = state.run;
  if (!run) return;
  if (detach) run.detached = true;
  run.stopping = true;
  ui.stop.disabled = true;
  ui.runStatus.textContent = "Stopping…";
  // Closing the stream cancels the run on the server; cancel explicitly too, so a run
  // that is also followed elsewhere stops as well.
  if (run.runId) call("POST", `/api/runs/${encodeURIComponent(run.runId)}/cancel`).catch(() => {});
  run.controller.abort();
}

async function runTurn(conversation, text, userBubble) {
  const run = {
    controller: new AbortController(),
    runId: null,
    bubble: null,
    stopping: false,
    completed: null,
    failed: false,
    detached: false,
  };
  state.run = run;
  setRunning(true);
  const body = { input: text, agent_id: ui.agentSelect.value || undefined };
  try {
    await streamRun(conversation.id, body, (type, data) => onRunEvent(run, type, data), run.controller.signal);
    if (!run.completed && !run.detached) {
      addNote("The connection closed before the run finished.", "error");
    }
  } catch (error) {
    if (run.detached) return;
    if (error.name === "AbortError") {
      if (!run.completed) addNote("Stopped.");
    } else if (error instanceof ApiError && error.status === 401) {
      fail(error);
    } else {
      const lost = error instanceof TypeError ? "The connection to the server was lost." : describe(error);
      addNote(run.runId ? lost : `Not sent. ${lost}`, "error");
      if (!run.runId) {
        userBubble.classList.add("failed");
        if (!ui.input.value) ui.input.value = text;
      }
    }
  } finally {
    if (state.run === run) {
      state.run = null;
      setRunning(false);
    }
    if (!run.detached) finishBubble(run);
  }
  if (!run.detached && session.token) await loadConversations();
}

async function ensureConversation(text) {
  const title = titleFrom(text);
  if (!state.current) {
    const agentId = ui.agentSelect.value || undefined;
    const conversation = await call("POST", "/api/conversations", { agent: agentId, title });
    state.current = conversation;
    state.conversations = [conversation, ...state.conversations];
    history.replaceState(null, "", conversationHash(conversation.id));
  } else if (!state.current.title) {
    state.current = await call("PATCH", `/api/conversations/${encodeURIComponent(state.current.id)}`, {
      title,
    });
  }
  ui.chatTitle.textContent = state.current.title || "Untitled";
  renderConversations();
  return state.current;
}

async function sendMessage() {
  const text = ui.input.value;
  if (!text.trim() || state.sending || state.loading || ui.input.disabled) return;
  state.sending = true; // covers creating the conversation, before the run starts
  hideBanner();
  ui.send.disabled = true;
  try {
    let conversation;
    try {
      conversation = await ensureConversation(text);
    } catch (error) {
      ui.send.disabled = false;
      fail(error, "Could not start the conversation");
      return;
    }
    ui.input.value = "";
    const bubble = addBubble("user", text);
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    await runTurn(conversation, text, bubble);
  } finally {
    state.sending = false;
  }
}

// ---- wiring --------------------------------------------------------------------------

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    ui.loginError.textContent = "Enter your username and password.";
    return;
  }
  ui.loginSubmit.disabled = true;
  ui.loginError.textContent = "";
  try {
    await login(username, password);
    await showApp();
  } catch (error) {
    session.token = null;
    ui.loginError.textContent =
      error instanceof ApiError && error.status === 401
        ? "Wrong username or password."
        : describe(error);
  } finally {
    ui.loginSubmit.disabled = false;
  }
});

ui.logout.addEventListener("click", () => {
  session.token = null;
  state.current = null;
  state.conversations = [];
  history.replaceState(null, "", location.pathname);
  showLogin();
});

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  sendMessage();
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendMessage();
  }
});

ui.stop.addEventListener("click", () => stopRun());

ui.newConversation.addEventListener("click", () => {
  closeSidebar();
  if (routedId() === null && !state.current) {
    stopRun(true);
    startNewConversation();
  } else location.hash = "#/";
  ui.input.focus();
});

ui.conversationList.addEventListener("click", (event) => {
  const button = event.target.closest("button.conversation");
  if (!button) return;
  closeSidebar();
  location.hash = conversationHash(button.dataset.id);
});

ui.agentSelect.addEventListener("change", () => {
  const name = agentName(ui.agentSelect.value);
  if (name) localStorage.setItem(AGENT_KEY, name);
});

ui.sidebarToggle.addEventListener("click", () => {
  const open = ui.appView.classList.toggle("sidebar-open");
  ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) ui.newConversation.focus();
});

// A click on the backdrop (the app element's ::after, behind the open drawer) closes it.
ui.appView.addEventListener("click", (event) => {
  if (event.target === ui.appView) closeSidebar();
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && ui.appView.classList.contains("sidebar-open")) {
    closeSidebar();
    ui.sidebarToggle.focus();
  }
});

ui.bannerClose.addEventListener("click", hideBanner);
window.addEventListener("hashchange", () => {
  if (!ui.appView.hidden) route();
});

async function boot() {
  if (!session.token) {
    showLogin();
    return;
  }
  try {
    await showApp();
  } catch (error) {
    session.token = null;
    showLogin(error instanceof ApiError && error.status === 401 ? "" : describe(error));
  }
}

boot();
