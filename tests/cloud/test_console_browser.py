"""The web console in a real headless browser (Debian's chromium, driven by Playwright) against the whole chain: local
cloud <-> Mosquitto <-> Bridge (software GAgent) <-> VirtualMcu on a pty.

One cloud, one rig and one browser for the module (each test has a fresh browser context: its own sessionStorage).
The screenshots for the README are taken here (docs/console-devices.png, docs/console-device.png).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.bridge.bridge_fixtures import GOKIT_PK, Rig, bridge_rig
from tests.cloud.realtime_helpers import new_user, register
from tests.cloud.server_fixtures import CloudThread, make_cloud, world_searchable_dir
from tests.loop_thread import LoopThread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).parents[2] / "docs"
BOARD = {"LED_R": 0x12, "LED_G": 0x34, "Motor_Speed": 3, "Temperature": 20, "Humidity": 55}
PASSWORD = "123456"
LIVE_S = 2.0  # a change on the MCU is on the page within this, without a reload


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


MISSING = _browser_missing()
if MISSING is not None and not os.environ.get("CI"):
    pytest.skip(f"no headless browser: {MISSING}", allow_module_level=True)  # one line for the module


class RigThread(LoopThread):
    """The bridge and the virtual MCU on a loop of their own (the browser is driven synchronously from the test)."""

    def __init__(self, cloud: CloudThread, state_dir: Path) -> None:
        self.cloud = cloud
        self.state_dir = state_dir
        self.stack = contextlib.AsyncExitStack()
        self._rig: Rig | None = None
        super().__init__("rig-loop", self._up, self.stack.aclose)

    async def _up(self) -> None:
        self._rig = await self.stack.enter_async_context(
            bridge_rig(self.cloud, self.state_dir, mcu_kwargs={"values": BOARD})
        )
        await self._rig.up()

    @property
    def rig(self) -> Rig:
        assert self._rig is not None
        return self._rig

    def set_values(self, values: dict[str, Any]) -> None:
        async def change() -> None:
            self.rig.mcu.set_values(values)

        self.call(change())


@dataclass
class World:
    cloud: CloudThread
    rigs: RigThread
    browser: Browser
    appid: str
    alice: tuple[str, str]  # uid, token; bound to the rig's device and to spare
    spare: str  # a device of alice's that never connected
    url: str

    @property
    def did(self) -> str:
        return self.rigs.rig.did

    @property
    def mcu_state(self) -> dict[str, Any]:
        return self.rigs.rig.mcu.state


@pytest.fixture(scope="module")
def world(mosquitto_binary: str) -> Iterator[World]:
    if MISSING is not None:
        pytest.fail(f"the console's browser tests must run in CI, but: {MISSING}")
    from playwright.sync_api import sync_playwright

    base = world_searchable_dir()
    cloud = make_cloud(f"sqlite+aiosqlite:///{base / 'cloud.db'}", base / "data", mosquitto_binary=mosquitto_binary)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(cloud.close)
        appid = cloud.add_app()
        rigs = RigThread(cloud, base / "state")
        rigs.start()
        stack.callback(rigs.close)
        # Alice has the rig's device and a second, never connected one; both with a remark.
        spare = register(cloud, "a0b1c2d3e4f5", "SPAREPASS1", GOKIT_PK)
        board = (rigs.rig.did, rigs.rig.bridge.identity.passcode)
        alice = new_user(cloud, appid, "alice", board, (spare, "SPAREPASS1"))
        for did, remark in ((rigs.rig.did, "on the bench"), (spare, "spare board")):
            reply = cloud.api("PUT", f"/app/bindings/{did}", {"remark": remark}, appid=appid, token=alice[1])
            assert reply.status == 200, reply
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        stack.callback(browser.close)
        yield World(cloud, rigs, browser, appid, alice, spare, f"http://127.0.0.1:{cloud.http_port}/console/")


@pytest.fixture
def page(world: World) -> Iterator[Page]:
    context = world.browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        yield page
        # A refused entry is a 400 the page asked for (the server's message); anything else is a fault.
        assert [e for e in errors if "400 (Bad Request)" not in e] == [], errors
    finally:
        context.close()


def sign_in(page: Page, world: World, username: str = "alice") -> None:
    page.goto(world.url)
    page.wait_for_selector("input[name=appid]")
    page.fill("input[name=appid]", world.appid)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_selector("h1:text('My devices')")


def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> float:
    """Wait for ``predicate``; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def value_of(page: Page, name: str) -> str:
    return str(page.text_content(f"[data-value-of='{name}']"))


