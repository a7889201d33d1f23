// The realtime WebSocket API (/ws/app/v1) for one signed-in user: login_req with the user's token, auto-subscribed
// to every bound device, a ping well inside the heartbeat, and a reconnect with back-off when the link drops.

const HEARTBEAT_S = 60;
const PING_EVERY_MS = 20000;
const BACKOFF_MAX_MS = 10000;

export class Realtime {
  constructor(session, { onMessage, onState }) {
    this.session = session;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.stopped = false;
    this.backoffMs = 500;
    this.pinger = null;
    this.state = "offline";
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.setState("offline");
  }

  get live() {
    return this.state === "live";
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/app/v1`);
    this.ws = ws;
    this.setState("connecting");
    ws.addEventListener("open", () => {
      const { appid, uid, token } = this.session;
      this.raw({
        cmd: "login_req",
        data: { appid, uid, token, p0_type: "attrs_v4", heartbeat_interval: HEARTBEAT_S, auto_subscribe: true },
      });
    });
    ws.addEventListener("message", (event) => this.received(event.data));
    ws.addEventListener("close", () => {
      clearInterval(this.pinger);
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState("offline");
      if (!this.stopped) {
        setTimeout(() => this.stopped || this.connect(), this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
      }
    });
  }

  received(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.cmd === "login_res") {
      if (message.data && message.data.success) {
        this.backoffMs = 500;
        this.setState("live");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.raw({ cmd: "ping" }), PING_EVERY_MS);
      } else {
        this.setState("refused");
        this.stopped = true; // the token is not valid: retrying would only count failed logins
      }
    }
    this.onMessage(message);
  }

  raw(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  send(cmd, data) {
    return this.live && this.raw({ cmd, data });
  }
}
