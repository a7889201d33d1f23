"""The device API (cloud protocol §1.2-§1.3) beyond the end-to-end file: re-registration, DELETE, provisioning of
unknown and disabled devices, the encrypted variant, hostile forms, and GAgent's single 1 KiB read of every reply.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import parse_qsl, quote

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gizdev.cloud.security import new_product_secret
from gizdev.protocol.device_api import decrypt_form, encrypt_form
from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread, Reply
from tests.cloud.test_open_api_seed import CONNACK_OK, assert_error, register, wait_for
from tests.guards import run

PK = TEMP_HUMI_SCHEMA["product_key"]
OTHER_PK = "0be70be70be70be70be70be70be70be7"  # well-formed, not a product of this cloud
MAC = "AABBCCDDEEFF"
CONNACK_REFUSED = bytes.fromhex("20020005")  # what mosquitto answers a wrong password: 5, not authorized
GAGENT_RECV = 1024  # GAgent reads each reply with one recv() into 1 KiB (wire observations §2)


def form_refused(reply: Reply, code: int, status: int = 400) -> None:
    assert_error(reply, code, status)


async def mqtt_login(cloud: CloudThread, did: str, passcode: str) -> bytes:
    """The CONNACK for GAgent's CONNECT (client id = user = DID, password = passcode, §1.4)."""
    client = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
    try:
        return await client.connect(did, did, passcode)
    finally:
        await client.close()


def login(cloud: CloudThread, did: str, passcode: str) -> bytes:
    return run(mqtt_login(cloud, did, passcode))


def provision(cloud: CloudThread, did: str) -> Reply:
    return cloud.request("GET", f"/dev/devices/{did}", headers={"Host": "api.gizwits.com"})


def devices_in(cloud: CloudThread) -> list[str]:
    return [device.did for device in cloud.call(cloud.storage.list_devices(limit=1000))]


# -- registration rules ---------------------------------------------------------------------------------------


def test_reregistration_rules_and_delete(cloud: CloudThread) -> None:
    cloud.add_product()
    first = register(cloud, MAC, "PASSCODEAA")
    assert len(first) == 22
    # The same mac + product + passcode (a retry, a lost reply): the same DID, still 201 (§1.2).
    assert register(cloud, MAC, "PASSCODEAA") == first
    assert register(cloud, MAC.lower(), "PASSCODEAA") == first  # the same MAC, written in lower case
    # The same MAC with another product is another device.
    cloud.add_product({**TEMP_HUMI_SCHEMA, "product_key": "5eed0000000000000000000000000002"})
    assert register(cloud, MAC, "PASSCODEAA", "5eed0000000000000000000000000002") != first
    # A new passcode (the module was reset, §1.1): a new DID; the old one keeps working until GAgent DELETEs it.
    second = register(cloud, MAC, "PASSCODEBB")
    assert second != first
    assert provision(cloud, first).status == 200 and provision(cloud, second).status == 200
    assert login(cloud, first, "PASSCODEAA") == CONNACK_OK
    assert login(cloud, second, "PASSCODEBB") == CONNACK_OK

    # DELETE needs the old DID's own passcode: 9016 otherwise, and nothing changes.
    for passcode in ("WRONGPASS", "PASSCODEBB", "passcodeaa"):
        form_refused(cloud.form("DELETE", "/dev/devices", f"did={first}&passcode={passcode}"), 9016)
    assert provision(cloud, first).status == 200
    deleted = cloud.form("DELETE", "/dev/devices", f"did={first}&passcode=PASSCODEAA")
    assert deleted.status == 200, deleted
    # Disabled: provisioning refuses it (9023), its MQTT login is refused, the new DID is untouched.
    form_refused(provision(cloud, first), 9023)
    wait_for(lambda: login(cloud, first, "PASSCODEAA") != CONNACK_OK, 5.0, "the old DID's MQTT login refused")
    assert login(cloud, second, "PASSCODEBB") == CONNACK_OK
    # A repeated DELETE is harmless; a disabled DID is never handed out again.
    assert cloud.form("DELETE", "/dev/devices", f"did={first}&passcode=PASSCODEAA").status == 200
    third = register(cloud, MAC, "PASSCODEAA")
    assert third not in (first, second)
    # DELETE of a DID this cloud never issued: 9014.
    form_refused(cloud.form("DELETE", "/dev/devices", f"did={'Z' * 22}&passcode=PASSCODEAA"), 9014, 404)


