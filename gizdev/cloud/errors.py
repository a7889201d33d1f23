"""Gizwits Open API error codes, and the one place where exceptions become HTTP error responses.

Handlers raise :class:`ApiError` with a :class:`Code` (and, optionally, a detail text for the client); the HTTP
layer catches everything at its boundary and calls :func:`error_response`, which is the only function that turns
an exception into ``(status, body)``. Anything that is not an :class:`ApiError` becomes 9008 "server error" with no
detail, so internal text (tracebacks, SQL, paths) never reaches a client; it is logged here instead.

The table is cloud protocol §3.12: codes and messages from the vendor's English appendix and newer Chinese page,
HTTP status per code from the older Chinese page. Messages are copied verbatim, typos included ("alread",
"delele"): apps display them and some clients compare them. Two deliberate choices:

* 9004 uses the text the live service sends, ``"token invalid!"`` (the docs print ``"token invalid"``).
* Rows whose HTTP status the docs leave open ("–": 9077, 9080–9101, 9999) answer ``DEFAULT_HTTP_STATUS`` (400):
  every one of them is a refusal of the request as sent (sharing and binding rules), a client error.

The body is ``{"error_code": <int>, "error_message": <text>, "detail_message": <text or null>}`` (§3.1: the live
service sends an integer code with ``detail_message``; clients key on ``error_code``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import TypedDict

from gizdev.cloud.storage.errors import (
    AlreadyExists,
    DeviceDisabled,
    EncryptionRequired,
    InvalidInput,
    NotFound,
    PasscodeMismatch,
    StorageError,
)
from gizdev.errors import CloudError
from gizdev.protocol.device_api import FormCipherError

__all__ = [
    "DEFAULT_HTTP_STATUS",
    "ERROR_TABLE",
    "ApiError",
    "Code",
    "ErrorBody",
    "ErrorListItem",
    "ErrorRow",
    "PasswordPolicyError",
    "api_error_for",
    "error_list",
    "error_response",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_HTTP_STATUS = 400  # for rows whose HTTP status is "–" in cloud protocol §3.12


class Code(IntEnum):
    """Every Gizwits Open API error code of cloud protocol §3.12; member names drop the ``GIZ_OPENAPI_`` prefix."""

    MAC_ALREADY_REGISTERED = 9001
    PRODUCT_KEY_INVALID = 9002
    APPID_INVALID = 9003
    TOKEN_INVALID = 9004
    USER_NOT_EXIST = 9005
    TOKEN_EXPIRED = 9006
    M2M_ID_INVALID = 9007
    SERVER_ERROR = 9008
    CODE_EXPIRED = 9009
    CODE_INVALID = 9010
    SANDBOX_SCALE_QUOTA_EXHAUSTED = 9011
    PRODUCTION_SCALE_QUOTA_EXHAUSTED = 9012
    PRODUCT_HAS_NO_REQUEST_SCALE = 9013
    DEVICE_NOT_FOUND = 9014
    FORM_INVALID = 9015
    DID_PASSCODE_INVALID = 9016
    DEVICE_NOT_BOUND = 9017
    PHONE_UNAVAILABLE = 9018
    USERNAME_UNAVAILABLE = 9019
    USERNAME_PASSWORD_ERROR = 9020
    SEND_COMMAND_FAILED = 9021
    EMAIL_UNAVAILABLE = 9022
    DEVICE_DISABLED = 9023
    FAILED_NOTIFY_M2M = 9024
    ATTR_INVALID = 9025
    USER_INVALID = 9026
    FIRMWARE_NOT_FOUND = 9027
    JD_PRODUCT_NOT_FOUND = 9028
    DATAPOINT_DATA_NOT_FOUND = 9029
    SCHEDULER_NOT_FOUND = 9030
    QQ_OAUTH_KEY_INVALID = 9031
    OTA_SERVICE_OK_BUT_IN_IDLE = 9032
    BT_FIRMWARE_UNVERIFIED = 9033
    BT_FIRMWARE_NOTHING_TO_UPGRADE = 9034
    SAVE_KAIROSDB_ERROR = 9035
    EVENT_NOT_DEFINED = 9036
    SEND_SMS_FAILED = 9037
    APPLICATION_AUTH_INVALID = 9038
    NOT_ALLOWED_CALL_API = 9039
    BAD_QRCODE_CONTENT = 9040
    REQUEST_THROTTLED = 9041
    DEVICE_OFFLINE = 9042
    TIMESTAMP_INVALID = 9043
    SIGNATURE_INVALID = 9044
    DEPRECATED_API = 9045
    REGISTER_IS_BUSY = 9046
    DEVICE_ENCRYPT_DISABLED = 9047
    DEVICE_ENCRYPT_ENABLED = 9048
    EMAIL_NOT_ACTIVATED = 9077
    CANNOT_SHARE_TO_SELF = 9080
    ONLY_OWNER_CAN_SHARE = 9081
    NOT_FOUND_GUEST = 9082
    GUEST_ALREADY_BOUND = 9083
    NOT_FOUND_SHARING_INFO = 9084
    NOT_FOUND_THE_MESSAGE = 9085
    SHARING_IS_WAITING_FOR_ACCEPT = 9087
    SHARING_IS_EXPIRED = 9088
    SHARING_IS_COMPLETED = 9089
    INVALID_SHARING_BECAUSE_UNBINDING = 9090
    ONLY_OWNER_CAN_BIND = 9092
    ONLY_OWNER_CAN_OPERATE = 9093
    SHARING_ALREADY_CANCELLED = 9094
    OWNER_CANNOT_UNBIND_SELF = 9095
    ONLY_GUEST_CAN_CHECK_QRCODE = 9096
    MESSAGE_ALREADY_DELETED = 9098
    BINDING_NOTIFY_FAILED = 9099
    ONLY_SELF_CAN_MODIFY_ALIAS = 9100
    ONLY_RECEIVER_CAN_MARK_MESSAGE = 9101
    SCENE_NOT_FOUND = 9220
    SCENE_NOT_OWNED = 9221
    RESERVED = 9999


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One row of the error table; ``name`` is the vendor's constant, ``None`` where the docs give none."""

    code: Code
    http_status: int
    name: str | None
    message: str


