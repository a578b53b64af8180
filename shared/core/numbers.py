"""Numbers read from text people or servers write (environment settings, config values, HTTP
headers): ASCII digits only. Python's int() and float() also take '١٢' (Arabic-Indic digits),
' 12 ', '+1', '1_000' and '1e3', and str.isdigit() says yes to '²', which int() then refuses
with a traceback; a setting is either what it plainly says or one line saying what it must be."""

import re

_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")


def is_whole(text: str) -> bool:
    """Whether `text` is a plain whole number in ASCII digits ('12'; not '١٢', '+1', '²', ' 1')."""
    return isinstance(text, str) and _WHOLE.fullmatch(text) is not None


def whole(text: str, what: str, low: int, high: int, unit: str = "") -> int:
    """`text` as a whole number from `low` to `high`; ValueError naming `what` otherwise."""
    if not is_whole(text) or not low <= int(text) <= high:
        raise ValueError(f"{what}={text[:40]!r} must be a whole number{unit} from {low} to {high}")
    return int(text)


def decimal(text: str, what: str, low: float, high: float, unit: str = "") -> float:
    """`text` as a decimal number (ASCII digits, one optional point) within (low, high]."""
    if not isinstance(text, str) or _DECIMAL.fullmatch(text) is None or not low < float(text) <= high:
        raise ValueError(f"{what}={text[:40]!r} must be a number{unit} above {low:g} and at most {high:g}")
    return float(text)