def latest(world: World) -> dict[str, Any]:
    reply = world.cloud.api("GET", f"/app/devdata/{world.did}/latest", appid=world.appid, token=world.alice[1])
    assert reply.status == 200, reply
    attrs: dict[str, Any] = reply.body["attr"]
    return attrs


def log_rows(page: Page) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        ".log-table tbody tr",
        "rows => rows.map(r => ({direction: r.dataset.direction, command: r.children[2].textContent,"
        " attrs: r.children[3].dataset.attrs}))",
    )
    return rows


def test_sign_in_and_my_devices(page: Page, world: World) -> None:
    page.goto(world.url)
    # The app id can be picked from the cloud's apps (ids and names only) or typed.
    options = page.eval_on_selector_all("#apps option", "opts => opts.map(o => [o.value, o.textContent])")
    assert options == [[world.appid, "test"]]
    page.fill("input[name=appid]", world.appid)
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong password")
    page.click("form button[type=submit]")
    refused = world.cloud.api(
        "POST", "/app/login", {"username": "alice", "password": "wrong password"}, appid=world.appid
    )
    page.wait_for_selector(f"p[role=alert]:text-is('{refused.body['error_message']}')")

    sign_in(page, world)
    link = page.wait_for_selector(f"a[href*='{world.did}']")
    assert link is not None
    row = page.locator(f"tr[data-did='{world.did}']")
    assert row.locator("[data-online]").get_attribute("data-online") == "true"
    product = world.cloud.call(world.cloud.storage.get_product(world.rigs.rig.device().product_key))
    assert product.name in str(row.locator("td[data-label='Product']").text_content())
    until(lambda: row.locator("td[data-label='Last seen']").text_content() == "online now", "the last seen")
    assert row.locator("td[data-label='Remark']").text_content() == "on the bench"
    spare = page.locator(f"tr[data-did='{world.spare}']")
    assert spare.locator("[data-online]").get_attribute("data-online") == "false"
    until(lambda: spare.locator("td[data-label='Last seen']").text_content() == "never", "the spare's last seen")
    assert spare.locator("td[data-label='Remark']").text_content() == "spare board"
    assert page.locator(f"a[href*='{world.spare}']").count() == 1
    page.wait_for_selector("#live[data-state=live]")
    # The session is in sessionStorage, never a cookie.
    stored = json.loads(page.evaluate("sessionStorage.getItem('gizdev.console.session')"))
    assert stored["uid"] == world.alice[0] and stored["appid"] == world.appid
    me = world.cloud.api("GET", "/app/users", appid=world.appid, token=stored["token"])
    assert me.status == 200 and me.body["username"] == "alice"  # the token the Open API's login gave
    assert page.context.cookies() == [] and page.evaluate("document.cookie") == ""
    DOCS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1200, "height": 360})  # the picture: the list, not the empty page below it
    page.screenshot(path=str(DOCS / "console-devices.png"), full_page=True)

    # A phone-sized screen: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_device_page_controls_live_values_and_log(page: Page, world: World) -> None:
    sign_in(page, world)
    page.click(f"a[href*='{world.did}']")
    page.wait_for_selector("[data-datapoint='LED_OnOff']")
    page.reload()  # the place and the session survive a reload (the fragment, sessionStorage)
    page.wait_for_selector("[data-datapoint='LED_OnOff']")
    page.wait_for_selector("#live[data-state=live]")
    # Every data point of the schema has its control, and its value is the app value /app/devdata gives.
    schema = world.cloud.api(
        "GET", f"/app/datapoint?product_key={world.rigs.rig.device().product_key}", appid=world.appid
    )
    names = [attr["name"] for attr in schema.body["entities"][0]["attrs"]]
    assert sorted(page.eval_on_selector_all("[data-datapoint]", "els => els.map(e => e.dataset.datapoint)")) == sorted(
        names
    )
    until(lambda: value_of(page, "LED_R") == "18", "LED_R from the board")
    assert page.get_attribute("[data-datapoint='LED_OnOff']", "type") == "checkbox"
    assert page.eval_on_selector("[data-datapoint='LED_Color']", "e => [...e.options].map(o => o.textContent)") == [
        "Customize",
        "Yellow",
        "Purple",
        "Pink",
    ]
    speed = page.locator("[data-datapoint='Motor_Speed']")
    assert (speed.get_attribute("min"), speed.get_attribute("max"), speed.get_attribute("step")) == ("-5", "5", "1")
    assert page.locator("[data-datapoint='Alert_1']").get_attribute("class") == "indicator"

    # A toggle sends at once; a number on Enter; a select at once: each reaches the MCU.
    page.click("[data-datapoint='LED_OnOff']")
    until(lambda: world.mcu_state["LED_OnOff"] is True, "the toggle on the MCU")
    page.fill("[data-datapoint='LED_R']", "200")
    page.press("[data-datapoint='LED_R']", "Enter")
    until(lambda: world.mcu_state["LED_R"] == 200, "LED_R on the MCU")
    page.fill("[data-datapoint='Motor_Speed']", "-2")
    page.locator("[data-datapoint='LED_G']").focus()  # leaving the field sends it too
    until(lambda: world.mcu_state["Motor_Speed"] == -2, "Motor_Speed on the MCU")
    page.select_option("[data-datapoint='LED_Color']", "Purple")
    until(lambda: world.mcu_state["LED_Color"] in ("Purple", 2), "LED_Color on the MCU")

    # The board's own change is on the page within 2 s, without a reload.
    page.evaluate("window.notReloaded = true")
    world.rigs.set_values({"Humidity": 77, "Alert_1": True})
    took = until(lambda: value_of(page, "Humidity") == "77", "Humidity on the page", LIVE_S)
    assert page.evaluate("window.notReloaded") is True, took
    until(lambda: page.get_attribute("[data-datapoint='Alert_1']", "data-on") == "true", "the alert", LIVE_S)
    # What the page shows is what /app/devdata/{did}/latest gives, text for text.
    until(lambda: latest(world).get("Humidity") == 77, "the cloud's latest")
    shown = {name: value_of(page, name) for name in names}
    expected = {
        name: json.dumps(value) if isinstance(value, bool) else str(value) for name, value in latest(world).items()
    }
    assert shown == expected

    # Out of range: the server's message beside the control, and nothing sent.
    sent_before = [row for row in log_rows(page) if row["direction"] == "out"]
    page.fill("[data-datapoint='LED_R']", "300")
    page.press("[data-datapoint='LED_R']", "Enter")
    server = world.cloud.api(
        "POST", f"/app/control/{world.did}", {"attrs": {"LED_R": 300}}, appid=world.appid, token=world.alice[1]
    )
    assert server.status == 400
    message = f"{server.body['error_message']} {server.body['detail_message']}"
    error = page.locator("[data-error-of='LED_R']")
    error.wait_for(state="visible")
    assert error.text_content() == message
    time.sleep(0.3)
    assert world.mcu_state["LED_R"] == 200
    assert [row for row in log_rows(page) if row["direction"] == "out"] == sent_before
    page.fill("[data-datapoint='LED_R']", "201")  # a good value again clears the message
    page.press("[data-datapoint='LED_R']", "Enter")
    until(lambda: world.mcu_state["LED_R"] == 201, "LED_R 201 on the MCU")
    error.wait_for(state="hidden")

    # The device log: both directions, decoded.
    rows = log_rows(page)
    assert any(r["direction"] == "out" and json.loads(r["attrs"]) == {"LED_R": 200} for r in rows), rows
    assert any(r["direction"] == "out" and json.loads(r["attrs"]) == {"LED_OnOff": True} for r in rows), rows
    assert any(
        r["direction"] == "in" and r["command"].startswith("s2c_noti") and json.loads(r["attrs"]).get("Humidity") == 77
        for r in rows
    ), rows
    # The filter shows the matching frames only; pause holds new frames back until resumed.
    page.fill("[data-action=filter]", "humidity")
    filtered = log_rows(page)
    assert filtered and all("humidity" in (r["command"] + r["attrs"]).lower() for r in filtered)
    assert len(filtered) < len(rows)
    page.fill("[data-action=filter]", "")
    page.click("[data-action=pause]")
    count = len(log_rows(page))
    world.rigs.set_values({"Humidity": 60, "Infrared": True})  # a bool: reported at once (a number alone waits 6 s)
    until(lambda: value_of(page, "Humidity") == "60", "Humidity 60 on the page", LIVE_S)
    assert len(log_rows(page)) == count  # values stay live; the log waits
    page.click("[data-action=pause]")
    until(lambda: len(log_rows(page)) > count, "the held frames")

    # The schema as a table: every data point with its offsets, range, ratio and addition.
    cells = page.eval_on_selector_all(
        ".schema tbody tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
    )
    assert len(cells) == len(names)
    speed_row = next(row for row in cells if row[1].startswith("Motor_Speed"))
    assert speed_row[2:] == ["uint8", "read / write", "4 / 0", "1 byte", "0 … 10", "1", "-5"]
    page.screenshot(path=str(DOCS / "console-device.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the wide tables scroll inside their panels
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_second_user_does_not_see_the_first_users_device(page: Page, world: World) -> None:
    new_user(world.cloud, world.appid, "bob")
    sign_in(page, world, "bob")
    page.wait_for_selector(".empty")
    assert page.locator(f"a[href*='{world.did}']").count() == 0
    assert world.did not in str(page.content())
    # Nor through its page's address.
    page.goto(f"{world.url}#/device/{world.did}")
    page.wait_for_selector(f".notice.error:text('{world.did} is not one of your devices')")
    assert page.locator("[data-datapoint]").count() == 0
    # Signing out forgets the session.
    page.click("#sign-out")
    page.wait_for_selector("input[name=appid]")
    assert page.evaluate("sessionStorage.length") == 0


# A product with what GoKit lacks: a binary point (a hex field) and a number with a fractional ratio.
LAB_SCHEMA: dict[str, Any] = {
    "name": "console-lab",
    "product_key": "c0ffee00000000000000000000000001",
    "protocolType": "standard",
    "packetVersion": "0x00000004",
    "entities": [
        {
            "id": 0,
            "name": "entity0",
            "display_name": "lab",
            "attrs": [
                {
                    "id": 0,
                    "name": "Setpoint",
                    "display_name": "set point",
                    "type": "status_writable",
                    "data_type": "uint16",
                    "position": {"byte_offset": 0, "bit_offset": 0, "len": 2, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 100, "ratio": 0.5, "addition": 10},
                    "desc": "",
                },
                {
                    "id": 1,
                    "name": "Payload",
                    "display_name": "payload",
                    "type": "status_writable",
                    "data_type": "binary",
                    "position": {"byte_offset": 2, "bit_offset": 0, "len": 4, "unit": "byte"},
                    "desc": "",
                },
            ],
        }
    ],
}


def test_bind_hex_and_fractional_fields_and_unbind(page: Page, world: World) -> None:
    from gizdev.codec.envelope import decode_envelope
    from gizdev.codec.p0 import Action, Product
    from gizdev.schema.loader import parse_schema
    from tests.cloud.realtime_helpers import connected_device

    pk, _secret = world.cloud.add_product(LAB_SCHEMA)
    did = register(world.cloud, "0c0ffee00001", "LABPASS001", pk)
    new_user(world.cloud, world.appid, "erin")
    codec = Product(parse_schema(LAB_SCHEMA))
    device = world.rigs.call(connected_device(world.cloud, did, "LABPASS001", pk))
    try:

        def sent_attrs() -> dict[str, Any]:
            """The next write the device receives (the page's status read when it opened is passed over)."""
            while True:
                topic, payload = world.rigs.call(device.read_publish(5))
                assert topic.startswith(f"app2dev/{did}/")
                message = codec.decode(decode_envelope(payload).payload)
                if message.action is Action.WRITE:
                    return dict(message.attrs)
                assert message.action is Action.READ

        def nothing_sent() -> None:
            async def quiet() -> None:
                with pytest.raises(TimeoutError):
                    await device.read_publish(0.5)

            world.rigs.call(quiet())

        def refused(name: str, entry: str, attrs: dict[str, Any]) -> None:
            """``entry`` is refused beside the control with the message /app/control has for ``attrs``."""
            page.fill(f"[data-datapoint='{name}']", entry)
            page.press(f"[data-datapoint='{name}']", "Enter")
            answer = world.cloud.api(
                "POST", f"/console/api/devices/{did}/check", {"attrs": attrs}, appid=world.appid, token=token
            )
            control = world.cloud.api("POST", f"/app/control/{did}", {"attrs": attrs}, appid=world.appid, token=token)
            assert answer.body == control.body and control.body["error_code"] == 9025, control  # refused, not sent
            message = f"{control.body['error_message']} {control.body['detail_message']}"
            page.wait_for_selector(f"[data-error-of='{name}']:text-is('{message}')")
            nothing_sent()

        sign_in(page, world, "erin")
        token = json.loads(page.evaluate("sessionStorage.getItem('gizdev.console.session')"))["token"]
        page.wait_for_selector(".empty")
        page.fill("input[name=did]", did)
        page.fill("input[name=passcode]", "LABPASS001")
        page.click("form.bind button")
        page.click(f"a[href*='{did}']")
        setpoint = page.locator("[data-datapoint='Setpoint']")
        setpoint.wait_for()
        assert (setpoint.get_attribute("min"), setpoint.get_attribute("max"), setpoint.get_attribute("step")) == (
            "10",
            "60",
            "0.5",
        )
        assert page.get_attribute("[data-datapoint='Payload']", "type") == "text"
        assert page.get_attribute(".page-head [data-online]", "data-online") == "true"

        page.fill("[data-datapoint='Setpoint']", "12.5")
        page.press("[data-datapoint='Setpoint']", "Enter")
        assert sent_attrs()["Setpoint"] == 12.5
        page.fill("[data-datapoint='Payload']", "0A0B0C0D")
        page.press("[data-datapoint='Payload']", "Enter")
        assert sent_attrs()["Payload"] == bytes.fromhex("0a0b0c0d")
        refused("Payload", "0a0b0c", {"Payload": "0a0b0c"})  # three bytes of four
        refused("Payload", "zz00zz00", {"Payload": "zz00zz00"})
        refused("Setpoint", "60.5", {"Setpoint": 60.5})
        refused("Setpoint", "12.3", {"Setpoint": 12.3})  # between two steps of 0.5

        # A value that passes every check but cannot be delivered: the server's answer beside the control.
        world.rigs.call(device.close())
        bus = world.cloud.server.bus
        assert bus is not None
        until(lambda: not bus.is_online(did), "the lab device offline")
        page.fill("[data-datapoint='Payload']", "01020304")
        page.press("[data-datapoint='Payload']", "Enter")
        offline = world.cloud.api(
            "POST", f"/app/control/{did}", {"attrs": {"Payload": "01020304"}}, appid=world.appid, token=token
        )
        assert offline.body["error_code"] == 9042
        message = offline.body["error_message"] + (
            f" {offline.body['detail_message']}" if offline.body["detail_message"] else ""
        )
        page.wait_for_selector(f"[data-error-of='Payload']:text-is('{message}')")
        # The log keeps the attempt, marked as not delivered.
        attempt = page.locator(".log-table tr[data-refused=true]")
        assert attempt.count() == 1
        assert json.loads(str(attempt.locator("td.attrs").get_attribute("data-attrs"))) == {"Payload": "01020304"}
        assert attempt.locator(".refused-note").text_content() == f"not delivered: {message}"

        page.click("a.back")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click(f"tr[data-did='{did}'] button.danger")
        page.wait_for_selector(".empty")
        bindings = world.cloud.api("GET", "/app/bindings", appid=world.appid, token=token)
        assert bindings.body["devices"] == []
    finally:
        world.rigs.call(device.close())
