"""Schedules over updates: values at chosen updates against the formulas written out here."""
import math

import pytest

from fairseq_eb.schedules import SCHEDULES, schedule_fraction, validate_schedule


def logistic(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("update", [0, 1, 10, 50, 99, 100, 101, 1000])
def test_values_match_the_formulas(update):
    n = 100
    assert schedule_fraction("constant", update, 0) == 1.0
    assert schedule_fraction("linear", update, n) == min(1.0, update / n)
    assert schedule_fraction("exponential", update, n) == pytest.approx(1 - math.exp(-5 * update / n), abs=1e-15)
    assert schedule_fraction("exponential", update, n, 2.0) == pytest.approx(1 - math.exp(-2 * update / n))
    k, t = 10.0, min(update / n, 1.0)
    inv = (logistic(k * (t - 0.5)) - logistic(-k / 2)) / (logistic(k / 2) - logistic(-k / 2))
    assert schedule_fraction("inverse_sigmoid", update, n) == pytest.approx(inv, abs=1e-15)


def test_landmarks():
    assert schedule_fraction("linear", 0, 10) == 0.0 and schedule_fraction("linear", 5, 10) == 0.5
    assert schedule_fraction("exponential", 0, 10) == 0.0
    assert schedule_fraction("exponential", 10, 10) == pytest.approx(0.99326, abs=1e-5)
    assert schedule_fraction("inverse_sigmoid", 0, 10) == 0.0
    assert schedule_fraction("inverse_sigmoid", 5, 10) == pytest.approx(0.5)
    assert schedule_fraction("inverse_sigmoid", 10, 10) == 1.0
    assert schedule_fraction("linear", -3, 10) == 0.0  # never negative


@pytest.mark.parametrize("name", SCHEDULES)
def test_rising_and_bounded(name):
    values = [schedule_fraction(name, u, 50) for u in range(0, 200, 7)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)


@pytest.mark.parametrize("args,message", [
    (("cosine", 10, 0), r"--x must be one of \{constant, linear, exponential, inverse_sigmoid\}, got 'cosine'"),
    (("linear", 0, 0), r"--x linear needs --x-updates > 0"),
    (("linear", -1, 0), r"--x-updates must be an integer >= 0, got -1"),
    (("linear", 1.5, 0), r"--x-updates must be an integer >= 0, got 1.5"),
    (("exponential", 10, -1.0), r"--x-shape must be a finite number >= 0"),
    (("exponential", 10, float("nan")), r"--x-shape must be a finite number >= 0"),
])
def test_bad_schedules_named(args, message):
    with pytest.raises(ValueError, match=message):
        validate_schedule(*args, option="--x")
    validate_schedule("constant", 0, 0.0, option="--x")  # the default is fine
