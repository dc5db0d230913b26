"""Kubernetes resource quantities ("100m", "64Mi", "1e3") as exact fractions.

kubelet works with `resource.Quantity.Value()` (rounded up to an integer) and `MilliValue()`
(thousandths, rounded up); both are reproduced here without floating point.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from cri_py.errors import InvalidArgument

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?\d+)$")


def parse_quantity(text: str, path: str = "quantity") -> Fraction:
    """The exact amount `text` stands for; InvalidArgument names `path` when it is malformed."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise InvalidArgument(f"{path}: invalid quantity {text!r}")
    sign, number, suffix = match.groups()
    amount = Fraction(number)
    if suffix in _BINARY:
        amount *= _BINARY[suffix]
    elif suffix in _DECIMAL:
        amount *= _DECIMAL[suffix]
    elif (exp := _EXPONENT.match(suffix)) is not None:
        amount *= Fraction(10) ** int(exp.group(1))
    else:
        raise InvalidArgument(f"{path}: invalid quantity {text!r} (unknown suffix {suffix!r})")
    return -amount if sign == "-" else amount


def value(amount: Fraction) -> int:
    """`Quantity.Value()`: the integer amount, rounded up."""
    return math.ceil(amount)


def milli_value(amount: Fraction) -> int:
    """`Quantity.MilliValue()`: the amount in thousandths, rounded up."""
    return math.ceil(amount * 1000)
