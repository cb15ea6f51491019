// The Connected Apps page: one team member's view of ferry's integrations,
// their connections, and what needs attention. It speaks ferry's own API
// with the API key the user enters; nothing else is loaded or contacted.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const KEY = "ferry.apiKey";

function key() { return sessionStorage.getItem(KEY); }

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: Object.assign({ Authorization: "Bearer " + key() },
                           body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  const data = await res.json();
  if (!res.ok) {
    const err = new Error(data.error ? data.error.message : res.statusText);
    err.code = data.error && data.error.code;
    err.status = res.status;
    throw err;
  }
  return data;
}

function say(text, isError) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "never"; }

// A connection as people know it: the label they gave it, with the account
// the provider's check found.
function connectionName(c) {
  if (c.label && c.account_label && c.label !== c.account_label) return `${c.label} (${c.account_label})`;
  return c.account_label || c.label || c.id;
}

function connectionItem(c, onDelete) {
  const li = document.createElement("li");
  const status = document.createElement("span");
  const rotationDue = c.rotation && c.rotation.overdue;
  status.className = "badge" + (c.status !== "active" ? " bad" : rotationDue ? " warn" : "");
  status.textContent = c.status !== "active" ? c.status.replace("_", " ") : rotationDue ? "rotation due" : "active";
  li.append(status, " ", connectionName(c),
            document.createElement("br"));
  const meta = document.createElement("span");
  meta.className = "muted";
  meta.textContent = `${c.scope === "team" ? "team" : "yours"} · used ${c.usage_count}× · last used ${when(c.last_used_at)}` +
    (c.rotation ? ` · rotate by ${when(c.rotation.due_at)}` : "") + (c.last_error ? ` · ${c.last_error}` : "");
  const del = document.createElement("button");
  del.className = "link";
  del.textContent = "Disconnect";
  del.addEventListener("click", () => onDelete(c));
  li.append(meta, " ", del);
  return li;
}

function card(integration, conns, me, refresh) {
  const node = $("#card").content.firstElementChild.cloneNode(true);
  $(".name", node).textContent = integration.name;
  $(".meta", node).textContent = `${integration.category} · ${integration.method} · ${integration.tools_count} ` +
    (integration.tools_count === 1 ? "tool" : "tools");
  $(".description", node).textContent = integration.description;
  const list = $(".connections", node);
  for (const c of conns) {
    list.append(connectionItem(c, async (conn) => {
      if (!confirm(`Disconnect ${integration.name}: ${connectionName(conn)}? Its credentials are destroyed.`)) return;
      try { await api("DELETE", "/v1/connections/" + encodeURIComponent(conn.id)); say("Disconnected."); refresh(); }
      catch (e) { say(e.message, true); }
    }));
  }
  const connect = integration.connect || { credentials: [], settings: [] };
  if (integration.method === "none") {
    $(".connect", node).remove();
    $(".meta", node).textContent += " · no credentials needed";
    return node;
  }
  if (connect.oauth_start) {
    // Signing in at the provider: ferry makes the link (state, PKCE), the
    // browser goes there and comes back to /#connected=<slug>.
    const form = $(".connect-form", node);
    $(".fields", node).remove();
    $("button[type=submit]", form).textContent = `Sign in with ${integration.name}`;
    if (connect.instructions) $(".instructions", node).textContent = connect.instructions;
    if (me && me.role === "admin") $(".team-scope", node).hidden = false;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams({ format: "json", scope: form.elements.scope_team.checked ? "team" : "user" });
      if (form.elements.label.value) q.set("label", form.elements.label.value);
      await signIn(connect.oauth_start + "?" + q);
    });
    for (const c of conns) {
      if (c.status !== "reconnect_required") continue;
      const again = document.createElement("button");
      again.className = "reconnect";
      again.textContent = `Reconnect ${connectionName(c)}`;
      again.addEventListener("click", () => signIn(connect.oauth_start + "?" +
        new URLSearchParams({ format: "json", connection_id: c.id })));
      list.append(again);
    }
    return node;
  }
  const fields = $(".fields", node);
  for (const name of connect.credentials) fields.append(input(name, true));
  for (const name of connect.settings) fields.append(input(name, false));
  if (connect.instructions) $(".instructions", node).textContent = connect.instructions;
  if (me && me.role === "admin") $(".team-scope", node).hidden = false;
  $(".connect-form", node).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target, credentials = {}, settings = {};
    for (const name of connect.credentials) credentials[name] = form.elements["c_" + name].value;
    for (const name of connect.settings) settings[name] = form.elements["s_" + name].value;
    try {
      await api("POST", "/v1/connections", {
        integration: integration.slug, credentials, settings,
        scope: form.elements.scope_team.checked ? "team" : "user",
        label: form.elements.label.value || undefined,
      });
      form.reset();
      say(`${integration.name} connected.`);
      refresh();
    } catch (e) { say(e.message, true); }
  });
  return node;

  function input(name, secret) {
    const label = document.createElement("label");
    const field = document.createElement("input");
    field.name = (secret ? "c_" : "s_") + name;
    field.type = secret ? "password" : "text";
    field.autocomplete = "off";
    field.required = true;
    label.append(name.replace(/_/g, " "), " ", field);
    return label;
  }
}

let justConnected = null;   // the integration a provider's sign-in just connected

// Asks ferry for a sign-in link, then goes there.
async function signIn(start) {
  try {
    const { authorize_url } = await api("GET", start);
    location.assign(authorize_url);
  } catch (e) { say(e.message, true); }
}

async function load() {
  const [me, integrations, connections] = await Promise.all([
    api("GET", "/v1/me"), api("GET", "/v1/integrations"), api("GET", "/v1/connections")]);
  $("#who").textContent = `${me.user} · ${me.team} · ${me.role}`;
  if (justConnected) {
    const i = integrations.integrations.find((x) => x.slug === justConnected);
    say(`${i ? i.name : justConnected} connected.`);
    justConnected = null;
  }
  $("#signout").hidden = false;
  const byIntegration = {};
  for (const c of connections.connections) (byIntegration[c.integration] ||= []).push(c);
  const connected = $("#connected"), available = $("#available"), attention = $("#attention-list");
  connected.replaceChildren(); available.replaceChildren(); attention.replaceChildren();
  for (const i of integrations.integrations) {
    const conns = byIntegration[i.slug] || [];
    (conns.length ? connected : available).append(card(i, conns, me, load));
    for (const c of conns) {
      if (c.status !== "active" || (c.rotation && c.rotation.overdue)) {
        const li = document.createElement("li");
        li.textContent = `${i.name}: ${c.status !== "active" ? c.status.replace("_", " ") : "credential due for rotation since " + when(c.rotation.due_at)}`;
        attention.append(li);
      }
    }
  }
  $("#attention").hidden = attention.children.length === 0;
}

function start() {
  const form = $("#signin");
  // Back from a provider's sign-in page.
  const back = /^#connected=([a-z0-9_]+)$/.exec(location.hash);
  if (back) {
    history.replaceState(null, "", location.pathname);
    justConnected = back[1];
  }
  if (!key()) { form.hidden = false; return; }
  form.hidden = true;
  load().catch((e) => {
    if (e.status === 401) { sessionStorage.removeItem(KEY); form.hidden = false; }
    say(e.message, true);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("#key").value.trim());
    $("#key").value = "";
    say("");
    start();
  });
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
  start();
});