def test_mqtt_login_works_as_soon_as_registration_answers(cloud: CloudThread) -> None:
    cloud.add_product()
    for index in range(3):
        passcode = f"FRESHPASS{index}"
        did = register(cloud, f"00112233445{index}", passcode)
        assert login(cloud, did, passcode) == CONNACK_OK  # no waiting: GAgent connects ~1 s after provisioning
        assert login(cloud, did, "NOTTHEPASS") != CONNACK_OK


def test_provisioning_of_unknown_and_malformed_dids(cloud: CloudThread) -> None:
    cloud.add_product()
    for did in ("Q" * 22, "short", "x" * 300, "%00", "%F0%9F%92%A5", "{did}", "..%2Fdevices"):
        form_refused(provision(cloud, did), 9014, 404)
    did = register(cloud, MAC, "PASSCODEAA")
    reply = provision(cloud, did)
    assert reply.status == 200
    fields = dict(pair.split("=", 1) for pair in reply.body.split("&"))
    assert {"host", "port", "server_ts"} <= set(fields)


def test_unknown_product_is_refused(cloud: CloudThread) -> None:
    cloud.add_product()
    reply = cloud.form("POST", "/dev/devices", f"passcode=PASSCODEAA&mac={MAC}&product_key={OTHER_PK}")
    form_refused(reply, 9002)
    assert devices_in(cloud) == []


# -- malformed forms ------------------------------------------------------------------------------------------

GOOD = {"passcode": "PASSCODEAA", "mac": MAC, "product_key": PK}


def form_of(**changes: str | None) -> str:
    fields = {**GOOD, **changes}
    return "&".join(f"{key}={value}" for key, value in fields.items() if value is not None)


MALFORMED_REGISTRATIONS = [
    form_of(mac="AABBCCDDEEF"),  # 11 digits
    form_of(mac="AABBCCDDEEFF0"),
    form_of(mac="GGBBCCDDEEFF"),
    form_of(mac="AA:BB:CC:DD:EE:FF"),
    form_of(mac="AA%3ABB%3ACC%3ADD%3AEE%3AFF"),
    form_of(mac=""),
    form_of(mac=None),
    form_of(product_key="0123"),
    form_of(product_key="g" * 32),
    form_of(product_key=PK + "0"),
    form_of(product_key=None),
    form_of(passcode=None),
    form_of(passcode=""),
    form_of(passcode="P" * 17),  # GAgent's MQTT password is at most 16 characters (§1.4)
    form_of(passcode="PASS%20CODE"),
    form_of(passcode="PASS%00CODE"),
    form_of(passcode="PASS'--"),
    form_of() + "&mac=001122334455",  # a field twice
    form_of() + "&passcode=OTHERPASS1",
    "&".join([form_of()] + [f"x{index}=1" for index in range(20)]),  # too many fields
    "passcode=PASSCODEAA&&mac=" + MAC,
    "garbage",
    "=",
    "%",
    form_of(passcode="P%C3%84SSCODE"),  # non-ASCII after decoding
]


def test_malformed_registrations_are_form_invalid_and_register_nothing(cloud: CloudThread) -> None:
    cloud.add_product()
    for text in MALFORMED_REGISTRATIONS:
        reply = cloud.form("POST", "/dev/devices", text)
        form_refused(reply, 9015)
    raw_bodies = [
        form_of(passcode="PÄSSCODE").encode("utf-8"),  # non-ASCII bytes on the wire
        form_of().encode() + b"\xff",
        b"\x00" * 10,
        form_of().encode() + b"&pad=" + b"x" * (1024 * 1024),  # 1 MiB, over the body cap
    ]
    for body in raw_bodies:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": "api.gizwits.com"}
        form_refused(cloud.request("POST", "/dev/devices", body, headers), 9015)
    assert devices_in(cloud) == []
    # The server is fine afterwards.
    assert len(register(cloud, MAC, "PASSCODEAA")) == 22


def test_malformed_deletes_are_refused(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud, MAC, "PASSCODEAA")
    for text in (
        f"did={did}",
        "passcode=PASSCODEAA",
        "",
        f"did={did}&passcode=",
        f"did={did}&did={did}&passcode=PASSCODEAA",
        f"did={did}&passcode=PASSCODEAA&passcode=PASSCODEAA",
        "did=&passcode=PASSCODEAA",
    ):
        form_refused(cloud.form("DELETE", "/dev/devices", text), 9015)
    form_refused(cloud.form("DELETE", "/dev/devices", f"did={did}&passcode=P%27%20OR%201%3D1"), 9015)
    form_refused(cloud.form("DELETE", "/dev/devices", "did=%27%20OR%201%3D1&passcode=PASSCODEAA"), 9014, 404)
    assert provision(cloud, did).status == 200  # still enabled


# -- the encrypted variant (§1.3) -----------------------------------------------------------------------------


