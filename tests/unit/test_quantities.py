"""Numbers a user writes: Kubernetes quantities read as ParseQuantity reads them, in time linear in their length and
bounded to int64; counts bounded to int32; amounts finite."""

from decimal import Decimal

import pytest

from autoscaler_bridge.quantities import INT32_MAX, INT64_MAX, amount_problem, count_problem, parse_quantity, round_up


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500m", Decimal("0.5")),
        ("1.", Decimal(1)),
        (".5", Decimal("0.5")),
        ("+2", Decimal(2)),
        ("-0", Decimal(0)),
        ("1e+3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1E", Decimal(10**18)),  # E is exa; e3 an exponent
        ("7Ei", Decimal(7 * 2**60)),
        ("100n", Decimal("1e-7")),
        ("0.0000000001", Decimal("1e-9")),  # below a nano-unit: rounded up to one, as Kubernetes does
        ("1e-1000000", Decimal("1e-9")),
        (str(INT64_MAX), Decimal(INT64_MAX)),
        ("0." + "0" * 100_000 + "1e100005", Decimal(10_000)),  # long, yet small: read exactly
    ],
)
def test_quantities_as_kubernetes_reads_them(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("1e1000000", "is more than Kubernetes allows for a quantity (9223372036854775807)"),  # froze the operator
        ("1" + "0" * 100_000, "is more than Kubernetes allows for a quantity"),
        (str(INT64_MAX + 1), "is more than Kubernetes allows for a quantity"),
        ("8Ei", "is more than Kubernetes allows for a quantity"),  # 2**63
        ("1e99999999999", "has an exponent beyond what Kubernetes reads (int32)"),
        ("1e" + "9" * 100_000, "has an exponent beyond what Kubernetes reads (int32)"),
        ("-1e1000000", "is negative"),
        ("-1m", "is negative"),
        (float("inf"), "is not a finite number"),
        (float("nan"), "is not a finite number"),
        (1e300, "is more than Kubernetes allows"),
        (10**30, "is more than Kubernetes allows"),
        ("1e", "is not a Kubernetes quantity"),
        (".", "is not a Kubernetes quantity"),
        ("1e1.5", "is not a Kubernetes quantity"),
        ("١", "is not a Kubernetes quantity"),  # a digit to Unicode, not to Kubernetes
        ("Infinity", "is not a Kubernetes quantity"),
        ({"cpu": 1}, "is not a Kubernetes quantity"),
    ],
)
def test_what_kubernetes_would_not_take_is_refused_at_once(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_quantity(value)


def test_a_refused_value_is_quoted_short():
    with pytest.raises(ValueError) as refused:
        parse_quantity("1" * 10_000 + "x")
    assert len(str(refused.value)) < 120


def test_bounded_quantities_round_up_to_whole_units():
    assert round_up(parse_quantity(str(INT64_MAX))) == INT64_MAX
    assert round_up(parse_quantity("1e-1000000")) == 1


@pytest.mark.parametrize(
    "value, problem",
    [
        (0, None),
        (INT32_MAX, None),
        (INT32_MAX + 1, "is more than Kubernetes allows for a count (2147483647)"),
        (-1, "is negative"),
        (1.0, "is not a whole number"),
        (True, "is not a whole number"),
        ("3", "is not a whole number"),
    ],
)
def test_counts_are_replica_counts(value, problem):
    found = count_problem(value)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    "value, integer, problem",
    [
        (1.5, False, None),
        (0, True, None),
        (float("nan"), False, "is not a finite number"),  # nan < 0 is False: it passed the old check
        (float("-inf"), False, "is not a finite number"),
        (1e300, False, "is more than Kubernetes allows"),
        (1.5, True, "is not a whole number"),
        ("1", False, "is not a number"),
        (-0.5, False, "is negative"),
    ],
)
def test_amounts_are_finite_and_bounded(value, integer, problem):
    found = amount_problem(value, integer)
    assert (found is None) if problem is None else (problem in found)
