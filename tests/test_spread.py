"""The sample-spread measurement (gqn/spread.py): which pixels one context view sees, and the spread."""

import numpy as np
import pytest
import torch

from gqn import spread
from gqn.spread import SEEN_PIXELS, measure, pixel_spread, visibility


def test_visibility_splits_the_query_pixels_by_the_part_they_show():
    context = np.full((4, 4), -1)
    context.flat[:SEEN_PIXELS] = 0  # part 0 in view
    context.flat[SEEN_PIXELS : SEEN_PIXELS + SEEN_PIXELS - 1] = 1  # part 1 on too few pixels
    query = np.array([[[0, 1, 2, -1]]])  # (1, 1, 4): parts 0, 1, 2 and the background
    seen, unseen = visibility(context, query)
    assert seen.tolist() == [[[True, False, False, False]]]
    assert unseen.tolist() == [[[False, True, True, False]]]


def test_views_seeing_counts_the_context_views_that_show_each_query_pixels_part():
    views = np.full((3, 4, 4), -1)
    views[0].flat[:SEEN_PIXELS] = 0  # part 0 in views 0 and 1, part 1 in view 2 only
    views[1].flat[-SEEN_PIXELS:] = 0
    views[2].flat[:SEEN_PIXELS] = 1
    views[2].flat[-1] = 2  # part 2 on one pixel: too few to count
    query = np.array([[[0, 1, 2, 3, -1]]])  # (1, 1, 5)
    assert spread.views_seeing(views, query).tolist() == [[[2, 1, 0, 0, -1]]]


def test_pixel_spread_is_the_standard_deviation_over_samples_mean_over_colours():
    samples = torch.zeros(2, 1, 3, 1, 2)
    samples[1, 0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])  # pixel 0 differs, pixel 1 does not
    np.testing.assert_allclose(pixel_spread(samples).numpy(), [[[2 / np.sqrt(2), 0.0]]], rtol=1e-6)
    with pytest.raises(spread.GQNError, match="at least 2 samples"):
        pixel_spread(samples[:1])


class NoiseModel:
    """Samples that are the noise itself, blind to what the context saw: the same spread everywhere."""

    def eval(self):
        return self

    def noise_shape(self, batch, height, width):
        return (1, batch, 3, height // 4, width // 4)

    def sample(self, context_x, context_v, query_v, noise):
        assert context_x.shape[1] == 1 and len(query_v) == len(context_x)  # one context view
        return noise[0].repeat_interleave(4, -1).repeat_interleave(4, -2)


@pytest.mark.slow
def test_measure_of_a_model_blind_to_the_context_gives_a_ratio_near_one():
    report = measure(NoiseModel(), "shepard_metzler_5_parts", scenes=3, samples=8)
    assert report["seen_pixels"] > 500 and report["unseen_pixels"] > 100
    # the draws are standard normal: a spread near 1 (the sample std's mean is a little under 1)
    assert 0.85 < report["seen_spread"] < 1.05 and 0.85 < report["unseen_spread"] < 1.05
    assert 0.85 < report["ratio"] < 1.15
