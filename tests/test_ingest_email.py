"""A lead's emails are checked as pydantic's `EmailStr` checks them: the quick path for plain
addresses (`handlers.ingest.email_address`) gives the same address, or the same error, as
the full check on every input, plain or not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from handlers.ingest import email_address


def full_check(value: str) -> str:
    """The address as the full check gives it, or its error message."""
    try:
        return validate_email(value)[1]
    except PydanticCustomError as error:
        return f"error: {error}"


def quick_check(value: str) -> str:
    try:
        return email_address(value)
    except PydanticCustomError as error:
        return f"error: {error}"


CASES = [
    "buyer000001@example.org",
    "Buyer@Example.ORG",
    "buyer@EXAMPLE.org",
    "postmaster@example.com",
    "Postmaster@example.com",
    "first.last+tag@sub.example.co.uk",
    "a_b-c@x-y.example",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@example..com",
    "a@-example.com",
    "a@example-.com",
    "a@example.com.",
    "a@.example.com",
    "a@example",
    "a@localhost",
    "a@example.test",
    "a@example.invalid",
    "a@example.local",
    "a@example.onion",
    "a@example.arpa",
    "a@192.168.0.1",
    "a@[192.168.0.1]",
    "a@example.123",
    "a@xn--bcher-kva.example",
    "a@bücher.example",
    "a@ex_ample.com",
    "ü@example.com",
    "@example.com",
    "a@",
    "a",
    "a@b@example.com",
    " a@example.com",
    "a@example.com ",
    "Ann <a@example.com>",
    '"a b"@example.com',
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "x" * 240 + "@example.com",
    "x" * 241 + "@example.com",
    "x" * 242 + "@example.com",
    "a@" + ".".join(["b" * 60] * 4) + ".com",
    "a@" + ".".join(["b" * 61] * 4),
    "a@" + ".".join(["b" * 62] * 4),
    "a\r@example.com",
    "a@exam\nple.com",
]


@pytest.mark.parametrize("value", CASES)
def test_the_quick_path_agrees_with_the_full_check(value: str) -> None:
    assert quick_check(value) == full_check(value)


ADDRESS_CHARS = st.sampled_from("abcxyzABZ0189._+-@ üß\"<>[]()!#$%&'*/=?^`{|}~,;:\\")
LABEL = st.text(st.sampled_from("abcz019-_ÄüXN"), min_size=0, max_size=70)


@settings(max_examples=3000, deadline=None)
@given(st.text(ADDRESS_CHARS, max_size=80))
def test_any_text_gets_the_same_answer(value: str) -> None:
    assert quick_check(value) == full_check(value)


@settings(max_examples=3000, deadline=None)
@given(
    st.text(st.sampled_from("abcz019._+-AZ!#"), min_size=0, max_size=250),
    st.lists(LABEL, min_size=1, max_size=6),
)
def test_address_shaped_text_gets_the_same_answer(local: str, labels: list[str]) -> None:
    value = f"{local}@{'.'.join(labels)}"
    assert quick_check(value) == full_check(value)
