"""Schedules of a rate over training updates: pure functions of the update number.

Why pure functions of the update number: the trainer restores the update number on resume and every
data-parallel rank sees the same one, so a scheduled rate is identical after a resume and on all ranks
without any state of its own.

Every schedule is a *rising* fraction ``f(u)`` in ``[0, 1]`` that multiplies a target rate: scheduled
sampling (Bengio et al. 2015) lowers the teacher-forcing probability over training, i.e. raises the
probability of feeding the model's own guesses, and a warm-up raises a corruption or penalty weight from 0.
With ``N`` = ``updates`` and ``k`` = ``shape``:

* ``constant``: ``f = 1`` (``N`` unused).
* ``linear``: ``f = min(1, u / N)``; reaches 1 at ``u = N``.
* ``exponential``: ``f = 1 - exp(-k u / N)``; the teacher-forcing probability ``1 - f`` decays
  geometrically by ``exp(-k)`` every ``N`` updates (default ``k = 5``: ``f(N) = 0.993``).
* ``inverse_sigmoid``: ``f = sigmoid(k (u / N - 1/2))`` rescaled so that ``f(0) = 0`` and ``f(N) = 1``,
  then held at 1; the teacher-forcing probability ``1 - f`` is Bengio et al.'s inverse sigmoid decay,
  parametrised by its length ``N`` and steepness ``k`` (default 10) instead of their ``k / (k + exp(u/k))``.
"""
from __future__ import annotations

import math
from typing import Any

from fairseq_eb.option_errors import OptionError

SCHEDULES = ("constant", "linear", "exponential", "inverse_sigmoid")
DEFAULT_SHAPE = {"exponential": 5.0, "inverse_sigmoid": 10.0}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def schedule_fraction(schedule: str, update_num: int, updates: int, shape: float = 0.0) -> float:
    """``f(update_num)`` in ``[0, 1]`` for the named schedule (formulas in the module docstring).

    ``shape`` <= 0 picks the schedule's default steepness. ``updates`` must be > 0 unless the schedule is
    ``constant``.
    """
    if schedule == "constant":
        return 1.0
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if updates <= 0:
        raise ValueError(f"schedule {schedule!r} needs updates > 0, got {updates}")
    t = max(0, update_num) / updates
    if schedule == "linear":
        return min(1.0, t)
    k = shape if shape > 0 else DEFAULT_SHAPE[schedule]
    if schedule == "exponential":
        return 1.0 - math.exp(-k * t)
    if t >= 1.0:
        return 1.0
    low, high = _sigmoid(-k / 2), _sigmoid(k / 2)
    return (_sigmoid(k * (t - 0.5)) - low) / (high - low)


def validate_schedule(schedule: Any, updates: Any, shape: Any, *, option: str) -> None:
    """Reject a bad schedule at setup; ``option`` is the command-line prefix, e.g. ``--replace-schedule``."""
    name = str(schedule)
    if name not in SCHEDULES:
        raise OptionError(option, name, f"one of {{{', '.join(SCHEDULES)}}}")
    if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
        raise OptionError(f"{option}-updates", updates, "an integer >= 0")
    if name != "constant" and updates == 0:
        raise OptionError(f"{option}-updates", updates, f"> 0 with {option} {name}",
                          f"{option} {name} needs {option}-updates > 0 (the length of the schedule)")
    if isinstance(shape, bool) or not isinstance(shape, (int, float)) or not math.isfinite(shape) or shape < 0:
        raise OptionError(f"{option}-shape", shape, "a finite number >= 0 (0 = the schedule's default)")


# ---- p_t over target positions (``--replace-position-schedule``)

POSITION_SCHEDULES = ("none", "exponential", "sigmoid", "linear")
DEFAULT_POSITION_CONSTANT = {"exponential": 0.99, "sigmoid": 20.0, "linear": 100.0}


def position_fraction(schedule: str, positions, constant: float = 0.0):
    """``h(t)`` in ``[0, 1]`` at target positions ``t = 1, 2, ...`` (a tensor or a number), rising with ``t``.

    The probability of feeding a replacement at ``y_t`` is ``p_t * h(t)`` (docs/schedules.md). With
    ``k`` = ``constant`` (<= 0: the schedule's default), following Liu et al. 2021 ("Scheduled sampling
    based on decoding steps"), whose decays are the teacher-forcing probability ``1 - h``:

    * ``none``: ``h = 1``;
    * ``exponential``: ``h = 1 - k^t`` (``0 < k < 1``, default 0.99);
    * ``sigmoid``: ``h = 1 - k / (k + exp(t / k))`` (``k >= 1``, default 20);
    * ``linear``: ``h = min(1, t / k)`` (``k > 0``, default 100: full rate from position 100 on).

    Not normalised: the mean of ``h`` over a sentence is below 1 (``--replace-token-prob`` is the ceiling).
    """
    if schedule not in POSITION_SCHEDULES:
        raise ValueError(f"position schedule must be one of {POSITION_SCHEDULES}, got {schedule!r}")
    if isinstance(positions, (int, float)):
        import torch  # noqa: F811 - numbers go through the same formulas as tensors

        return float(position_fraction(schedule, torch.tensor(float(positions)), constant))
    t = positions.double()
    if schedule == "none":
        return t.new_ones(t.shape)
    k = constant if constant > 0 else DEFAULT_POSITION_CONSTANT[schedule]
    if schedule == "exponential":
        h = 1.0 - k ** t
    elif schedule == "sigmoid":
        h = 1.0 - k / (k + (t / k).exp())
    else:
        h = t / k
    return h.clamp(min=0.0, max=1.0)


def validate_position_schedule(schedule: Any, constant: Any, *, option: str) -> None:
    """Reject a bad position schedule or constant at setup (``option``: e.g. ``--replace-position-schedule``)."""
    name = str(schedule)
    if name not in POSITION_SCHEDULES:
        raise OptionError(option, name, f"one of {{{', '.join(POSITION_SCHEDULES)}}}")
    flag = option.replace("-schedule", "-constant")
    if isinstance(constant, bool) or not isinstance(constant, (int, float)) or not math.isfinite(constant) \
            or constant < 0:
        raise OptionError(flag, constant, "a finite number >= 0 (0 = the schedule's default)")
    if constant == 0:
        return
    if name == "exponential" and not constant < 1:
        raise OptionError(flag, constant, f"in (0, 1) with {option} exponential",
                          f"{flag} of {option} exponential is the base k of 1 - k^t: it must be in (0, 1), "
                          f"got {constant!r}")
    if name == "sigmoid" and constant < 1:
        raise OptionError(flag, constant, f">= 1 with {option} sigmoid",
                          f"{flag} of {option} sigmoid is k in 1 - k/(k + exp(t/k)): it must be >= 1, "
                          f"got {constant!r}")
