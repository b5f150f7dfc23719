"""The closed-form memorizer as a reference model, and the field distance to it."""
import torch

from memsweep.data.datasets import Dataset
from memsweep.metrics.field import FieldProbe
from memsweep.metrics.memorization import nearest_neighbours
from memsweep.science.rectified_flow import RectifiedFlow

RF = RectifiedFlow()


def _data(n=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    train_x = torch.rand(n, 1, 4, 4, generator=g) * 2 - 1
    test_x = torch.rand(20, 1, 4, 4, generator=g) * 2 - 1
    return Dataset(train_x, torch.arange(n) % classes, test_x, torch.arange(20) % classes, classes)


def test_conditional_closed_form_samples_are_training_images_of_their_class():
    d = _data()
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(30) % 3
    x0 = torch.randn(30, 1, 4, 4, generator=g)
    memorizer = lambda x, t, y: RF.conditional_closed_form(x, t, y, d.train_x, d.train_y)  # noqa: E731
    out = RF.sample(memorizer, x0, labels, 100, "euler")
    dist, idx = nearest_neighbours(out, d.train_x, k=1)
    assert dist.max() < 0.05                                  # every sample lands on a training image
    assert torch.equal(d.train_y[idx[:, 0]], labels)          # ... of the class it was asked for
    assert len(idx[:, 0].unique()) > 6                        # and not always on the same one


def test_field_distance_is_zero_for_the_memorizer_and_one_for_the_zero_field():
    d = _data()
    probe = FieldProbe.make(RF, d, points=8, ts=[0.2, 0.5, 0.8], seed=0)
    memorizer = lambda x, t, y: RF.conditional_closed_form(x, t, y, d.train_x, d.train_y)  # noqa: E731
    mean, by_t = probe.distance(memorizer)
    assert mean < 1e-6 and len(by_t) == 3 and max(by_t) < 1e-6
    mean, by_t = probe.distance(lambda x, t, y: torch.zeros_like(x))
    assert abs(mean - 1) < 1e-6 and all(abs(v - 1) < 1e-6 for v in by_t)
    # the unconditional memorizer is a different field (it may snap to an image of another class)
    mean, by_t = probe.distance(lambda x, t, y: RF.closed_form(x, t, d.train_x))
    assert mean > 0.1 and min(by_t) > 1e-3
    # fixed probe points: the same seed gives the same points
    assert torch.equal(FieldProbe.make(RF, d, 8, [0.2, 0.5, 0.8], 0).x, probe.x)
