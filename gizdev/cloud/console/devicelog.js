// The device log: decoded traffic both ways (time, direction, command, attrs), newest first, with a filter and a
// pause. What the console sends is recorded as it sends it; what the device sends comes from the WebSocket.

import { clear, clockText, h } from "./dom.js";

const MAX_ENTRIES = 500;

// An object's values as name=value pairs, what changed first; anything else as its text.
function attrsNodes(entry) {
  const { attrs, changed } = entry;
  if (attrs === null || typeof attrs !== "object") return String(attrs);
  const names = Object.keys(attrs);
  const isChanged = (name) => !changed || changed.has(name);
  names.sort((a, b) => isChanged(b) - isChanged(a));
  return names.map((name) =>
    h("span", { class: `pair${changed && changed.has(name) ? " changed" : ""}` }, `${name}=`, h("b", {}, JSON.stringify(attrs[name]))),
  );
}

export class DeviceLog {
  constructor() {
    this.entries = [];
    this.waiting = [];
    this.paused = false;
    this.filter = "";
    this.rows = h("tbody", {});
    this.pauseButton = h("button", { type: "button", "data-action": "pause", onclick: () => this.togglePause() }, "Pause");
    this.count = h("span", { class: "muted log-count" });
    const filter = h("input", { type: "search", placeholder: "Filter", "aria-label": "filter", "data-action": "filter" });
    filter.addEventListener("input", () => {
      this.filter = filter.value.trim().toLowerCase();
      this.render();
    });
    const clearButton = h("button", { type: "button", "data-action": "clear", onclick: () => this.clear() }, "Clear");
    const head = ["Time", "Direction", "Command", "Attrs"].map((title) => h("th", {}, title));
    this.node = h(
      "div",
      { class: "log" },
      h("div", { class: "toolbar" }, filter, this.pauseButton, clearButton, this.count),
      h("div", { class: "table-wrap log-scroll" }, h("table", { class: "log-table" }, h("thead", {}, h("tr", {}, head)), this.rows)),
    );
    this.render();
  }

  // changed: the names whose value this frame changes (shown highlighted); undefined: every name is news.
  add(direction, command, attrs, changed) {
    const json = typeof attrs === "string" ? attrs : JSON.stringify(attrs);
    const entry = { time: new Date(), direction, command, attrs, json, changed, text: `${command} ${json}`.toLowerCase() };
    if (this.paused) {
      this.waiting.push(entry);
      this.updateCount();
      return;
    }
    this.keep(entry);
    if (this.matches(entry)) this.rows.prepend(this.row(entry));
    while (this.rows.children.length > MAX_ENTRIES) this.rows.lastChild.remove();
    this.updateCount();
    return entry;
  }

  // A frame the cloud did not deliver after all (its answer to the send was an error).
  refused(entry, message) {
    entry.refused = message;
    entry.text += ` refused ${message}`.toLowerCase();
    if (entry.node) entry.node.replaceWith(this.row(entry));
  }

  keep(entry) {
    this.entries.push(entry);
    if (this.entries.length > MAX_ENTRIES) this.entries.shift();
  }

  matches(entry) {
    return !this.filter || entry.text.includes(this.filter) || entry.direction.includes(this.filter);
  }

  row(entry) {
    const out = entry.direction === "out";
    const refused = entry.refused ? h("div", { class: "refused-note" }, `not delivered: ${entry.refused}`) : null;
    entry.node = h(
      "tr",
      { class: `${out ? "out" : "in"}${entry.refused ? " refused" : ""}`, "data-direction": entry.direction, "data-refused": entry.refused ? "true" : null },
      h("td", { class: "mono" }, clockText(entry.time)),
      h("td", {}, h("span", { class: `dir ${entry.direction}` }, out ? "app → device" : "device → app")),
      h("td", { class: "mono command" }, entry.command, refused),
      h("td", { class: "mono attrs", "data-attrs": entry.json }, attrsNodes(entry)),
    );
    return entry.node;
  }

  render() {
    const shown = this.entries.filter((entry) => this.matches(entry)).reverse();
    clear(this.rows, shown.map((entry) => this.row(entry)));
    this.updateCount();
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    this.pauseButton.classList.toggle("active", this.paused);
    if (!this.paused) {
      for (const entry of this.waiting) this.keep(entry);
      this.waiting = [];
      this.render();
    }
    this.updateCount();
  }

  clear() {
    this.entries = [];
    this.waiting = [];
    this.render();
  }

  updateCount() {
    const waiting = this.waiting.length ? ` · ${this.waiting.length} waiting (paused)` : "";
    this.count.textContent = `${this.entries.length} frames${waiting}`;
  }
}
