// The console's pages: sign-in, my devices, one device. Routes are the URL's fragment (#/devices, #/device/DID),
// so that the server serves one page and a reload keeps the place.

import { Api, ApiError, clearSession, loadSession, request, signIn } from "./api.js";
import { clear, h, timeText } from "./dom.js";
import { datapointCard, datapointsOf, schemaTable, valueText } from "./datapoints.js";
import { DeviceLog } from "./devicelog.js";
import { Realtime } from "./realtime.js";

const view = document.getElementById("view");
let session = loadSession();
let api = session ? new Api(session) : null;
let realtime = null;
let page = null; // the page shown: {onRealtime(message), onLive(state)}
let shown = 0; // counts routings: a page still loading when another was asked for does not draw itself

function startRealtime() {
  realtime = new Realtime(session, {
    onMessage: (message) => page && page.onRealtime && page.onRealtime(message),
    onState: (state) => {
      const live = document.getElementById("live");
      live.dataset.state = state;
      live.textContent = { live: "live", connecting: "connecting", refused: "refused", offline: "offline" }[state];
      if (page && page.onLive) page.onLive(state);
    },
  });
  realtime.start();
}

function showWho() {
  const who = document.getElementById("who");
  who.hidden = !session;
  document.getElementById("who-name").textContent = session ? session.username : "";
}

document.getElementById("sign-out").addEventListener("click", () => {
  if (realtime) realtime.stop();
  realtime = null;
  clearSession();
  session = api = null;
  showWho();
  location.hash = "#/signin";
});

function onlineBadge(online) {
  return h("span", { class: `badge ${online ? "on" : "off"}`, "data-online": String(online) }, online ? "online" : "offline");
}

function setOnline(badge, online) {
  badge.className = `badge ${online ? "on" : "off"}`;
  badge.dataset.online = String(online);
  badge.textContent = online ? "online" : "offline";
}

function seenText(presence) {
  if (presence.is_online) return "online now";
  return presence.last_seen ? timeText(presence.last_seen) : "never";
}

function failure(error) {
  // A token the server no longer takes (expired, user disabled): back to the sign-in.
  if (error instanceof ApiError && error.code === 9004) {
    clearSession();
    session = api = null;
    if (realtime) realtime.stop();
    realtime = null;
    location.hash = "#/signin";
  }
  return h("p", { class: "notice error", role: "alert" }, error.message);
}

// ---- sign-in ----------------------------------------------------------------------------------------------------

