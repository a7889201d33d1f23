"""The bridge's uplink to a Gizwits-compatible cloud: the device protocol as GAgent speaks it.

Registration (the encrypted ``POST /dev/<pk>/device`` by default, or GAgent's plain ``POST /dev/devices``),
provisioning (``GET``, which names the MQTT broker and gives the server time), the OTA checks that tell the cloud
the module's and the MCU's versions (``type=1``, then ``type=2`` with the MCU's hardware and software version from
its device info, as GAgent sends them), then MQTT 3.1 (through :mod:`gizdev.mqtt`) with client id = user = DID,
subscribed to ``ser2cli_noti/<pk>``, ``ser2cli_res/<did>`` and ``app2dev/<did>/#`` in GAgent's order (cloud
protocol §1.1-§1.5).

The MQTT password: registered through the encrypted API, the one the cloud sealed into its reply
(``mqtt_password``, kept in the identity store), so that the passcode, which the cloud shows every bound user, does
not open the device's MQTT session; registered through the plain API, the passcode (the vendor's rule). Without a
product secret (none configured, and the MCU sends none) the encrypted API cannot be used: the plain one is, with a
warning. Apps' 0x0090/0x0093 frames are handed to the
bridge; what it publishes goes to ``dev2app/<did>`` (0x0091) or ``dev2app/<did>/<clientid>`` (0x0094).

The loop never gives up: every failure (cloud down, broker down, refused login) is logged once and retried with
backoff; a provisioning that says the DID is unknown (the cloud lost us) clears it and registers again.

As an :class:`~gizdev.bridge.interface.Uplink`: connected while the MCU is online (offline, it disconnects, so that
the cloud shows the device offline); on (re)connecting it publishes the MCU's status read afresh (a report held
while offline would be stale). MCU reports go out as 0x0091 byte for byte as the MCU sent them. Apps' P0 goes
through the bridge's :class:`~gizdev.bridge.interface.Mcu`; the answer follows GAgent (gagent-wire-observations
§3.4): a 0x0090 gets a 0x0091 on ``dev2app/<did>`` (empty for a write's ACK, the status for a read), a 0x0093 a
0x0094 with the same sn to the requester; the MCU unreachable: no answer (the protocol has no error frame),
logged. The identity (registration, a reset's new passcode, the old DID disabled) lives in the shared
:class:`~gizdev.bridge.identity.IdentityStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp

from gizdev import __version__
from gizdev.backoff import Backoff
from gizdev.bridge.identity import Identity, IdentityStore
from gizdev.bridge.interface import Mcu, UplinkStatus
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.envelope import (
    BusinessCmd,
    ServiceCmd,
    decode_envelope,
    decode_service,
    encode_envelope,
    encode_service,
)
from gizdev.codec.p0 import P0Message
from gizdev.errors import BrokerError, CloudError, CodecError, ConfigError, GizdevError
from gizdev.link.module import ModuleEvent
from gizdev.mqtt import MQTT_31, MqttClient
from gizdev.protocol.device_api import MQTT_PASSWORD_FIELD, OTA_TYPE_MCU, OTA_TYPE_WIFI, decrypt_form, encrypt_form

__all__ = ["AppCommand", "CloudUplink", "Provision", "UplinkSettings", "cancel_and_wait"]

_LOGGER = logging.getLogger(__name__)

_UNKNOWN_DEVICE_CODES = {9014, 9023}  # device not found / disabled: register again

# What the OTA check says of this "module" (8 characters each, as GAgent's "000LINUX" and "04020006"): a fixed
# hardware name, and gizdev's version as major, minor (2 digits each) and patch (4 digits).
MODULE_HARD_VERSION = "GIZDEVPY"


def module_soft_version(version: str = __version__) -> str:
    """``"0.1.0"`` -> ``"00010000"``: gizdev's version in GAgent's 8-digit form (``04020006`` = 4.2.6)."""
    parts = [int(part) if part.isdigit() else 0 for part in [*version.split("."), "0", "0"][:3]]
    return f"{parts[0] % 100:02d}{parts[1] % 100:02d}{parts[2] % 10000:04d}"


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one is finished, cancelling again if a cancellation got lost.

    Python 3.11's ``asyncio.wait_for`` returns normally when its future completes in the same loop turn as the
    cancellation, which is then lost: a task would run on and a plain ``gather`` after ``cancel`` would wait for
    ever (seen as a bridge that never finished closing, when the uplink still published through aiomqtt; the
    link's requests still wait with timeouts, so the guard stays).
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


@dataclass(frozen=True, slots=True)
class AppCommand:
    """A frame an app (or the cloud) sent the device on ``app2dev/<did>/<client_id>``."""

    cmd: int  # 0x0090 or 0x0093
    p0: bytes
    client_id: str
    sn: int | None = None


@dataclass(frozen=True, slots=True)
class Provision:
    host: str
    port: int
    server_ts: int


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    cloud: str  # http://host:port
    encrypted: bool = True  # the encrypted device API: an MQTT password of our own (module docstring)
    keepalive_s: int = 120  # GAgent's CLOUD_MQTT_SET_ALIVE
    http_timeout_s: float = 5.0  # GAgent's HTTP timeout
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0


class _Refused(CloudError):
    def __init__(self, what: str, status: int, body: str) -> None:
        self.status = status
        self.code: int | None = None
        if '"error_code"' in body:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.code = int(json.loads(body)["error_code"])
        super().__init__(f"{what}: HTTP {status} {body[:120]}")


class CloudUplink:
    """Keeps the device registered, provisioned and connected while the MCU is online."""

    def __init__(self, settings: UplinkSettings, identities: IdentityStore, *, product_secret: str = "") -> None:
        self.settings = settings
        self.identities = identities
        self.product_secret = product_secret  # for the encrypted API; default: the one in the MCU's device info
        self.connected = False
        self.online_apps = 0
        self.connects = 0
        self.server_ts: int | None = None
        self._mcu: Mcu | None = None
        self._client: MqttClient | None = None
        self._active = asyncio.Event()
        self._restart = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error = ""
        self._commands: set[asyncio.Task[None]] = set()
        self._sealed_registration = False  # this process registered through the encrypted API
        self._warned_plain = False

    # -- Uplink ---------------------------------------------------------------------------------------------------

    async def start(self, mcu: Mcu) -> None:
        self._mcu = mcu
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cloud-uplink")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([t for t in (task, *self._commands) if t is not None])

    def mcu_report(self, p0: bytes, message: P0Message) -> None:
        self.publish_report_nowait(p0)

    def mcu_online(self, info: DeviceInfo | None) -> None:
        self.set_active(True)

    def mcu_offline(self) -> None:
        self.set_active(False)

    def mcu_event(self, event: ModuleEvent) -> None:
        # module_reset: the bridge renewed the identity, which is registered from the start; module_restart: GAgent
        # reconnects to the cloud.
        if event.kind in ("module_reset", "module_restart"):
            self.restart()

    def status(self) -> UplinkStatus:
        return UplinkStatus(cloud=self.connected, router=self.connected, apps=self.online_apps)

    def describe(self) -> str:
        return f"cloud {self.settings.cloud}"

    # -- control --------------------------------------------------------------------------------------------------

    def set_active(self, active: bool) -> None:
        """Connect while active (the MCU is there); disconnect when not, so that the cloud shows us offline."""
        if active and not self._active.is_set():
            self._active.set()
        elif not active and self._active.is_set():
            self._active.clear()
            self._restart.set()

    def restart(self) -> None:
        """Drop the connection and start over from the identity (e.g. after a reset cleared the DID)."""
        self._restart.set()

    def _identity(self) -> Identity:
        return self.identities.identity

    def _save_identity(self, identity: Identity) -> None:
        self.identities.update(identity)

    def _changed(self) -> None:
        if self._mcu is not None:
            self._mcu.uplink_changed()

    def _product_secret(self) -> str:
        if self.product_secret:
            return self.product_secret
        info = self._mcu.device_info if self._mcu is not None else None
        if info is None or not info.product_secret:
            raise ConfigError("the encrypted device API needs the product secret (the MCU did not send one)")
        return info.product_secret

    def _sealing_secret(self, identity: Identity) -> str | None:
        """The product secret when the encrypted API is used (wanted, or the identity came from it), else None."""
        if not (self.settings.encrypted or identity.mqtt_password):
            return None
        try:
            return self._product_secret()
        except ConfigError as exc:
            if identity.mqtt_password:
                raise CloudError(f"registered through the encrypted device API, but {exc}") from exc
            if not self._warned_plain:
                _LOGGER.warning("%s: registering through the plain device API (password = passcode)", exc)
                self._warned_plain = True
            return None

    # -- apps' commands -------------------------------------------------------------------------------------------

    async def _command(self, command: AppCommand) -> None:
        assert self._mcu is not None
        try:
            reply = await self._mcu.control(command.p0)
        except GizdevError as exc:
            # The MCU did not take it (down, refused P0): GAgent sends nothing back either.
            _LOGGER.warning("cloud command from %s not delivered: %s", command.client_id, exc)
            return
        if command.cmd == BusinessCmd.CONTROL and command.sn is not None:
            await self.publish_ack(command.client_id, command.sn, reply or b"")
        else:
            await self.publish_report(reply or b"")

    async def _publish_current_state(self) -> None:
        """On (re)connecting: the MCU's status now, read afresh (a report held while offline would be stale)."""
        mcu = self._mcu
        if mcu is None or not mcu.online:
            return
        try:
            status = await mcu.read()
        except GizdevError as exc:
            _LOGGER.info("could not read the MCU's status after connecting: %s", exc)
            return
        await self.publish_report(mcu.product.encode("read_reply", status))

    # -- publishing -----------------------------------------------------------------------------------------------

    async def publish_report(self, p0: bytes) -> bool:
        """0x0091 on ``dev2app/<did>``; False if not connected (reports are not queued: they would be stale)."""
        return await self._publish(f"dev2app/{self._identity().did}", encode_envelope(BusinessCmd.TRANSMIT_REPLY, p0))

    def publish_report_nowait(self, p0: bytes) -> bool:
        """:meth:`publish_report` from synchronous code (the MCU link's report callback)."""
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            client.publish_nowait(f"dev2app/{self._identity().did}", encode_envelope(BusinessCmd.TRANSMIT_REPLY, p0))
        except BrokerError as exc:
            _LOGGER.warning("report not published: %s", exc)
            return False
        return True

    async def publish_ack(self, client_id: str, sn: int, p0: bytes) -> bool:
        """0x0094 with ``sn`` on ``dev2app/<did>/<client_id>``."""
        topic = f"dev2app/{self._identity().did}/{client_id}"
        return await self._publish(topic, encode_envelope(BusinessCmd.CONTROL_REPLY, p0, sn=sn))

    async def _publish(self, topic: str, payload: bytes) -> bool:
        client = self._client
        if client is None or not self.connected:
            return False
        try:
            await client.publish(topic, payload)
        except BrokerError as exc:
            _LOGGER.warning("publish to %s failed: %s", topic, exc)
            return False
        return True

    # -- the loop -------------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while True:
            await self._active.wait()
            self._restart.clear()
            try:
                async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.settings.http_timeout_s)
                ) as http:
                    identity = await self._registered(http)
                    provision = await self._provision(http, identity)
                    await self._report_versions(http, identity)
                await self._connected(identity, provision)
                backoff.reset()
            except (aiohttp.ClientError, TimeoutError, OSError, CloudError, CodecError) as exc:
                self._failed(exc)
            if self._restart.is_set():
                continue
            await backoff.wait(self._restart)

    def _failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last_error:
            _LOGGER.warning("cloud %s: %s", self.settings.cloud, text)
        self._last_error = text

    async def _registered(self, http: aiohttp.ClientSession) -> Identity:
        identity = self._identity()
        secret = self._sealing_secret(identity) if identity.product_key else None
        # Registered through the plain API (or before the cloud gave passwords) while the encrypted one is wanted:
        # registering again through it keeps the DID (§1.3 rule) and brings a password of our own; once a process.
        upgrade = secret is not None and not identity.mqtt_password and not self._sealed_registration
        if identity.registered_with(self.settings.cloud, identity.product_key) and not upgrade:
            return identity
        if not identity.product_key:
            raise CloudError("no product key yet (waiting for the MCU's device info)")
        mqtt_password = ""
        if secret is not None:
            did, mqtt_password = await self._register_sealed(http, identity, secret)
            self._sealed_registration = True
        else:
            form = urlencode({"passcode": identity.passcode, "mac": identity.mac, "product_key": identity.product_key})
            async with http.post(
                f"{self.settings.cloud}/dev/devices",
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as response:
                body = await response.text()
                if response.status != 201 or "did=" not in body:
                    raise _Refused("registration refused", response.status, body)
            did = body[body.index("did=") + 4 :][:22]
        registered = dataclasses.replace(identity, did=did, cloud=self.settings.cloud, mqtt_password=mqtt_password)
        self._save_identity(registered)
        _LOGGER.info(
            "registered with %s as %s (%s)",
            self.settings.cloud,
            did,
            "encrypted API, own MQTT password" if mqtt_password else "MQTT password = passcode",
        )
        if registered.old_did == did:  # an encrypted device keeps its DID through a reset (§1.3): nothing to disable
            registered = dataclasses.replace(registered, old_did="", old_passcode="")
            self._save_identity(registered)
        elif registered.old_did:
            registered = await self._disable_old(http, registered)
        return registered

    async def _disable_old(self, http: aiohttp.ClientSession, identity: Identity) -> Identity:
        """Tell the cloud the DID given up by a reset is gone (``DELETE /dev/devices``, §1.1 step 4)."""
        form = urlencode({"did": identity.old_did, "passcode": identity.old_passcode})
        async with http.delete(
            f"{self.settings.cloud}/dev/devices",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            body = await response.text()
        refused = _Refused("disabling the old DID", response.status, body) if response.status != 200 else None
        if refused is not None and refused.code not in (9014, 9016, 9023):  # gone already, or not ours: forget it
            _LOGGER.warning("%s; will try again at the next connection", refused)
            return identity
        _LOGGER.info("old DID %s disabled on the cloud", identity.old_did)
        done = dataclasses.replace(identity, old_did="", old_passcode="")
        self._save_identity(done)
        return done

    async def _register_sealed(self, http: aiohttp.ClientSession, identity: Identity, secret: str) -> tuple[str, str]:
        """The DID and the MQTT password ("" from a cloud that gives none) of an encrypted registration."""
        sealed = encrypt_form(secret, urlencode({"mac": identity.mac, "passcode": identity.passcode, "type": "normal"}))
        async with http.post(
            f"{self.settings.cloud}/dev/{identity.product_key}/device",
            data=f"data={sealed}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            body = await response.text()
            if response.status != 201:
                raise _Refused("encrypted registration refused", response.status, body)
        fields = dict(parse_qsl(decrypt_form(secret, body.strip()), keep_blank_values=True))
        if len(fields.get("did", "")) < 22:
            raise CloudError(f"encrypted registration answered without a DID ({len(body)} bytes)")
        return fields["did"][:22], fields.get(MQTT_PASSWORD_FIELD, "")

    async def _report_versions(self, http: aiohttp.ClientSession, identity: Identity) -> None:
        """GAgent's two OTA checks (§1.2): the module's versions, then the MCU's; any answer but 200 = no update.

        What they are for here: the cloud keeps the versions (the bindings list shows them). There is no firmware
        to install, so an answer is not acted on; a failure is logged and the connection goes on, as GAgent's does.
        """
        info = self._mcu.device_info if self._mcu is not None else None
        checks = [(OTA_TYPE_WIFI, MODULE_HARD_VERSION, module_soft_version())]
        if info is not None:
            checks.append((OTA_TYPE_MCU, info.hardware_version, info.software_version))
        url = f"{self.settings.cloud}/dev/ota/v4.1/update_and_check/{identity.did}"
        for kind, hard, soft in checks:
            form = urlencode({"passcode": identity.passcode, "type": kind, "hard_version": hard, "soft_version": soft})
            try:
                async with http.post(
                    url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
                ) as response:
                    body = await response.text()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                _LOGGER.info("OTA check (type %d) failed: %s", kind, exc)
                return
            if response.status not in (200, 404):
                _LOGGER.info("OTA check (type %d) refused: HTTP %d %s", kind, response.status, body[:120])

    async def _provision(self, http: aiohttp.ClientSession, identity: Identity) -> Provision:
        secret = self._sealing_secret(identity)
        if secret is not None:
            sealed_did = encrypt_form(secret, identity.did)
            url = f"{self.settings.cloud}/dev/{identity.product_key}/device?did={sealed_did}&tls=0"
        else:
            url = f"{self.settings.cloud}/dev/devices/{identity.did}"
        async with http.get(url) as response:
            body = await response.text()
            if response.status != 200:
                refused = _Refused("provisioning refused", response.status, body)
                if refused.code in _UNKNOWN_DEVICE_CODES:
                    _LOGGER.warning("the cloud no longer knows %s (%s); registering again", identity.did, refused.code)
                    self._save_identity(dataclasses.replace(identity, did="", cloud=""))
                    self._restart.set()
                raise refused
        if secret is not None:
            body = decrypt_form(secret, body.strip())
        fields = dict(parse_qsl(body.strip()))
        try:
            provision = Provision(fields["host"], int(fields["port"]), int(fields.get("server_ts", "0")))
        except (KeyError, ValueError) as exc:
            raise CloudError(f"provisioning answer without host/port: {body[:120]!r}") from exc
        self.server_ts = provision.server_ts
        return provision

    async def _connected(self, identity: Identity, provision: Provision) -> None:
        client = MqttClient(
            provision.host,
            provision.port,
            client_id=identity.did,
            username=identity.did,
            password=identity.broker_password,
            protocol=MQTT_31,
            keepalive_s=self.settings.keepalive_s,
            timeout_s=self.settings.http_timeout_s,
        )
        await client.connect()
        try:
            for topic in (
                f"ser2cli_noti/{identity.product_key}",
                f"ser2cli_res/{identity.did}",
                f"app2dev/{identity.did}/#",
            ):
                await client.subscribe(topic)
            self._client = client
            self.connected = True
            self.connects += 1
            self._last_error = ""
            _LOGGER.info("connected to the broker %s:%d as %s", provision.host, provision.port, identity.did)
            self._changed()
            loop = asyncio.get_running_loop()
            reader = loop.create_task(self._read(client, identity))
            stop = loop.create_task(self._restart.wait())
            try:
                await client.publish("cli2ser_req", encode_service(ServiceCmd.ONLINE_QUERY))
                await self._publish_current_state()
                done, _ = await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    reader.result()  # the broker went away: raise its error
            finally:
                for task in (reader, stop):
                    task.cancel()
                await asyncio.gather(reader, stop, return_exceptions=True)
        finally:
            self._client = None
            self.connected = False
            self.online_apps = 0
            await client.close()
            self._changed()
            _LOGGER.info("disconnected from the broker")

    async def _read(self, client: MqttClient, identity: Identity) -> None:
        prefix = f"app2dev/{identity.did}/"
        async for message in client.messages():
            topic, payload = message.topic, message.payload
            try:
                if topic.startswith(prefix):
                    envelope = decode_envelope(payload)
                    if envelope.cmd not in (BusinessCmd.TRANSMIT, BusinessCmd.CONTROL):
                        _LOGGER.info("ignored app frame 0x%04x on %s", envelope.cmd, topic)
                        continue
                    command = AppCommand(envelope.cmd, envelope.payload, topic[len(prefix) :], envelope.sn)
                    task = asyncio.get_running_loop().create_task(self._command(command))
                    self._commands.add(task)
                    task.add_done_callback(self._commands.discard)
                elif topic == f"ser2cli_res/{identity.did}":
                    frame = decode_service(payload)
                    if frame.cmd == ServiceCmd.ONLINE_COUNT and len(frame.body) >= 2:
                        self.online_apps = int.from_bytes(frame.body[:2], "big")
                        self._changed()
            except CodecError as exc:
                _LOGGER.info("ignored a bad frame on %s (%s): %s", topic, payload[:64].hex(), exc)
