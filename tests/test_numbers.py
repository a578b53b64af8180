"""Numbers read from settings, config values and headers (shared/core/numbers.py): ASCII digits
only, whatever else int() and float() would take."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core import numbers


@given(st.text(max_size=12))
def test_whole_takes_exactly_plain_ascii_digits(text):
    plain = text != "" and all("0" <= c <= "9" for c in text)
    assert numbers.is_whole(text) == plain
    if plain and int(text) <= 10**6:
        assert numbers.whole(text, "N", 0, 10**6) == int(text)
    else:
        with pytest.raises(ValueError) as refused:
            numbers.whole(text, "N", 0, 10**6)
        assert str(refused.value).startswith("N=") and "\n" not in str(refused.value)


@pytest.mark.parametrize("text", ["\u0661\u0662", "\u00b2", " 12", "12 ", "+1", "-1", "1_000", "1e3", "", "0x10",
                                  "\uff11\uff12"])
def test_what_int_or_isdigit_would_take_is_refused(text):
    assert not numbers.is_whole(text)
    with pytest.raises(ValueError):
        numbers.decimal(text, "X", 0, 10**9)


@pytest.mark.parametrize("text, value", [("30", 30.0), ("0.5", 0.5), (".5", 0.5), ("604800", 604800.0)])
def test_decimal_takes_plain_decimals_within_its_range(text, value):
    assert numbers.decimal(text, "T", 0, 604800) == value


@pytest.mark.parametrize("text", ["0", "604801", "inf", "nan", "1.", "1.2.3"])
def test_decimal_refuses_what_is_out_of_range_or_not_plain(text):
    with pytest.raises(ValueError, match=r"^T='.*' must be a number above 0 and at most 604800$"):
        numbers.decimal(text, "T", 0, 604800)
