"""Account names in canonical form: what is one account, and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gizdev.cloud.names import email_key, phone_key, username_key


def test_usernames_are_trimmed_and_nfkc_folded() -> None:
    assert username_key("  ann ") == "ann"
    assert username_key("ａｎｎ") == "ann"  # full-width letters are the same name
    assert username_key("Ann") == "Ann"  # but case is kept: usernames are case-sensitive


def test_emails_are_case_folded() -> None:
    assert email_key(" Ann@Example.ORG ") == "ann@example.org"
    assert email_key("ＡＮＮ@example.org") == "ann@example.org"


def test_phones_lose_separators() -> None:
    assert phone_key("+86 138-0000-0000") == "+8613800000000"
    assert phone_key("13800000000") == "13800000000"


@pytest.mark.parametrize(
    "value",
    ["ann\u202egnp", "a\u200bnn", "ann\x00", "ann\x1b[31m", "\u2066ann\u2069", "   ", "a" * 129],
)
def test_hidden_or_empty_usernames_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        username_key(value)


@pytest.mark.parametrize("value", ["ann", "ann@", "@example.org", "ann@example", "a@b@c.org", "ann\u202e@x.org"])
def test_malformed_emails_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        email_key(value)


@pytest.mark.parametrize("value", ["", "+", "1234", "+86abc", "1" * 21, "++8613800000000", "138\u200b0000000"])
def test_malformed_phones_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        phone_key(value)


@given(st.text(max_size=40))
def test_a_key_is_its_own_key(value: str) -> None:
    for key in (username_key, email_key, phone_key):
        try:
            once = key(value)
        except ValueError:
            continue
        assert key(once) == once
