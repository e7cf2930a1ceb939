"""--gp-interval k (lazy penalty) and --gp-warmup-updates N, in-process on a tiny fairseq transformer.

Penalised updates must give exactly the unlazy criterion with eps replaced by k*eps*ramp, the others exactly
the plain label-smoothed criterion; the update number reaches the criterion through task.train_step.
"""
import pytest
import torch

from fairseq_eb.criterions.label_smoothed_cross_entropy_with_gp import penalty_weight
from tests.test_gradient_penalty import gp_criterion, grads_of, make_sample, plain_criterion, shared  # noqa: F401


class Backward:
    def backward(self, loss):
        loss.backward()


def test_penalty_weight_formula():
    assert [penalty_weight(0.5, u, 4) for u in range(9)] == [2.0, 0, 0, 0, 2.0, 0, 0, 0, 2.0]
    assert [penalty_weight(1.0, u, 1, 10) for u in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert penalty_weight(1.0, 6, 3, 12) == pytest.approx(3 * 0.5)
    assert penalty_weight(1.0, 7, 3, 12) == 0.0


@pytest.mark.parametrize("method", ["exact", "fgm"])
@pytest.mark.parametrize("update", [0, 1, 2, 3, 8])
def test_lazy_equals_k_eps_on_penalised_updates_and_plain_elsewhere(shared, method, update):  # noqa: F811
    task, model = shared
    sample = make_sample(task.target_dictionary)
    k, eps = 4, 0.7
    lazy = gp_criterion(task, gp_epsilon=eps, gp_interval=k, gp_method=method)
    lazy.set_num_updates(update)
    loss, n, log = lazy(model, sample)
    got = grads_of(model, loss)
    if update % k == 0:
        ref_loss, _, ref_log = gp_criterion(task, gp_epsilon=k * eps, gp_method=method)(model, sample)
        assert log["gp_sample_size"] == n > 0 and float(log["gp"]) == pytest.approx(float(ref_log["gp"]), rel=1e-6)
    else:
        ref_loss, _, ref_log = plain_criterion(task)(model, sample)
        assert log["gp"] == 0 and log["gp_sample_size"] == 0
    expected = grads_of(model, ref_loss)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert float(log["loss"]) == pytest.approx(float(ref_log["loss"]), rel=1e-6)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)


def test_penalised_and_plain_updates_really_differ(shared):  # noqa: F811
    """Guards the test above: k*eps penalised gradients are far from the plain ones."""
    task, model = shared
    sample = make_sample(task.target_dictionary)
    a = grads_of(model, gp_criterion(task, gp_epsilon=2.8)(model, sample)[0])
    b = grads_of(model, plain_criterion(task)(model, sample)[0])
    assert max((a[n] - b[n]).abs().max().item() for n in a) > 1e-3


def test_warmup_ramps_the_weight(shared):  # noqa: F811
    task, model = shared
    sample = make_sample(task.target_dictionary)
    crit = gp_criterion(task, gp_epsilon=1.0, gp_warmup_updates=10)
    crit.set_num_updates(5)
    loss = crit(model, sample)[0]
    ref = gp_criterion(task, gp_epsilon=0.5)(model, sample)[0]
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    crit.set_num_updates(0)
    assert crit(model, sample)[2]["gp_sample_size"] == 0  # weight 0 at update 0: the plain criterion


def test_update_number_comes_from_task_train_step(shared):  # noqa: F811
    task, model = shared
    sample = make_sample(task.target_dictionary)
    original = task.train_step
    try:
        crit = gp_criterion(task, gp_epsilon=1.0, gp_interval=3)
        logs = [task.train_step(sample=sample, model=model, criterion=crit, optimizer=Backward(), update_num=u,
                                ignore_grad=False)[2] for u in (0, 1, 2, 3)]  # by keyword, as fairseq's trainer
        logs.append(task.train_step(sample, model, crit, Backward(), 3)[2])
        assert [log["gp_sample_size"] > 0 for log in logs] == [True, False, False, True, True]
        assert crit.num_updates == 3
        fresh = gp_criterion(task, gp_epsilon=1.0, gp_interval=3)  # e.g. called outside train_step
        with pytest.raises(RuntimeError, match="need the update number"):
            fresh(model, sample)
    finally:
        task.train_step = original
        model.zero_grad()


def test_default_interval_does_not_wrap_the_task(shared):  # noqa: F811
    task, _ = shared
    original = task.train_step
    gp_criterion(task, gp_epsilon=1.0)
    assert task.train_step == original