_D = DEFAULT_HTTP_STATUS

# (code, HTTP status, vendor name, message) — cloud protocol §3.12, in its order.
_ROWS: tuple[tuple[Code, int, str | None, str], ...] = (
    (Code.MAC_ALREADY_REGISTERED, 400, "GIZ_OPENAPI_MAC_ALREADY_REGISTERED", "mac already registered!"),
    (Code.PRODUCT_KEY_INVALID, 400, "GIZ_OPENAPI_PRODUCT_KEY_INVALID", "product_key invalid"),
    (Code.APPID_INVALID, 400, "GIZ_OPENAPI_APPID_INVALID", "appid invalid"),
    (Code.TOKEN_INVALID, 400, "GIZ_OPENAPI_TOKEN_INVALID", "token invalid!"),  # live text; docs: "token invalid"
    (Code.USER_NOT_EXIST, 400, "GIZ_OPENAPI_USER_NOT_EXIST", "user not exist"),
    (Code.TOKEN_EXPIRED, 400, "GIZ_OPENAPI_TOKEN_EXPIRED", "token expired"),
    (Code.M2M_ID_INVALID, 400, "GIZ_OPENAPI_M2M_ID_INVALID", "m2m_id invalid"),
    (Code.SERVER_ERROR, 500, "GIZ_OPENAPI_SERVER_ERROR", "server error"),
    (Code.CODE_EXPIRED, 400, "GIZ_OPENAPI_CODE_EXPIRED", "code expired"),
    (Code.CODE_INVALID, 400, "GIZ_OPENAPI_CODE_INVALID", "code invalid"),
    (
        Code.SANDBOX_SCALE_QUOTA_EXHAUSTED,
        400,
        "GIZ_OPENAPI_SANDBOX_SCALE_QUOTA_EXHAUSTED",
        "sandbox scale quota exhausted!",
    ),
    (
        Code.PRODUCTION_SCALE_QUOTA_EXHAUSTED,
        400,
        "GIZ_OPENAPI_PRODUCTION_SCALE_QUOTA_EXHAUSTED",
        "production scale quota exhausted!",
    ),
    (
        Code.PRODUCT_HAS_NO_REQUEST_SCALE,
        400,
        "GIZ_OPENAPI_PRODUCT_HAS_NO_REQUEST_SCALE",
        "product has no request scale!",
    ),
    (Code.DEVICE_NOT_FOUND, 404, "GIZ_OPENAPI_DEVICE_NOT_FOUND", "device not found!"),
    (Code.FORM_INVALID, 400, "GIZ_OPENAPI_FORM_INVALID", "form invalid!"),
    (Code.DID_PASSCODE_INVALID, 400, "GIZ_OPENAPI_DID_PASSCODE_INVALID", "did or passcode invalid!"),
    (Code.DEVICE_NOT_BOUND, 401, "GIZ_OPENAPI_DEVICE_NOT_BOUND", "device not bound!"),
    (Code.PHONE_UNAVAILABLE, 400, "GIZ_OPENAPI_PHONE_UNAVALIABLE", "phone unavailable!"),
    (Code.USERNAME_UNAVAILABLE, 400, "GIZ_OPENAPI_USERNAME_UNAVALIABLE", "username unavailable!"),
    (Code.USERNAME_PASSWORD_ERROR, 400, "GIZ_OPENAPI_USERNAME_PASSWORD_ERROR", "username or password error!"),
    (Code.SEND_COMMAND_FAILED, 400, "GIZ_OPENAPI_SEND_COMMAND_FAILED", "send command failed!"),
    (Code.EMAIL_UNAVAILABLE, 400, "GIZ_OPENAPI_EMAIL_UNAVALIABLE", "email unavailable!"),
    (Code.DEVICE_DISABLED, 400, "GIZ_OPENAPI_DEVICE_DISABLED", "device is disabled!"),
    (Code.FAILED_NOTIFY_M2M, 400, "GIZ_OPENAPI_FAILED_NOTIFY_M2M", "fail to notify m2m!"),
    (Code.ATTR_INVALID, 400, "GIZ_OPENAPI_ATTR_INVALID", "attr invalid!"),
    (Code.USER_INVALID, 400, "GIZ_OPENAPI_USER_INVALID", "user invalid!"),
    (Code.FIRMWARE_NOT_FOUND, 404, "GIZ_OPENAPI_FIRMWARE_NOT_FOUND", "firmware not found!"),
    (Code.JD_PRODUCT_NOT_FOUND, 404, "GIZ_OPENAPI_JD_PRODUCT_NOT_FOUND", "JD product info not found!"),
    (Code.DATAPOINT_DATA_NOT_FOUND, 400, "GIZ_OPENAPI_DATAPOINT_DATA_NOT_FOUND", "datapoint data not found!"),
    (Code.SCHEDULER_NOT_FOUND, 404, "GIZ_OPENAPI_SCHEDULER_NOT_FOUND", "scheduler not found!"),
    (Code.QQ_OAUTH_KEY_INVALID, 400, "GIZ_OPENAPI_QQ_OAUTH_KEY_INVALID", "qq oauth key invalid!"),
    (
        Code.OTA_SERVICE_OK_BUT_IN_IDLE,
        400,
        "GIZ_OPENAPI_OTA_SERVICE_OK_BUT_IN_IDLE",
        "ota upgrade service OK, but in idle or disable!",
    ),
    (
        Code.BT_FIRMWARE_UNVERIFIED,
        400,
        "GIZ_OPENAPI_BT_FIRMWARE_UNVERIFIED",
        "bt firmware unverified, except verify device!",
    ),
    (
        Code.BT_FIRMWARE_NOTHING_TO_UPGRADE,
        404,
        "GIZ_OPENAPI_BT_FIRMWARE_NOTHING_TO_UPGRADE",
        "bt firmware is OK, but nothing to upgrade!",
    ),
    (Code.SAVE_KAIROSDB_ERROR, 500, "GIZ_OPENAPI_SAVE_KAIROSDB_ERROR", "Save kairosdb error!"),
    (Code.EVENT_NOT_DEFINED, 400, "GIZ_OPENAPI_EVENT_NOT_DEFINED", "event not defined!"),
    (Code.SEND_SMS_FAILED, 400, "GIZ_OPENAPI_SEND_SMS_FAILED", "send sms failed!"),
    (
        Code.APPLICATION_AUTH_INVALID,
        400,
        "GIZ_OPENAPI_APPLICATION_AUTH_INVALID",
        "X-Gizwits-Application-Auth invalid!",
    ),
    (Code.NOT_ALLOWED_CALL_API, 403, "GIZ_OPENAPI_NOT_ALLOWED_CALL_API", "Not allowed to call deprecated API!"),
    (Code.BAD_QRCODE_CONTENT, 400, "GIZ_OPENAPI_BAD_QRCODE_CONTENT", "bad qrcode content!"),
    (Code.REQUEST_THROTTLED, 429, "GIZ_OPENAPI_REQUEST_THROTTLED", "request was throttled"),
    (Code.DEVICE_OFFLINE, 400, "GIZ_OPENAPI_DEVICE_OFFLINE", "device offline!"),
    (Code.TIMESTAMP_INVALID, 400, "GIZ_OPENAPI_TIMESTAMP_INVALID", "X-Gizwits-Timestamp invalid!"),
    (Code.SIGNATURE_INVALID, 400, "GIZ_OPENAPI_SIGNATURE_INVALID", "X-Gizwits-Signature invalid!"),
    (Code.DEPRECATED_API, 400, "GIZ_OPENAPI_DEPRECATED_API", "API deprecated!"),
    (Code.REGISTER_IS_BUSY, 400, "GIZ_OPENAPI_REGISTER_IS_BUSY", "Register already in progress!"),
    (Code.DEVICE_ENCRYPT_DISABLED, 400, None, "device encrypt disabled!"),
    (Code.DEVICE_ENCRYPT_ENABLED, 400, None, "device encrypt enabled, does not support this api!"),
    (Code.EMAIL_NOT_ACTIVATED, _D, "GIZ_OPENAPI", "email already exists but not activate!"),
    (Code.CANNOT_SHARE_TO_SELF, _D, "GIZ_OPENAPI_CANNOT_SHARE_TO_SELF", "can not share device to self!"),
    (Code.ONLY_OWNER_CAN_SHARE, _D, "GIZ_OPENAPI_ONLY_OWNER_CAN_SHARE", "guest or normal user can not share device!"),
    (Code.NOT_FOUND_GUEST, _D, "GIZ_OPENAPI_NOT_FOUND_GUEST", "guest user not found!"),
    (Code.GUEST_ALREADY_BOUND, _D, "GIZ_OPENAPI_GUEST_ALREADY_BOUND", "guest user alread bound!"),
    (Code.NOT_FOUND_SHARING_INFO, _D, "GIZ_OPENAPI_NOT_FOUND_SHARING_INFO", "sharing record not found!"),
    (Code.NOT_FOUND_THE_MESSAGE, _D, "GIZ_OPENAPI_NOT_FOUND_THE_MESSAGE", "message record not found!"),
    (
        Code.SHARING_IS_WAITING_FOR_ACCEPT,
        _D,
        "GIZ_OPENAPI_SHARING_IS_WAITING_FOR_ACCEPT",
        "sharing alread created,waiting for the guest to accept!",
    ),
    (Code.SHARING_IS_EXPIRED, _D, "GIZ_OPENAPI_SHARING_IS_EXPIRED", "sharing record expired!"),
    (Code.SHARING_IS_COMPLETED, _D, "GIZ_OPENAPI_SHARING_IS_COMPLETED", "sharing record status is not unaccept!"),
    (
        Code.INVALID_SHARING_BECAUSE_UNBINDING,
        _D,
        "GIZ_OPENAPI_INVALID_SHARING_BECAUSE_UNBINDING",
        "owner binding disabled!",
    ),
    (Code.ONLY_OWNER_CAN_BIND, _D, "GIZ_OPENAPI_ONLY_OWNER_CAN_BIND", "owner exist, guest can not bind!"),
    (
        Code.ONLY_OWNER_CAN_OPERATE,
        _D,
        "GIZ_OPENAPI_ONLY_OWNER_CAN_OPERATE",
        "permission denied, you are not owner!",
    ),
    (Code.SHARING_ALREADY_CANCELLED, _D, "GIZ_OPENAPI_SHARING_ALREADY_CANCELLED", "sharing already canceled!"),
    (Code.OWNER_CANNOT_UNBIND_SELF, _D, "GIZ_OPENAPI_OWNER_CANNOT_UNBIND_SELF", "can not unbind self!"),
    (
        Code.ONLY_GUEST_CAN_CHECK_QRCODE,
        _D,
        "GIZ_OPENAPI_ONLY_GUEST_CAN_CHECK_QRCODE",
        "permission denied, you are not guest!",
    ),
    # The docs print 9099's text for 9098 too; kept verbatim (clients key on the code, not the text).
    (Code.MESSAGE_ALREADY_DELETED, _D, "GIZ_OPENAPI_MESSAGE_ALREADY_DELETED", "notify delele binding failed!"),
    (Code.BINDING_NOTIFY_FAILED, _D, "GIZ_OPENAPI_BINDING_NOTIFY_FAILED", "notify delele binding failed!"),
    (
        Code.ONLY_SELF_CAN_MODIFY_ALIAS,
        _D,
        "GIZ_OPENAPI_ONLY_SELF_CAN_MODIFY_ALIAS",
        "permission denied, you are not owner or guest!",
    ),
    (
        Code.ONLY_RECEIVER_CAN_MARK_MESSAGE,
        _D,
        "GIZ_OPENAPI_ONLY_RECEIVER_CAN_MARK_MESSAGE",
        "permission denied, you are not the receiver!",
    ),
    (Code.SCENE_NOT_FOUND, 404, None, "scene not found!"),
    (Code.SCENE_NOT_OWNED, 400, None, "the scene does not belong to you!"),
    (Code.RESERVED, _D, "GIZ_OPENAPI_RESERVED", "reserved"),
)