def seal_raw(secret: str, block: bytes) -> str:
    """AES-128-ECB of ``block`` with no padding added: the padding inside is whatever ``block`` ends with."""
    encryptor = Cipher(algorithms.AES(bytes.fromhex(secret)), modes.ECB()).encryptor()
    return (encryptor.update(block) + encryptor.finalize()).hex()


def sealed_registration(secret: str, reply: Reply) -> tuple[str, str]:
    """The DID and MQTT password of an encrypted registration's reply: ``did=<did>&mqtt_password=<password>``."""
    fields = dict(parse_qsl(decrypt_form(secret, reply.body), strict_parsing=True))
    assert set(fields) == {"did", "mqtt_password"}, fields
    assert len(fields["did"]) == 22 and re.fullmatch(r"[A-Za-z0-9_-]{16}", fields["mqtt_password"]), fields
    return fields["did"], fields["mqtt_password"]


def test_encrypted_device_refuses_the_plain_api(cloud: CloudThread) -> None:
    _, secret = cloud.add_product()
    sealed = encrypt_form(secret, f"mac={MAC}&passcode=SEALEDPASS&type=normal")
    reply = cloud.form("POST", f"/dev/{PK}/device", f"data={sealed}")
    assert reply.status == 201, reply
    did, password = sealed_registration(secret, reply)
    form_refused(cloud.form("POST", "/dev/devices", f"passcode=SEALEDPASS&mac={MAC}&product_key={PK}"), 9048)
    form_refused(cloud.form("POST", "/dev/devices", f"passcode=OTHERPASS1&mac={MAC}&product_key={PK}"), 9048)
    form_refused(provision(cloud, did), 9048)
    form_refused(cloud.form("DELETE", "/dev/devices", f"did={did}&passcode=SEALEDPASS"), 9048)
    assert login(cloud, did, password) == CONNACK_OK
    assert login(cloud, did, "SEALEDPASS") == CONNACK_REFUSED  # the passcode, which bound users see, is not it
    # A plain device that then uses the encrypted API keeps its DID (§1.3: from then on it is fixed), and from
    # then on logs in with the password it got, no longer with its passcode.
    plain = register(cloud, "001122334455", "PLAINPASS1")
    assert login(cloud, plain, "PLAINPASS1") == CONNACK_OK
    converted = cloud.form(
        "POST", f"/dev/{PK}/device", f"data={encrypt_form(secret, 'mac=001122334455&passcode=PLAINPASS1')}"
    )
    converted_did, converted_password = sealed_registration(secret, converted)
    assert converted_did == plain and converted_password not in (password, "PLAINPASS1")
    form_refused(provision(cloud, plain), 9048)
    assert login(cloud, plain, "PLAINPASS1") == CONNACK_REFUSED
    assert login(cloud, plain, converted_password) == CONNACK_OK


def test_encrypted_api_hostile_input(cloud: CloudThread) -> None:
    _, secret = cloud.add_product()
    other_secret = new_product_secret()
    good = encrypt_form(secret, f"mac={MAC}&passcode=SEALEDPASS")
    bad_data = [
        "",
        "zz" * 16,  # not hex
        good[:-1],  # odd length
        good[:-2],  # not whole blocks
        "00" * 15,
        encrypt_form(other_secret, f"mac={MAC}&passcode=SEALEDPASS"),  # wrong key
        seal_raw(secret, b"mac=AABBCCDDEE\x00\x00"),  # bad padding (last byte 0)
        seal_raw(secret, b"mac=AABBCCDDE\x03\x02\x03"),  # bad padding (inconsistent bytes)
        seal_raw(secret, b"mac=\xff\xfe" + bytes([10] * 10)),  # padding fine, the text is not UTF-8
        encrypt_form(secret, "passcode=SEALEDPASS"),  # no mac
        encrypt_form(secret, f"mac={MAC}"),  # no passcode
        encrypt_form(secret, "mac=ZZ&passcode=SEALEDPASS"),
        encrypt_form(secret, f"mac={MAC}&passcode=SEALEDPASS&type=sub_dev"),
        encrypt_form(secret, f"mac={MAC}&passcode=SEALED PASS"),
        encrypt_form(secret, "garbage"),
        encrypt_form(secret, f"mac={MAC}&passcode=SEALEDPASS&mac=001122334455"),  # a field twice
        "00" * 8192,  # over the size cap
    ]
    for data in bad_data:
        form_refused(cloud.form("POST", f"/dev/{PK}/device", f"data={data}"), 9015)
    form_refused(cloud.form("POST", f"/dev/{PK}/device", f"data={good}&data={good}"), 9015)
    form_refused(cloud.form("POST", f"/dev/{PK}/device", f"sealed={good}"), 9015)
    for product_key in (OTHER_PK, "x", "' OR 1=1 --"):
        form_refused(cloud.form("POST", f"/dev/{quote(product_key)}/device", f"data={good}"), 9002)
    assert devices_in(cloud) == []

    registered = cloud.form("POST", f"/dev/{PK}/device", f"data={good}")
    assert registered.status == 201
    did, _ = sealed_registration(secret, registered)
    for sealed_did in (
        "",
        "nothex",
        encrypt_form(other_secret, did),
        encrypt_form(secret, did)[:-1],
    ):
        form_refused(cloud.request("GET", f"/dev/{PK}/device?did={sealed_did}&tls=0"), 9015)
    for unknown in ("Q" * 22, "", "x" * 100, "' OR 1=1 --"):
        form_refused(cloud.request("GET", f"/dev/{PK}/device?did={encrypt_form(secret, unknown)}"), 9014, 404)
    form_refused(cloud.request("GET", f"/dev/{OTHER_PK}/device?did={encrypt_form(secret, did)}"), 9002)


