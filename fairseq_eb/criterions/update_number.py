"""The update number for a criterion: fairseq 0.12 passes it to ``task.train_step``, never to the criterion.

Why a hook on the task instance: the lazy penalty and the seeds of sampled candidates depend on the update
being computed. Wrapping this one task instance's ``train_step`` works with any task (``translation`` or ours)
and changes nothing else; both criteria that need the number share it here.
"""
import functools
from typing import Any, Callable


def follow_update_number(task: Any, owner: Any, report: Callable[[int], None]) -> None:
    """Have ``task.train_step`` call ``report(update_num)`` before it runs the criterion ``owner`` (no-op without a
    task)."""
    if task is None:
        return
    train_step = task.train_step

    @functools.wraps(train_step)  # same parameter names: fairseq's trainer passes them by keyword
    def train_step_reporting_update(sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        if criterion is owner:
            report(int(update_num))
        return train_step(sample, model, criterion, optimizer, update_num, ignore_grad, **kwargs)

    task.train_step = train_step_reporting_update