ERROR_TABLE: Mapping[int, ErrorRow] = MappingProxyType(
    {code: ErrorRow(code, status, name, message) for code, status, name, message in _ROWS}
)
"""Every row of §3.12 by code (look up with a :class:`Code` or a plain ``int``)."""


class ErrorBody(TypedDict):
    """The JSON body of an error response."""

    error_code: int
    error_message: str
    detail_message: str | None


class ErrorListItem(TypedDict):
    """One entry of ``GET /errors``."""

    status: int
    error_code: int
    error_message: str


class ApiError(CloudError):
    """A request refused with a Gizwits error code; ``detail`` (optional) is shown to the client as-is."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        if code not in ERROR_TABLE:
            raise ValueError(f"{code} is not a Gizwits error code of cloud protocol §3.12")
        self.code = Code(code)
        self.detail = detail
        super().__init__(self.code, detail)

    @property
    def row(self) -> ErrorRow:
        """The table row of this error's code."""
        return ERROR_TABLE[self.code]

    @property
    def http_status(self) -> int:
        """The HTTP status this code is answered with."""
        return self.row.http_status

    @property
    def message(self) -> str:
        """The vendor's fixed text for this code (the ``error_message`` field)."""
        return self.row.message

    def to_json(self) -> ErrorBody:
        """The response body: ``{"error_code", "error_message", "detail_message"}``."""
        return {"error_code": int(self.code), "error_message": self.message, "detail_message": self.detail}

    def __str__(self) -> str:
        text = f"{int(self.code)} {self.message}"
        return f"{text}: {self.detail}" if self.detail else text


