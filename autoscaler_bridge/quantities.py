"""Where a number a user wrote is read: Kubernetes quantities (`500m`, `2Gi`, `1e3`) and the spec's counts and
amounts, each in time linear in its length and bounded to what Kubernetes itself accepts.

A quantity is parsed as Kubernetes' `resource.ParseQuantity` parses it (sign, digits, an optional fraction, then a
binary suffix `Ki`…`Ei`, a decimal one `n`…`E`, or an exponent `e<int32>`), and its size is known from the digits'
count and the exponent before any arithmetic: `1e1000000` is refused as too large at once, where turning it into
an integer would hold a core for minutes. A value above int64 (9223372036854775807, Kubernetes' bound for a
quantity) is refused; one below a nano-unit but above zero is rounded up to one, as Kubernetes does.

Counts (workers) are Kubernetes' replica counts: whole numbers up to int32. Other numbers (`upscalingSpeed`,
`idleTimeoutMinutes`) must be finite: YAML's `.inf` and `.nan` are numbers to Python, not to Kubernetes.
"""

from __future__ import annotations

import decimal
import math
import re
import reprlib
from typing import Any

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
_INT64_DIGITS = len(str(INT64_MAX))
_EXPONENT_DIGITS = len(str(INT32_MAX))  # Kubernetes reads an exponent as an int32
_NANO = decimal.Decimal("1e-9")
_QUANTITY = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE])|[eE]([+-]?[0-9]+))?")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}  # powers of two
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}  # powers of ten
_EXAMPLES = "(e.g. 500m, 1.5, 2Gi)"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_QUOTING = reprlib.Repr()
_QUOTING.maxlevel, _QUOTING.maxlist, _QUOTING.maxdict = 3, 4, 4
_QUOTING.maxstring = _QUOTING.maxlong = _QUOTING.maxother = 60


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, an ellipsis saying where it was cut."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def quote(value: Any, limit: int = 60) -> str:
    """A value as a problem message quotes it: short whatever it is (a huge number, a long string, a nesting deeper
    than Python's recursion limit), so a message stays readable and fits in an Event."""
    return cut(_QUOTING.repr(value), limit)


def _show(value: Any) -> str:
    return quote(value, 40)


def _too_large(value: Any) -> ValueError:
    return ValueError(f"{_show(value)} is more than Kubernetes allows for a quantity ({INT64_MAX})")


def parse_quantity(value: Any) -> decimal.Decimal:
    """A Kubernetes quantity (`500m`, `1.5`, `2Gi`, `1e3`, or a plain number) as a Decimal, exact to a nano-unit
    (rounded up); ValueError for anything else, a negative value or one above int64."""
    if _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_show(value)} is not a finite number")
        if abs(value) > INT64_MAX:
            raise _too_large(value)
        return _checked(decimal.Decimal(str(value)), value)
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a Kubernetes quantity {_EXAMPLES}")
    found = _QUANTITY.fullmatch(value)
    if found is None or not (found.group(2) or found.group(3)):
        raise ValueError(f"{_show(value)} is not a Kubernetes quantity {_EXAMPLES}")
    sign, whole, fraction, binary, decimal_suffix, exponent = found.groups()
    if exponent is not None and (  # its digits counted first: a long one is never turned into an int
        len(exponent.lstrip("+-").lstrip("0")) > _EXPONENT_DIGITS or abs(int(exponent)) > INT32_MAX
    ):
        raise ValueError(f"{_show(value)} has an exponent beyond what Kubernetes reads (int32)")
    power_of_ten = int(exponent) if exponent is not None else _DECIMAL.get(decimal_suffix or "", 0)
    mantissa = decimal.Decimal(f"{whole or '0'}.{fraction or ''}")
    if mantissa.is_zero():
        return decimal.Decimal(0)
    if sign == "-":
        raise ValueError(f"{_show(value)} is negative")
    # The size is known before any arithmetic: |value| < 10**magnitude.
    magnitude = mantissa.adjusted() + 1 + power_of_ten + math.ceil(_BINARY.get(binary or "", 0) * math.log10(2))
    if magnitude > _INT64_DIGITS + 1:  # surely above int64; closer ones are computed and compared
        raise _too_large(value)
    if magnitude < -9:  # below a nano-unit: Kubernetes rounds it up to one
        return _NANO
    with decimal.localcontext() as exact:
        exact.prec = len(whole or "") + len(fraction or "") + 40  # every digit kept: nothing is rounded here
        amount = mantissa.scaleb(power_of_ten) * (2 ** _BINARY.get(binary or "", 0))
        amount = amount.quantize(_NANO, rounding=decimal.ROUND_UP) if amount.as_tuple().exponent < -9 else amount
    return _checked(amount, value)


def _checked(amount: decimal.Decimal, value: Any) -> decimal.Decimal:
    if amount < 0:
        raise ValueError(f"{_show(value)} is negative")
    if amount > INT64_MAX:
        raise _too_large(value)
    return amount


def round_up(quantity: decimal.Decimal) -> int:
    """A quantity as the whole number Ray plans with (`500m` CPU is 1 Ray CPU); quantities are bounded, so cheap."""
    return int(quantity.to_integral_value(rounding=decimal.ROUND_UP))


def count_problem(value: Any) -> str | None:
    """Why `value` cannot be a count of workers (a whole number from 0 to int32, as a Kubernetes replica count)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{_show(value)} is not a whole number"
    if value < 0:
        return f"{_show(value)} is negative"
    if value > INT32_MAX:
        return f"{_show(value)} is more than Kubernetes allows for a count ({INT32_MAX})"
    return None


def amount_problem(value: Any, integer: bool) -> str | None:
    """Why `value` cannot be a non-negative amount (a whole number when `integer`), finite and within int64."""
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{_show(value)} is not a whole number"
    if not _is_number(value):
        return f"{_show(value)} is not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_show(value)} is not a finite number"
    if value < 0:
        return f"{_show(value)} is negative"
    if value > INT64_MAX:
        return f"{_show(value)} is more than Kubernetes allows ({INT64_MAX})"
    return None
