"""Which samples are copies of which training images: exact counts on constructed cases."""
import math

import numpy as np
import torch

from memsweep.report.copies import first_copy_steps, per_class, per_image


def test_counts_distances_and_classes_are_exact():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(6, 1, 4, 4, generator=g) * 3
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    which = torch.tensor([0, 0, 0, 3, 3, 5])           # image 0 copied 3 times, 3 twice, 5 once
    noise = torch.zeros(6, 1, 4, 4)
    noise[:, 0, 0, 0] = torch.tensor([0.01, 0.02, 0.03, 0.01, 0.05, 0.02])
    samples = torch.cat([train[which] + noise, torch.full((2, 1, 4, 4), 40.0)])   # 2 new (far) samples
    img = per_image(samples, train, labels)
    assert img["copies"].tolist() == [3, 0, 0, 2, 0, 1]
    assert math.isclose(img.loc[0, "mean_copy_dist"], 0.02, abs_tol=2e-3)  # float32 distance expansion
    assert math.isclose(img.loc[3, "mean_copy_dist"], 0.03, abs_tol=2e-3) and math.isnan(img.loc[1, "mean_copy_dist"])
    d = torch.cdist(train.flatten(1), train.flatten(1)) + torch.eye(6) * 1e9
    assert np.allclose(img["isolation"], d.min(1).values.numpy(), rtol=1e-4)
    sample_labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    copied = np.array([True] * 6 + [False] * 2)
    cls = per_class(img, sample_labels, copied).set_index("label")
    assert cls.loc[0, "copied_samples"] == 1.0 and cls.loc[2, "copied_samples"] == 1 / 3
    assert cls.loc[0, "images_copied"] == 0.5 and cls.loc[1, "images_copied"] == 0.5
    assert cls["train_images"].tolist() == [2, 2, 2] and cls["samples"].tolist() == [3, 2, 3]


def test_first_copy_steps():
    first = first_copy_steps({10: np.array([0, 1, 0]), 100: np.array([2, 0, 0]), 1000: np.array([3, 3, 0])})
    assert first[0] == 100 and first[1] == 10 and math.isnan(first[2])
