import pytest

from forgetting.core.schedule import piecewise_linear, stretch
from forgetting.core.setup import plan_passes, step_lr


@pytest.mark.parametrize("t, expected", [(0, 0.0), (5, 0.4), (24, 0.0), (2.5, 0.2),
                                         (14.5, 0.2), (-1, 0.0), (30, 0.0)])
def test_resnet9_schedule_at_and_between_knots(t, expected):
    assert piecewise_linear(t, [0, 5, 24], [0.0, 0.4, 0.0]) == pytest.approx(expected)


def test_part1_schedule_knots():
    knots, values = [0, 15, 30, 35], [0.0, 0.1, 0.005, 0.0]
    assert [piecewise_linear(k, knots, values) for k in knots] == pytest.approx(values)
    assert piecewise_linear(22.5, knots, values) == pytest.approx(0.0525)


def test_stretch_keeps_shape():
    assert stretch([0, 5, 24], 12) == pytest.approx([0, 2.5, 12])


def test_lr_factor_is_per_example_at_every_batch_size(make_cfg):
    # recipe ResNet-9: 0.4 at epoch 5 for 512 examples per step -> 0.4/512 per example
    for bs in (64, 128, 512):
        cfg = make_cfg("recipe=resnet9", f"batch_size={bs}", "epochs=24", "lr=2", tiny=False)
        assert step_lr(cfg, 5.0, 24) == pytest.approx(2 * 0.4 / 512)


def test_schedule_stretches_to_epochs(make_cfg):
    cfg = make_cfg("recipe=resnet9", "epochs=12", tiny=False)
    assert step_lr(cfg, 2.5, 12) == pytest.approx(0.4 / 512)  # peak moved from epoch 5 to 2.5


def test_budget_steps_gives_small_subsets_more_passes(make_cfg):
    cfg = make_cfg("budget=steps", "epochs=3", "batch_size=64")
    assert plan_passes(cfg, full_size=6400, subset_size=1600) == 12
    assert plan_passes(cfg, full_size=6400, subset_size=6400) == 3
    cfg = make_cfg("budget=epochs", "epochs=3")
    assert plan_passes(cfg, full_size=6400, subset_size=1600) == 3