class PasswordPolicyError(ApiError):
    """A new password breaks a rule of the password policy; answered as 9015 with the rule in the detail."""

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(Code.FORM_INVALID, f"password: {reason}")


def error_list() -> list[ErrorListItem]:
    """The body of ``GET /errors``: every code with its HTTP status and message, in code order."""
    return [
        {"status": row.http_status, "error_code": int(row.code), "error_message": row.message}
        for row in sorted(ERROR_TABLE.values(), key=lambda row: row.code)
    ]


def error_response(exc: Exception) -> tuple[int, ErrorBody]:
    """Map any exception to ``(http_status, body)``; the one place that does so.

    An :class:`ApiError` answers with its own code and detail, and so does an error :func:`api_error_for`
    translates (storage refusals, undecryptable device forms). Anything else is a bug or an outage on our side:
    it answers 9008 "server error" with no detail (nothing internal leaks) and is logged here with its
    traceback, so the caller should not log it again.
    """
    if not isinstance(exc, ApiError):
        translated = api_error_for(exc)
        if translated is not None:
            exc = translated
    if isinstance(exc, ApiError):
        return exc.http_status, exc.to_json()
    _LOGGER.error("unexpected %s answered as 9008 server error", type(exc).__name__, exc_info=exc)
    server_error = ApiError(Code.SERVER_ERROR)
    return server_error.http_status, server_error.to_json()


