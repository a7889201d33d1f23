// Data points from the product schema (GET /app/datapoint): the control each one gets, the text of its value, and
// the console's own check of an entry before anything is sent.
//
// Values are app values, as /app/devdata/{did}/latest gives them: bool true/false, an enum's label, numbers after
// ratio and addition, binary as lower-case hex (s2c_noti sends binary as a byte array: shown as the same hex).

import { clear, h } from "./dom.js";

export function datapointsOf(schema) {
  return (schema.entities || []).flatMap((entity) => entity.attrs || []);
}

export const isWritable = (dp) => dp.type === "status_writable";
const isUint = (dp) => dp.data_type.startsWith("uint");

const ACCESS = {
  status_writable: "read / write",
  status_readonly: "read only",
  alert: "alert",
  fault: "fault",
};

export function accessText(dp) {
  return ACCESS[dp.type] || dp.type;
}

function decimals(x) {
  const text = String(x);
  if (text.includes("e-")) return Number(text.split("e-")[1]);
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : text.length - dot - 1;
}

// The app range of a uint point: raw min/max scaled, the step its ratio.
export function numberRange(dp) {
  const { min, max, ratio, addition } = dp.uint_spec;
  const places = Math.max(decimals(ratio), decimals(addition));
  const app = (raw) => Number((raw * ratio + addition).toFixed(places));
  return { min: app(min), max: app(max), step: ratio, ratio, addition };
}

export function valueText(value) {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return String(value);
}

// The console's check of a typed entry: {value} to send, or {problem, value} (value: what the server is asked
// about, so that the message shown is the server's).
export function checkEntry(dp, text) {
  const entry = text.trim();
  if (isUint(dp)) {
    const range = numberRange(dp);
    const number = entry === "" ? NaN : Number(entry);
    if (!Number.isFinite(number)) return { problem: "not a number", value: entry };
    if (number < range.min || number > range.max) {
      return { problem: `out of range ${range.min} to ${range.max}`, value: number };
    }
    const steps = (number - range.addition) / range.ratio;
    if (Math.abs(steps - Math.round(steps)) > 1e-6) return { problem: `not a step of ${range.ratio}`, value: number };
    return { value: number };
  }
  if (dp.data_type === "binary") {
    const hex = entry.replace(/\s+/g, "").toLowerCase();
    if (!/^([0-9a-f]{2})*$/.test(hex)) return { problem: "hex digits, two per byte", value: hex };
    if (hex.length / 2 !== dp.position.len) {
      return { problem: `${dp.position.len} bytes, not ${hex.length / 2}`, value: hex };
    }
    return { value: hex };
  }
  return { value: entry };
}

function rangeText(dp) {
  if (isUint(dp)) {
    const range = numberRange(dp);
    return `${range.min} … ${range.max}, step ${range.step}`;
  }
  if (dp.data_type === "binary") return `${dp.position.len} bytes, hex`;
  return "";
}