async function signInPage() {
  const apps = h("datalist", { id: "apps" });
  const message = h("p", { class: "notice error", role: "alert", hidden: true });
  const appid = h("input", { name: "appid", id: "appid", list: "apps", required: true, autocomplete: "off", spellcheck: "false" });
  const username = h("input", { name: "username", id: "username", required: true, autocomplete: "username" });
  const password = h("input", { name: "password", id: "password", type: "password", required: true, autocomplete: "current-password" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "panel signin", autocomplete: "on" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an app user of this cloud, as an app signs in (POST /app/login)."),
    h("label", { for: "appid" }, "App id"),
    appid,
    apps,
    h("label", { for: "username" }, "Username"),
    username,
    h("label", { for: "password" }, "Password"),
    password,
    message,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.hidden = true;
    try {
      session = await signIn(appid.value.trim(), username.value, password.value);
      api = new Api(session);
      showWho();
      startRealtime();
      location.hash = "#/devices";
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  clear(view, form);
  try {
    const listed = await request("GET", "/console/api/apps");
    for (const app of listed.apps) apps.append(h("option", { value: app.appid }, app.name));
    if (listed.apps.length === 1 && !appid.value) appid.value = listed.apps[0].appid;
  } catch {
    // no list: the app id is typed
  }
  (appid.value ? username : appid).focus();
  return {};
}

// ---- my devices -------------------------------------------------------------------------------------------------

async function devicesPage(routing) {
  const list = h("div", { class: "devices" }, h("p", { class: "muted" }, "Loading…"));
  const message = h("p", { class: "notice", role: "status", hidden: true });
  const did = h("input", { name: "did", placeholder: "did", required: true, spellcheck: "false", autocomplete: "off", "aria-label": "did" });
  const passcode = h("input", { name: "passcode", placeholder: "passcode", required: true, spellcheck: "false", autocomplete: "off", "aria-label": "passcode" });
  const bindForm = h("form", { class: "bind" }, did, passcode, h("button", { type: "submit", class: "primary" }, "Bind"));
  const badges = new Map();
  const say = (text, kind) => {
    message.textContent = text;
    message.className = `notice ${kind}`;
    message.hidden = false;
  };

  bindForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const reply = await api.bind(did.value.trim(), passcode.value.trim());
      if (reply.success.length) {
        say(`Bound ${reply.success.join(", ")}.`, "ok");
        bindForm.reset();
      } else {
        say("Not bound: no such device of this app, or the passcode is wrong.", "error");
      }
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  });

  async function unbind(device) {
    if (!confirm(`Unbind ${device.dev_alias || device.product_name} (${device.did})?`)) return;
    try {
      const reply = await api.unbind(device.did);
      say(reply.success.length ? `Unbound ${device.did}.` : `Not unbound: ${device.did}.`, reply.success.length ? "ok" : "error");
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function lastSeen(device, cell) {
    try {
      cell.textContent = seenText(await api.presence(device.did));
    } catch {
      cell.textContent = "—";
    }
  }

  async function load() {
    let devices;
    try {
      devices = await api.devices();
    } catch (error) {
      clear(list, failure(error));
      return;
    }
    badges.clear();
    if (!devices.length) {
      clear(list, h("p", { class: "empty" }, "No devices bound yet. Bind one with its did and passcode."));
      return;
    }
    const rows = devices.map((device) => {
      const badge = onlineBadge(device.is_online);
      badges.set(device.did, badge);
      const seen = h("td", { "data-label": "Last seen" }, "…");
      lastSeen(device, seen);
      return h(
        "tr",
        { "data-did": device.did },
        h(
          "td",
          { "data-label": "Device" },
          h("a", { href: `#/device/${encodeURIComponent(device.did)}`, class: "device-link" }, device.dev_alias || device.product_name || device.did),
          h("div", { class: "mono muted" }, device.did),
        ),
        h("td", { "data-label": "State" }, badge),
        seen,
        h("td", { "data-label": "Product" }, device.product_name, h("div", { class: "mono muted" }, device.product_key)),
        h("td", { "data-label": "Remark" }, device.remark || h("span", { class: "muted" }, "—")),
        h("td", { class: "actions" }, h("button", { type: "button", class: "danger", onclick: () => unbind(device) }, "Unbind")),
      );
    });
    const head = ["Device", "State", "Last seen", "Product", "Remark", ""].map((title) => h("th", {}, title));
    clear(list, h("table", { class: "device-table" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows)));
  }

  clear(
    view,
    h("div", { class: "page-head" }, h("h1", {}, "My devices"), bindForm),
    message,
    h("section", { class: "panel flush" }, list),
  );
  await load();
  return {
    onRealtime(msg) {
      if (msg.cmd === "s2c_online_status" && badges.has(msg.data.did)) setOnline(badges.get(msg.data.did), msg.data.online);
      if (msg.cmd === "s2c_binding_changed") load();
    },
  };
}

// ---- one device -------------------------------------------------------------------------------------------------

async function devicePage(did, routing) {
  clear(view, h("p", { class: "muted" }, "Loading…"));
  let device;
  let schema;
  let latest;
  try {
    device = (await api.devices()).find((item) => item.did === did);
    if (!device) {
      if (routing === shown) clear(view, h("a", { href: "#/devices", class: "back" }, "← My devices"), h("p", { class: "notice error" }, `${did} is not one of your devices.`));
      return {};
    }
    [schema, latest] = await Promise.all([api.schema(device.product_key), api.latest(did)]);
  } catch (error) {
    if (routing === shown) clear(view, h("a", { href: "#/devices", class: "back" }, "← My devices"), failure(error));
    return {};
  }
  if (routing !== shown) return {};

  const log = new DeviceLog();
  const cards = new Map();
  const updated = h("span", { class: "muted" }, latest.updated_at ? `last report ${timeText(latest.updated_at)}` : "no report yet");
  const badge = onlineBadge(device.is_online);

  const send = async (name, value) => {
    const attrs = { [name]: value };
    const entry = log.add("out", "POST /app/control (0x0090)", attrs);
    try {
      await api.control(did, attrs);
    } catch (error) {
      log.refused(entry, error.message);
      throw error;
    }
  };
  const check = (name, value) => api.check(did, { [name]: value });

  const grid = h("div", { class: "dp-grid" });
  for (const dp of datapointsOf(schema)) {
    const card = datapointCard(dp, { send, check });
    cards.set(dp.name, card);
    grid.append(card.node);
  }
  const known = new Map(); // the values shown, to tell what a report changes
  const showValues = (attrs) => {
    const changed = new Set();
    for (const [name, value] of Object.entries(attrs)) {
      const text = valueText(value);
      if (known.get(name) !== text) changed.add(name);
      known.set(name, text);
      if (cards.has(name)) cards.get(name).show(value);
    }
    return changed;
  };
  showValues(latest.attr);

  const read = () => {
    if (realtime && realtime.send("c2s_read", { did })) log.add("out", "c2s_read", {});
  };

  clear(
    view,
    h("a", { href: "#/devices", class: "back" }, "← My devices"),
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, device.dev_alias || device.product_name || did, device.remark ? h("span", { class: "remark" }, device.remark) : null),
        h("div", { class: "mono muted" }, `${did} · ${device.mac} · ${device.product_key}`),
      ),
      h("div", { class: "status" }, badge, updated, h("button", { type: "button", onclick: read }, "Read")),
    ),
    h("section", { class: "panel" }, h("h2", {}, "Data points"), grid),
    h("section", { class: "panel flush" }, h("h2", {}, "Device log"), log.node),
    h("section", { class: "panel flush" }, h("h2", {}, "Product schema"), schemaTable(schema)),
  );

  return {
    onLive(state) {
      if (state === "live") read();
    },
    onRealtime(msg) {
      const data = msg.data || {};
      if (msg.cmd === "s2c_invalid_msg") {
        log.add("in", "s2c_invalid_msg", data);
        return;
      }
      if (data.did !== did && msg.did !== did) return;
      if (msg.cmd === "s2c_noti") {
        const name = msg.res_sn !== undefined ? "s2c_noti (answer)" : "s2c_noti";
        log.add("in", name, data.attrs, showValues(data.attrs));
        updated.textContent = `last report ${timeText(Date.now() / 1000)}`;
      } else if (msg.cmd === "s2c_online_status") {
        log.add("in", "s2c_online_status", { online: data.online });
        setOnline(badge, data.online);
      } else if (msg.cmd === "s2c_raw") {
        log.add("in", "s2c_raw", valueText(data.raw));
      } else if (msg.cmd === "s2c_ack") {
        log.add("in", "s2c_ack", { res_sn: msg.res_sn });
      } else if (msg.cmd === "s2c_binding_changed" && !data.bind) {
        location.hash = "#/devices";
      }
    },
  };
}

// ---- routing ----------------------------------------------------------------------------------------------------

async function route() {
  const path = location.hash.replace(/^#/, "") || "/devices";
  const routing = ++shown;
  page = null;
  showWho();
  if (!session && path !== "/signin") {
    location.hash = "#/signin";
    return;
  }
  if (session && path === "/signin") {
    location.hash = "#/devices";
    return;
  }
  let next;
  if (!session) next = await signInPage();
  else {
    if (!realtime) startRealtime();
    const device = path.match(/^\/device\/(.+)$/);
    next = device ? await devicePage(decodeURIComponent(device[1]), routing) : await devicesPage(routing);
  }
  if (routing !== shown) return; // another page was asked for meanwhile: it is the one shown
  page = next;
  if (page.onLive && realtime) page.onLive(realtime.state);
}

window.addEventListener("hashchange", route);
route();
