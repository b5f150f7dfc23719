"""The 1/3 rule (metrics.memorization.is_copy) is the one definition of a copy; its edge cases."""
import pytest
import torch

from memsweep.metrics.memorization import MEM_THRESHOLD, is_copy, mem_ratio, nearest_neighbours


def test_zero_distances_to_two_identical_training_images_are_a_copy():
    assert is_copy(torch.tensor([[0.0, 0.0]])).tolist() == [True]
    train = torch.zeros(2, 1, 2, 2)                    # two identical training images
    d, _ = nearest_neighbours(torch.zeros(1, 1, 2, 2), train, k=2)
    assert is_copy(d).tolist() == [True]


def test_a_tie_between_the_two_nearest_is_not_a_copy():
    assert is_copy(torch.tensor([[2.0, 2.0]])).tolist() == [False]


def test_the_threshold_is_strict_and_one_third_by_default():
    assert MEM_THRESHOLD == pytest.approx(1 / 3)
    d = torch.tensor([[0.99, 3.0], [1.01, 3.0], [0.0, 1e-3]])
    assert is_copy(d).tolist() == [True, False, True]
    assert is_copy(d, threshold=0.5).tolist() == [True, True, True]


def test_a_single_training_image_has_no_second_neighbour():
    with pytest.raises(ValueError, match="2 nearest neighbours asked among 1 references"):
        mem_ratio(torch.zeros(3, 1, 2, 2), torch.zeros(1, 1, 2, 2))


def test_mem_ratio_is_the_fraction_of_copies():
    train = torch.eye(4).view(4, 1, 2, 2)
    samples = torch.cat([train[:3] + 0.01, torch.full((1, 1, 2, 2), 0.5)])   # three near-copies, one mix
    assert mem_ratio(samples, train) == pytest.approx(0.75)
