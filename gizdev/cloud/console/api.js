// The Open API as the console calls it: JSON, with the signed-in user's app id and token on every call.
//
// The session (app id, uid, token) lives in sessionStorage: it is gone when the tab closes, and, not being a
// cookie, it is never sent by the browser on its own, so another site cannot make requests with it.

const SESSION_KEY = "gizdev.console.session";

export class ApiError extends Error {
  constructor(status, body) {
    super(errorText(status, body));
    this.status = status;
    this.code = body && typeof body === "object" ? body.error_code : undefined;
  }
}

// The server's message as the realtime API renders it too: error_message, then detail_message if any.
function errorText(status, body) {
  if (!body || typeof body !== "object" || !body.error_message) return `HTTP ${status}`;
  return body.detail_message ? `${body.error_message} ${body.detail_message}` : body.error_message;
}

export async function request(method, path, { appid, token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (appid) headers["X-Gizwits-Application-Id"] = appid;
  if (token) headers["X-Gizwits-User-token"] = token;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { error_message: "the cloud is not reachable", detail_message: String(error.message || "") });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (session && session.appid && session.uid && session.token) {
      if (!session.expire_at || session.expire_at * 1000 > Date.now()) return session;
    }
  } catch {
    // a damaged entry: sign in again
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

export async function signIn(appid, username, password) {
  const reply = await request("POST", "/app/login", { appid, body: { username, password } });
  const session = { appid, username, uid: reply.uid, token: reply.token, expire_at: reply.expire_at };
  saveSession(session);
  return session;
}

// The calls of one signed-in user.
export class Api {
  constructor(session) {
    this.session = session;
  }

  call(method, path, body) {
    return request(method, path, { appid: this.session.appid, token: this.session.token, body });
  }

  async devices() {
    const reply = await this.call("GET", "/app/bindings?limit=1000");
    return reply.devices;
  }

  bind(did, passcode) {
    return this.call("POST", "/app/bindings", { devices: [{ did, passcode }] });
  }

  unbind(did) {
    return this.call("DELETE", "/app/bindings", { devices: [{ did }] });
  }

  latest(did) {
    return this.call("GET", `/app/devdata/${encodeURIComponent(did)}/latest`);
  }

  presence(did) {
    return this.call("GET", `/console/api/devices/${encodeURIComponent(did)}/presence`);
  }

  schema(productKey) {
    return this.call("GET", `/app/datapoint?product_key=${encodeURIComponent(productKey)}`);
  }

  control(did, attrs) {
    return this.call("POST", `/app/control/${encodeURIComponent(did)}`, { attrs });
  }

  // /app/control's checks without the sending: the server's own message for a value the console will not send.
  check(did, attrs) {
    return this.call("POST", `/console/api/devices/${encodeURIComponent(did)}/check`, { attrs });
  }
}