# Which code a missing row of each kind answers with (§3.12): the entity names are the storage's.
_NOT_FOUND_CODES = {
    "app": Code.APPID_INVALID,
    "product": Code.PRODUCT_KEY_INVALID,
    "device": Code.DEVICE_NOT_FOUND,
    "user": Code.USER_NOT_EXIST,
    "binding": Code.DEVICE_NOT_BOUND,
}
_TAKEN_CODES = {"username": Code.USERNAME_UNAVAILABLE, "phone_id": Code.USERNAME_UNAVAILABLE}


def api_error_for(exc: Exception) -> ApiError | None:
    """The Open API answer to a storage refusal or a refused device form, or None for a failure (9008)."""
    if isinstance(exc, FormCipherError):
        # The encrypted device API's form (§1.3): the reason goes to the device, not the bytes (which it sent).
        return ApiError(Code.FORM_INVALID, f"data: {exc.reason}")
    if not isinstance(exc, StorageError):
        return None
    if isinstance(exc, InvalidInput):
        return ApiError(Code.FORM_INVALID, str(exc))
    if isinstance(exc, NotFound) and exc.entity in _NOT_FOUND_CODES:
        return ApiError(_NOT_FOUND_CODES[exc.entity], str(exc))
    if isinstance(exc, AlreadyExists) and exc.field in _TAKEN_CODES:
        return ApiError(_TAKEN_CODES[exc.field], f"{exc.field} is taken")
    if isinstance(exc, PasscodeMismatch):
        return ApiError(Code.DID_PASSCODE_INVALID)
    if isinstance(exc, DeviceDisabled):
        return ApiError(Code.DEVICE_DISABLED, str(exc))
    if isinstance(exc, EncryptionRequired):
        return ApiError(Code.DEVICE_ENCRYPT_ENABLED, str(exc))
    return None