# -- GAgent's 1 KiB read ----------------------------------------------------------------------------------------


def exchange(cloud: CloudThread, request: bytes) -> bytes:
    """The whole reply to one GAgent-style request (headers + body, by Content-Length)."""
    with socket.create_connection(("127.0.0.1", cloud.http_port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
        return head + b"\r\n\r\n" + body


def gagent_post(path: str, body: str, method: str = "POST") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: api.gizwits.com\r\nContent-Length: {len(body.encode())}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n\r\n{body}"
    ).encode()


def gagent_get(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: api.gizwits.com\r\nCache-Control: no-cache\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    ).encode()


def test_every_reply_fits_gagents_single_read(cloud: CloudThread) -> None:
    _, secret = cloud.add_product()
    did = register(cloud, MAC, "PASSCODEAA")
    sealed = encrypt_form(secret, "mac=A0B1C2D3E4F5&passcode=SEALEDPASS&type=normal")
    long_junk = "x" * 900
    requests = [
        gagent_post("/dev/devices", f"passcode=PASSCODEAA&mac={MAC}&product_key={PK}"),
        gagent_post("/dev/devices", f"passcode=PASSCODEBB&mac={MAC}&product_key={PK}"),
        gagent_post("/dev/devices", f"passcode={long_junk}&mac={MAC}&product_key={PK}"),
        gagent_post("/dev/devices", f"passcode=PASSCODEAA&mac={long_junk}&product_key={PK}"),
        gagent_post("/dev/devices", f"passcode=PASSCODEAA&mac={MAC}&product_key={long_junk}"),
        gagent_post("/dev/devices", f"passcode=PASSCODEAA&mac={MAC}&product_key={OTHER_PK}"),
        gagent_post("/dev/devices", "%" * 900),
        gagent_post("/dev/devices", "&".join(f"field{index}={long_junk[:40]}" for index in range(20))),
        gagent_get(f"/dev/devices/{did}"),
        gagent_get(f"/dev/devices/{'Q' * 22}"),
        gagent_get(f"/dev/devices/{long_junk}"),
        gagent_post(
            f"/dev/ota/v4.1/update_and_check/{did}",
            "passcode=PASSCODEAA&type=1&hard_version=000LINUX&soft_version=04020006",
        ),
        gagent_post("/dev/devices", f"did={did}&passcode=WRONGPASS1", method="DELETE"),
        gagent_post("/dev/devices", f"did={did}&passcode={long_junk}", method="DELETE"),
        gagent_post("/dev/devices", f"did={did}&passcode=PASSCODEAA", method="DELETE"),
        gagent_get(f"/dev/devices/{did}"),  # now disabled
        gagent_post(f"/dev/{PK}/device", f"data={sealed}"),
        gagent_post(f"/dev/{PK}/device", f"data={'ab' * 450}"),
        gagent_post(f"/dev/{PK}/device", f"data={long_junk}"),
        gagent_get(f"/dev/{PK}/device?did={encrypt_form(secret, 'Q' * 22)}&tls=0"),
        gagent_post("/dev/devices", "x" * 100_000),
    ]
    statuses = []
    for request in requests:
        reply = exchange(cloud, request)
        assert len(reply) <= GAGENT_RECV, (request[:80], len(reply), reply[:300])
        statuses.append(int(reply.split(b" ", 2)[1]))
    assert statuses[:2] == [201, 201] and statuses[8] == 200 and statuses[16] == 201
    assert all(status < 500 for status in statuses), statuses