// One data point's card. send(name, value) returns a promise (rejected with the server's error); check(name,
// value) asks the server what it says of a value without sending it.
export function datapointCard(dp, { send, check }) {
  const name = dp.name;
  const valueNode = h("span", { class: "value", "data-value-of": name });
  const errorNode = h("p", { class: "dp-error", role: "alert", "data-error-of": name, hidden: true });
  const card = h("article", { class: `dp dp-${dp.type}`, "data-kind": dp.data_type });
  let control;
  let show;
  let reported; // the last value the device reported: a toggle or select whose send failed goes back to it

  const fail = (message) => {
    errorNode.textContent = message;
    errorNode.hidden = false;
    card.classList.add("invalid");
  };
  const ok = () => {
    errorNode.textContent = "";
    errorNode.hidden = true;
    card.classList.remove("invalid");
  };
  const sending = async (value) => {
    card.classList.add("pending");
    try {
      await send(name, value);
      ok();
    } catch (error) {
      fail(error.message);
      if (reported !== undefined && (dp.data_type === "bool" || dp.data_type === "enum")) show(reported);
    } finally {
      card.classList.remove("pending");
    }
  };

  if (!isWritable(dp)) {
    control = h("span", { class: "indicator", "data-datapoint": name, "data-on": "unknown" });
    if (isUint(dp)) {
      const range = numberRange(dp);
      const meter = h("meter", { min: range.min, max: range.max, value: range.min });
      control.append(meter);
      show = (value) => {
        meter.value = Number(value);
        control.dataset.on = "value";
      };
    } else {
      show = (value) => {
        control.dataset.on = value === true ? "true" : value === false ? "false" : "value";
      };
    }
  } else if (dp.data_type === "bool") {
    control = h("input", { type: "checkbox", role: "switch", class: "switch", "data-datapoint": name, "aria-label": name });
    control.addEventListener("change", () => sending(control.checked));
    show = (value) => {
      control.checked = value === true;
    };
  } else if (dp.data_type === "enum") {
    control = h("select", { "data-datapoint": name, "aria-label": name }, dp.enum.map((label) => h("option", { value: label }, label)));
    control.selectedIndex = -1;
    control.addEventListener("change", () => sending(control.value));
    show = (value) => {
      control.value = String(value);
    };
  } else {
    const number = isUint(dp);
    const attrs = { "data-datapoint": name, "aria-label": name, class: "entry", enterkeyhint: "send" };
    if (number) {
      const range = numberRange(dp);
      Object.assign(attrs, { type: "number", min: range.min, max: range.max, step: range.step, inputmode: "decimal" });
    } else {
      Object.assign(attrs, { type: "text", spellcheck: "false", autocomplete: "off", maxlength: 2 * dp.position.len + 16 });
      attrs.placeholder = "00".repeat(Math.min(dp.position.len, 8)) + (dp.position.len > 8 ? "…" : "");
    }
    control = h("input", attrs);
    // "change": Enter, or leaving the field after an edit; not every keystroke.
    control.addEventListener("change", async () => {
      const verdict = checkEntry(dp, control.value);
      if (verdict.problem === undefined) {
        await sending(verdict.value);
        return;
      }
      // Not sent. The message is the server's for the same value (its /app/control checks, without sending).
      try {
        await check(name, verdict.value);
        fail(`${verdict.problem} (not sent)`);
      } catch (error) {
        fail(error.message);
      }
    });
    show = (value) => {
      if (document.activeElement !== control && !card.classList.contains("invalid")) control.value = valueText(value);
    };
  }

  const hint = rangeText(dp);
  clear(
    card,
    h("header", { class: "dp-head" }, h("span", { class: "dp-title" }, dp.display_name || name), h("code", { class: "dp-name" }, name)),
    h("div", { class: "dp-body" }, control, h("span", { class: "reported", title: "the value the device reported" }, valueNode)),
    hint ? h("p", { class: "dp-hint" }, hint) : null,
    errorNode,
  );
  return {
    node: card,
    show(value) {
      reported = value;
      valueNode.textContent = valueText(value);
      show(value);
    },
  };
}

export function schemaTable(schema) {
  const rows = datapointsOf(schema).map((dp) => {
    const spec = dp.uint_spec;
    const position = dp.position;
    const range = spec ? `${spec.min} … ${spec.max}` : dp.enum ? dp.enum.map((label, i) => `${i} ${label}`).join(", ") : "";
    return h(
      "tr",
      {},
      h("td", { class: "num" }, dp.id),
      h("td", {}, h("code", {}, dp.name), dp.display_name && dp.display_name !== dp.name ? h("div", { class: "muted" }, dp.display_name) : null),
      h("td", {}, dp.data_type),
      h("td", {}, accessText(dp)),
      h("td", { class: "num" }, `${position.byte_offset} / ${position.bit_offset}`),
      h("td", { class: "num" }, `${position.len} ${position.unit}`),
      h("td", {}, range),
      h("td", { class: "num" }, spec ? spec.ratio : ""),
      h("td", { class: "num" }, spec ? spec.addition : ""),
    );
  });
  const head = ["id", "name", "type", "access", "byte / bit", "length", "range (raw)", "ratio", "addition"];
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "schema" }, h("thead", {}, h("tr", {}, head.map((title) => h("th", {}, title)))), h("tbody", {}, rows)),
  );
}
