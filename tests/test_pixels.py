"""Pixel-level evidence: what the context views saw along each output pixel's ray, and its blend."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny

from gqn.cameras import rays, sphere_cameras
from gqn.data import viewpoints
from gqn.errors import GQNError
from gqn.model import GQN
from gqn.pixels import (
    OCCUPANCY_START,
    SEEN,
    Blend,
    PixelEvidence,
    Reading,
    coarse_depths,
    depth_behind,
    pool_views,
    ray_facing,
    search_nll,
    training_pixels,
)

FOV, NEAR, FAR = 100.0, 0.8, 5.9


def cameras(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return viewpoints(
        torch.from_numpy(sphere_cameras(rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n), 10 / 3))
    )


SEARCHES = pytest.mark.parametrize("views", [False, True], ids=["over-depths", "over-views-and-depths"])
# the searches, and how they weigh their candidates (the transmittance is the search over views')
WEIGHTINGS = pytest.mark.parametrize(
    "views, weighting",
    [(False, "softmax"), (True, "softmax"), (True, "transmittance")],
    ids=["over-depths", "over-views-and-depths", "transmittance"],
)


@SEARCHES
@pytest.mark.parametrize("channels", [3, 8])  # the colours alone, and with 5 learned features
def test_a_query_at_a_context_camera_reads_that_views_own_pixels(channels, views):
    # Every point of a pixel's ray lands on that pixel's centre in a view from the same camera, so
    # whatever depth the (untrained) attention picks, the colour it reads is the pixel's own.
    evidence = PixelEvidence(channels, FOV, NEAR, FAR, depths=6, views=views)
    x = torch.rand(2, 1, 3, 16, 16)
    v = cameras(2, 0)
    out = evidence(x, v[:, None], v).evidence.view(2, -1, 16, 16)
    assert out.shape[1] == evidence.channels == channels + 4
    torch.testing.assert_close(out[:, :3], x[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, SEEN], torch.ones(2, 16, 16))  # the one view sees every point


@WEIGHTINGS
@pytest.mark.parametrize("sampling", ["uniform", "coarse"])
def test_the_evidence_of_some_pixels_is_the_evidence_of_all_at_those_pixels(views, sampling, weighting):
    torch.manual_seed(0)
    evidence = PixelEvidence(8, FOV, NEAR, FAR, depths=5, views=views, sampling=sampling, weighting=weighting)
    x, v = torch.rand(2, 3, 3, 16, 16), cameras(8, 1).view(2, 4, 7)
    prior = torch.rand(2, 7, 4, 4).softmax(1)
    pixels = torch.tensor([0, 17, 100, 255])
    every, some = evidence(x, v[:, :3], v[:, 3], prior), evidence(x, v[:, :3], v[:, 3], prior, pixels)
    for name in ("evidence", "weights", "colours", "seen"):
        torch.testing.assert_close(getattr(some, name), getattr(every, name)[..., pixels], msg=name)


def test_with_transmittance_what_passes_every_depth_sees_the_background():
    # One view from the query's own camera: every depth of every ray lands on the pixel's own
    # colour x. Untrained, each depth stops the ray with probability a = sigmoid(OCCUPANCY_START),
    # so the background (given the colour 0.5 here) takes (1 - a)^D of the ray and the copy is
    # x (1 - (1 - a)^D) + 0.5 (1 - a)^D.
    torch.manual_seed(0)
    d = 6
    evidence = PixelEvidence(3, FOV, NEAR, FAR, depths=d, views=True, weighting="transmittance")
    with torch.no_grad():
        evidence.background.fill_(0.5)
    x, v = torch.rand(2, 1, 3, 16, 16), cameras(2, 0)
    reading = evidence(x, v[:, None], v)
    assert reading.weights.shape == (2, d + 1, 256) and reading.colours.shape == (2, 3, d + 1, 256)
    torch.testing.assert_close(reading.weights.sum(1), torch.ones(2, 256))
    torch.testing.assert_close(reading.colours[:, :, -1], torch.full((2, 3, 256), 0.5))
    rest = float((1 - torch.sigmoid(torch.tensor(OCCUPANCY_START))) ** d)
    torch.testing.assert_close(reading.weights[:, -1], torch.full((2, 256), rest))
    copied = x[:, 0].flatten(2) * (1 - rest) + 0.5 * rest
    torch.testing.assert_close(reading.evidence[:, :3], copied, atol=1e-5, rtol=0)
    # A view that frames no point of the ray stops nothing: the whole ray sees the background,
    # and the blend keeps the generator's colour there (no view sees the ray).
    away = v * torch.tensor([1, 1, 1, -1, -1, -1, 1])  # yaw + pi, pitch negated: the opposite axis
    blind = evidence(x, away[:, None], v)
    torch.testing.assert_close(blind.weights[:, -1], torch.ones(2, 256))
    assert blind.evidence[:, SEEN].abs().max() == 0 and blind.seen.abs().max() == 0
    # The pooled search has no views to share a depth among: it keeps the softmax.
    with pytest.raises(GQNError, match="the search's transmittance needs the search over views"):
        PixelEvidence(3, FOV, NEAR, FAR, depths=d, weighting="transmittance")
    with pytest.raises(GQNError, match="search_weighting transmittance needs the search over views"):
        tiny(
            representation="epipolar",
            fov=FOV,
            near=NEAR,
            far=FAR,
            pixel_depths=4,
            search_weighting="transmittance",
        )


@pytest.mark.parametrize("per_ray", [False, True], ids=["shared-depths", "each-rays-own"])
def test_ray_facing_is_the_cosine_between_each_views_ray_and_the_querys(per_ray):
    v = cameras(5, 4)
    context_v, query_v = v[None, :3], v[None, 3]
    origin, direction = rays(query_v, 4, FOV)
    direction = direction.flatten(1, 2)  # (1, 16, 3)
    depth = (
        torch.rand(1, 3, 16) * 4 + 1
        if per_ray
        else torch.tensor([1.0, 2.5, 4.0])[None, :, None].expand(1, 3, 16)
    )
    points = (origin[:, None, None] + depth[..., None] * direction[:, None]).flatten(1, 2)  # (1, P, 3)
    to_point = torch.nn.functional.normalize(
        points[:, None] - context_v[:, :, None, :3], dim=-1
    )  # (1, K, P, 3)
    unit = torch.nn.functional.normalize(direction, dim=-1).repeat(1, 3, 1)  # (1, P, 3), depth-major
    want = (to_point * unit[:, None]).sum(-1)
    distance = (points[:, None] - context_v[:, :, None, :3]).norm(dim=-1)
    torch.testing.assert_close(ray_facing(context_v, origin, direction, depth, distance), want)


def test_coarse_depths_lie_where_the_coarse_weights_are():
    # 16 coarse depths 0.34 apart from 0.8 to 5.9, each weighing its bin (5.1 / 15 wide, centred on
    # it): even weights give 8 even depths over [0.63, 6.07], the ends clamped to [near, far].
    width = (FAR - NEAR) / 15
    even = coarse_depths(torch.full((1, 16, 1), 1 / 16), 8, NEAR, FAR)[0, :, 0]
    spaced = NEAR - width / 2 + (torch.arange(8) + 0.5) / 8 * 16 * width
    torch.testing.assert_close(even, spaced.clamp(NEAR, FAR))
    # All the weight on depth 5 (2.5): its bin holds 0.8 + 0.2 / 16 = 0.8125 of the mass, every
    # other bin 0.0125. The quantile 1/16 = 0.0625 is the mass of the 5 bins before it: the first
    # depth is the bin's start; the next six lie inside it, evenly; the last past it.
    peak = torch.zeros(1, 16, 1)
    peak[0, 5] = 1
    depths = coarse_depths(peak, 8, NEAR, FAR)[0, :, 0]
    start = NEAR + 4.5 * width
    inside = start + ((torch.arange(1, 7) + 0.5) / 8 - 0.0625) / 0.8125 * width
    torch.testing.assert_close(depths[1:7], inside)
    assert depths[0] == pytest.approx(start, abs=1e-5)
    # 15/16 of the mass: the peak's bin ends at 0.875, so (0.9375 - 0.875) / 0.0125 = 5 bins past it
    torch.testing.assert_close(depths[7], torch.tensor(start + 6 * width))
    assert (depths.diff() >= 0).all()


def test_coarse_sampling_needs_the_coarse_weights():
    evidence = PixelEvidence(3, FOV, NEAR, FAR, depths=4, views=True, sampling="coarse")
    x, v = torch.rand(1, 2, 3, 16, 16), cameras(3, 1)[None]
    with pytest.raises(GQNError, match="needs the coarse weights"):
        evidence(x, v[:, :2], v[:, 2])
    with pytest.raises(GQNError, match="pixel_sampling coarse needs pixel evidence"):
        tiny(representation="epipolar", fov=FOV, near=NEAR, far=FAR, pixel_sampling="coarse")
    with pytest.raises(GQNError, match="pixel_sampling must be one of uniform, coarse"):
        tiny(representation="epipolar", fov=FOV, near=NEAR, far=FAR, pixel_depths=4, pixel_sampling="fine")


def test_a_view_that_frames_no_point_of_the_ray_has_no_say_in_the_search_over_views():
    # The second camera stands where the first does and looks the other way: the query's rays lie
    # behind it. Its candidates get no weight, and the copy is the first view's own pixels.
    torch.manual_seed(0)
    evidence = PixelEvidence(3, FOV, NEAR, FAR, depths=6, views=True)
    v = cameras(2, 0)
    away = v * torch.tensor([1, 1, 1, -1, -1, -1, 1])  # yaw + pi, pitch negated: the opposite axis
    x = torch.rand(2, 2, 3, 16, 16)
    reading = evidence(x, torch.stack([v, away], 1), v)
    assert reading.weights.shape == (2, 2 * 6, 256) and reading.colours.shape == (2, 3, 12, 256)
    assert reading.weights[:, 6:].abs().max() == 0  # view-major: the second view's 6 depths
    torch.testing.assert_close(reading.evidence[:, :3].view(2, 3, 16, 16), x[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("weighting", ["softmax", "transmittance"])
def test_the_search_over_views_learns_to_copy_the_view_the_query_stands_at(weighting):
    # Noise images, so no depth makes the views agree: the colour to copy is the first view's,
    # whose camera is the query's. Only a search that can pick a view can copy it exactly.
    torch.manual_seed(0)
    evidence = PixelEvidence(3, FOV, NEAR, FAR, depths=8, hidden=8, views=True, weighting=weighting)
    x, v = torch.rand(2, 3, 3, 16, 16), cameras(8, 2).view(2, 4, 7)
    v = torch.cat([v[:, 3:], v[:, 1:3]], 1)  # the query's camera, then two others
    optimizer = torch.optim.Adam(evidence.parameters(), lr=3e-2)
    losses = []
    for _ in range(30):
        losses.append(search_nll(x[:, 0].flatten(2), evidence(x, v, v[:, 0]), sigma=1.0).mean())
        optimizer.zero_grad()
        losses[-1].backward()
        optimizer.step()
    assert losses[-1] < 0.01 * losses[0]


def test_views_that_agree_outvote_one_that_does_not():
    # Two views read red at a point, an occluded third reads blue: the pooled colour is nearly red,
    # where the plain mean is a third blue; a view that sees nothing has no say at all.
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    values = torch.tensor([red, red, blue, blue])[None, :, :, None]  # (B=1, K=4, C=3, P=1)
    seen = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
    pooled, spread = pool_views(values * seen[:, :, None], seen, torch.zeros(1, 4, 1), 4.0, 0.0)
    assert pooled[0, 0, 0] > 0.95 and pooled[0, 2, 0] < 0.05
    assert spread[0, 2, 0].item() == pytest.approx((2 / 9) ** 0.5, abs=1e-3)  # std of (0, 0, 1)
    # With no agreement term the views are weighed by how nearly they face the query's ray.
    facing = torch.tensor([[[0.0], [0.0], [3.0], [9.0]]])
    pooled, _ = pool_views(values * seen[:, :, None], seen, facing, 0.0, 1.0)
    assert pooled[0, 2, 0] > 0.9


def test_the_depth_test_says_how_far_behind_a_views_surface_a_point_lies():
    # A view that sees a surface whose depth rises column by column (1, 2, 3, 4): the point at
    # depth 3 on the ray of each cell's centre lies 3 - that depth behind it (in front where < 0).
    v = cameras(1, 2)  # (1, 7)
    origin, direction = rays(v, 4, FOV)  # (1, 3), (1, 4, 4, 3), forward component 1
    points = (origin[:, None, None] + 3.0 * direction).flatten(1, 2)  # (1, 16, 3), row-major
    surfaces = torch.arange(1.0, 5.0).expand(4, 4)[None, None]  # (1, 1, 4, 4): depth 1 + column
    behind = depth_behind(points, v[:, None], surfaces, FOV)
    torch.testing.assert_close(behind, (3.0 - surfaces).flatten(2), atol=1e-4, rtol=0)
    # An occluded view then has no say in the pooling.
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    values, seen = torch.tensor([red, blue])[None, :, :, None], torch.ones(1, 2, 1)
    occluded = torch.tensor([[[0.0], [20.0]]])  # the blue view is far behind its own surface
    pooled, _ = pool_views(values, seen, torch.zeros(1, 2, 1), 0.0, 0.0, occluded)
    assert pooled[0, 0, 0] > 0.99 and pooled[0, 2, 0] < 0.01


def test_each_views_surface_is_the_coarse_depth_the_other_views_give_it():
    torch.manual_seed(0)
    model = sharp(pixel_visibility=True)
    cx, cv = torch.rand(2, 3, 3, 32, 32), cameras(8, 3).view(2, 4, 7)
    surfaces = model._surfaces(cx, cv[:, :3])
    assert surfaces.shape == (2, 3, 8, 8) and not surfaces.requires_grad
    depth = torch.linspace(NEAR, FAR, model.config.depth_samples)
    for i, others in enumerate([[1, 2], [0, 2], [0, 1]]):  # view i asked as a query of the others
        _, weights = model.representation(cx[:, others], cv[:, others], cv[:, i], (8, 8))
        torch.testing.assert_close(surfaces[:, i], torch.einsum("bdhw,d->bhw", weights, depth))
    # One view: nothing to test it against, so it sees as far as the scene goes.
    assert torch.equal(model._surfaces(cx[:, :1], cv[:, :1]), torch.full((2, 1, 8, 8), FAR))


def test_visibility_learns_whatever_the_number_of_views():
    torch.manual_seed(0)
    model = sharp(pixel_visibility=True)
    cx, cv = torch.rand(2, 3, 3, 32, 32), cameras(8, 3).view(2, 4, 7)
    for k in (3, 1):  # with one view too, its parameters take part (DDP needs every one each step)
        model.zero_grad()
        model(cx[:, :k], cv[:, :k], torch.rand(2, 3, 32, 32), cv[:, 3], sigma=0.7)["objective"].backward()
        occlusion, margin = model.evidence.occlusion.grad, model.evidence.margin.grad
        assert occlusion is not None and margin is not None
        assert (occlusion.abs() > 0 and margin.abs() > 0) == (k > 1)  # one view: nothing occluded
    with pytest.raises(GQNError, match="pixel_visibility needs pixel evidence"):
        tiny(representation="epipolar", fov=FOV, near=NEAR, far=FAR, pixel_visibility=True)


def test_where_no_view_sees_the_image_is_the_generators_alone():
    torch.manual_seed(0)
    blend = Blend(4, 12)
    g, u = torch.rand(1, 3, 4, 4), torch.rand(1, 4, 4, 4)
    evidence = torch.rand(1, 12, 16)
    evidence[:, SEEN, :8] = 0  # the first 8 pixels: no view sees any point of their rays
    out = blend(g, u, evidence).flatten(2)
    torch.testing.assert_close(out[:, :, :8], g.flatten(2)[:, :, :8])
    assert (out[:, :, 8:] - g.flatten(2)[:, :, 8:]).abs().min() > 0
    # Given a subset of pixels, the rest are the generator's.
    pixels = torch.tensor([9, 3])
    out = blend(g, u, evidence[:, :, pixels], pixels).flatten(2)
    torch.testing.assert_close(out[:, :, [0, 1, 2, 4, 5]], g.flatten(2)[:, :, [0, 1, 2, 4, 5]])
    assert (out[:, :, 9] - g.flatten(2)[:, :, 9]).abs().min() > 0


def sharp(**fields):
    return GQN(tiny(representation="epipolar", fov=FOV, near=NEAR, far=FAR, pixel_depths=4, **fields))


def test_several_draws_read_the_scene_once_and_equal_one_draw_each():
    torch.manual_seed(0)
    model = sharp().eval()
    cx, cv, qv = torch.rand(2, 3, 3, 32, 32), torch.randn(2, 3, 7), torch.randn(2, 7)
    noises = [torch.randn(model.noise_shape(2, 32, 32)) for _ in range(2)]
    reads = []
    model.evidence.register_forward_hook(lambda *_: reads.append(1))
    mean, *draws = model.samples(cx, cv, qv, ["mean", *noises])
    assert len(reads) == 1  # the pixel evidence, read once for the three
    assert torch.equal(mean, model.sample(cx, cv, qv, use_mean=True))
    assert all(torch.equal(d, model.sample(cx, cv, qv, noise=n)) for d, n in zip(draws, noises))
    assert not torch.equal(draws[0], draws[1])
    with pytest.raises(GQNError, match="a draw is a noise tensor or \"mean\", got 'median'"):
        model.samples(cx, cv, qv, ["median"])


def test_training_reads_a_share_of_the_pixels_and_prediction_reads_them_all():
    torch.manual_seed(0)
    model = sharp(pixel_fraction=0.25)
    x, v = torch.rand(2, 4, 3, 16, 16), cameras(8, 2).view(2, 4, 7)
    cx, cv, qx, qv = x[:, :3], v[:, :3], x[:, 3], v[:, 3]
    _, (_, pixels) = model._scene(cx, cv, qv)
    assert pixels.shape == (64,) and len(set(pixels.tolist())) == 64
    model.eval()
    assert model._scene(cx, cv, qv)[1][1] is None
    out = model(cx, cv, qx, qv, sigma=0.7)
    assert torch.isfinite(out["loss"]) and out["mean"].shape == (2, 3, 16, 16)
    # Training minimises the ELBO and the search's own fit; the loss reported is the ELBO alone.
    assert out["search_nll"] > 0
    torch.testing.assert_close(out["objective"], out["loss"] + out["search_nll"])


@WEIGHTINGS
def test_the_pixel_evidence_learns_with_the_rest(views, weighting):
    torch.manual_seed(0)
    model = sharp(search_views=views, search_weighting=weighting)
    x, v = torch.rand(2, 4, 3, 16, 16), cameras(8, 3).view(2, 4, 7)
    model(x[:, :3], v[:, :3], x[:, 3], v[:, 3], sigma=0.7)["loss"].backward()
    for name, p in model.named_parameters():
        if name.startswith(("evidence.", "blend.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_the_search_is_scored_by_the_expected_error_of_the_colour_it_copies():
    red, blue, green = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]
    colours = torch.tensor([red, blue, green]).T[None, :, :, None].expand(1, 3, 3, 2)  # (B, 3, D=3, N=2)
    x = torch.tensor(blue)[None, :, None].expand(1, 3, 2)  # the query is blue at both pixels
    weights = torch.tensor([[0.0, 0.5], [1.0, 0.0], [0.0, 0.5]])[None]  # (B, D, N)
    reading = Reading(torch.zeros(1, 7, 2), weights, colours, torch.ones(1, 2))
    # Pixel 0 copies blue from its second depth: no error. Pixel 1 splits between red and green,
    # each 2 away in squared error: 2, over 2 sigma^2 (not the 1.5 of its purple mean's error).
    assert search_nll(x, reading, sigma=1.0).item() == pytest.approx(1.0)
    assert search_nll(x, reading, sigma=2.0).item() == pytest.approx(0.25)
    # A ray no view sees has nothing to copy and no say.
    unseen = reading._replace(seen=torch.tensor([[1.0, 0.0]]))
    assert search_nll(x, unseen, sigma=1.0).item() == 0.0


def test_the_mixture_loss_reaches_a_good_candidate_the_search_gives_little_weight():
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    colours = torch.tensor([red, blue]).T[None, :, :, None]  # (B, 3, D=2, N=1)
    x = torch.tensor(blue)[None, :, None]  # the query is blue; the search puts 0.99 on red
    logits = torch.tensor([[[math.log(0.99)], [math.log(0.01)]]], requires_grad=True)
    sigma, s, e = 0.7, 0.2, 2.0  # e: red's squared error, blue's is 0

    def grad(width):
        logits.grad = None
        reading = Reading(torch.zeros(1, 7, 1), logits.softmax(1), colours, torch.ones(1, 1))
        search_nll(x, reading, sigma, width).sum().backward()
        return logits.grad[0, :, 0]

    # The expected error: w_blue (e_blue - mean e) / 2 sigma^2, about nothing.
    expected = grad(0.0)
    torch.testing.assert_close(expected[1], torch.tensor(0.01 * (0 - 0.99 * e) / (2 * sigma**2)))
    # The mixture: (s / sigma)^2 (w_blue - posterior_blue), and the posterior is almost all blue's.
    posterior = 0.01 / (0.01 + 0.99 * math.exp(-e / (2 * s**2)))
    mixture = grad(s)
    torch.testing.assert_close(mixture[1], torch.tensor((s / sigma) ** 2 * (0.01 - posterior)))
    assert posterior > 0.99 and mixture[1] < 3 * expected[1] < 0  # four times the pull
    # A wide mixture is the expected error (Jensen's gap closes), and the value is never above it.
    reading = Reading(torch.zeros(1, 7, 1), logits.softmax(1).detach(), colours, torch.ones(1, 1))
    assert search_nll(x, reading, sigma, 100.0).item() == pytest.approx(
        search_nll(x, reading, sigma).item(), rel=1e-3
    )
    assert 0 < search_nll(x, reading, sigma, s) < search_nll(x, reading, sigma)
    # A candidate of weight 0 (a view that frames no point) neither counts nor makes a NaN.
    zero = reading._replace(weights=torch.tensor([[[1.0], [0.0]]]))
    assert search_nll(x, zero, sigma, s).item() == pytest.approx(e / (2 * sigma**2))


def test_a_spatial_search_reads_a_square_patch_and_starts_as_the_search_of_one_ray():
    torch.manual_seed(0)
    pixels, grid = training_pixels(16, 16, 0.25, patch=True)
    assert grid == (8, 8)
    rows, cols = pixels // 16, pixels % 16
    assert rows.view(8, 8)[:, 0].diff().eq(1).all() and cols.view(8, 8)[0].diff().eq(1).all()
    assert (rows.view(8, 8) == rows.view(8, 8)[:, :1]).all()  # row-major, each row one image row
    scattered, none = training_pixels(16, 16, 0.25, patch=False)
    assert none is None and len(set(scattered.tolist())) == 64

    plain = PixelEvidence(3, FOV, NEAR, FAR, depths=5)
    spatial = PixelEvidence(3, FOV, NEAR, FAR, depths=5, spatial=3)
    spatial.load_state_dict(plain.state_dict(), strict=False)
    x, v = torch.rand(2, 3, 3, 16, 16), cameras(8, 5).view(2, 4, 7)
    a, b = plain(x, v[:, :3], v[:, 3]), spatial(x, v[:, :3], v[:, 3])
    torch.testing.assert_close(a.weights, b.weights)  # its last layer starts at zero
    with pytest.raises(GQNError, match="needs the 64 pixels' grid"):
        spatial(x, v[:, :3], v[:, 3], pixels=pixels)
    with pytest.raises(GQNError, match="a grid of 3x3 pixels given for 64 pixels"):
        plain(x, v[:, :3], v[:, 3], pixels=pixels, grid=(3, 3))
    # Once it has learned something, a pixel's depth depends on its neighbours' rays.
    torch.nn.init.normal_(spatial.spatial[-1].weight)
    patch = spatial(x, v[:, :3], v[:, 3], pixels=pixels, grid=grid)
    assert not torch.allclose(patch.weights, spatial(x, v[:, :3], v[:, 3]).weights[..., pixels])


def test_a_sharp_model_with_a_spatial_search_trains_on_patches():
    torch.manual_seed(0)
    model = sharp(pixel_fraction=0.25, search_spatial=3)
    x, v = torch.rand(2, 4, 3, 16, 16), cameras(8, 6).view(2, 4, 7)
    _, (reading, pixels) = model._scene(x[:, :3], v[:, :3], v[:, 3])
    assert pixels.shape == (64,) and reading.weights.shape == (2, 4, 64)
    out = model(x[:, :3], v[:, :3], x[:, 3], v[:, 3], sigma=0.7)
    out["objective"].backward()
    assert model.evidence.spatial[-1].weight.grad.abs().sum() > 0
    with pytest.raises(GQNError, match="search_spatial must be odd"):
        sharp(search_spatial=2)
    with pytest.raises(
        GQNError, match=r"search_views needs pixel evidence \(pixel_depths > 0\) and no search_spatial"
    ):
        sharp(search_spatial=3, search_views=True)


def test_a_spatial_blend_starts_as_the_per_pixel_blend_and_reads_its_neighbours():
    torch.manual_seed(0)
    plain, spatial = Blend(4, 7), Blend(4, 7, spatial=3)
    spatial.load_state_dict(plain.state_dict(), strict=False)
    g, u = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 8, 8)
    evidence = torch.rand(2, 7, 64)
    evidence[:, SEEN] = (torch.arange(64) % 5 != 0).float()  # every fifth ray seen by no view
    # its last layer starts at zero
    torch.testing.assert_close(spatial(g, u, evidence), plain(g, u, evidence))
    pixels, grid = training_pixels(8, 8, 0.25, patch=True)
    with pytest.raises(GQNError, match="the blend's spatial pass needs the 16 pixels' grid"):
        spatial(g, u, evidence[..., pixels], pixels)
    # Once it has learned something, a pixel's colour depends on its neighbours' evidence (two
    # 3 x 3 convolutions: those up to 2 pixels away) ...
    torch.nn.init.normal_(spatial.spatial[-1].weight)
    everywhere = evidence.clone()
    everywhere[:, SEEN] = 1.0
    nudged = everywhere.clone()
    nudged[:, :3, 9] += 0.5  # the copied colour at row 1, column 1
    changed = (spatial(g, u, nudged) - spatial(g, u, everywhere)).abs().sum((0, 1)) > 0
    assert changed[:4, :4].all() and changed.sum() == 16  # rows and columns 0 to 3, nothing else
    # ... but where no view sees the ray the image is still the generator's alone, and outside a patch.
    before, unseen = spatial(g, u, evidence), evidence[:, SEEN] == 0
    torch.testing.assert_close(
        before.flatten(2).transpose(1, 2)[unseen], g.flatten(2).transpose(1, 2)[unseen]
    )
    patch = spatial(g, u, evidence[..., pixels], pixels, grid)
    outside = torch.ones(64, dtype=torch.bool).index_fill(0, pixels, False)
    torch.testing.assert_close(patch.flatten(2)[..., outside], g.flatten(2)[..., outside])


def test_a_sharp_model_with_a_spatial_blend_trains_on_patches():
    torch.manual_seed(0)
    model = sharp(pixel_fraction=0.25, blend_spatial=3, search_views=True)
    x, v = torch.rand(2, 4, 3, 16, 16), cameras(8, 6).view(2, 4, 7)
    _, (reading, pixels) = model._scene(x[:, :3], v[:, :3], v[:, 3])
    assert pixels.shape == (64,) and reading.grid == (8, 8)
    model(x[:, :3], v[:, :3], x[:, 3], v[:, 3], sigma=0.7)["objective"].backward()
    assert model.blend.spatial[-1].weight.grad.abs().sum() > 0
    with pytest.raises(GQNError, match="blend_spatial must be odd"):
        sharp(blend_spatial=2)
    with pytest.raises(GQNError, match=r"blend_spatial needs pixel evidence \(pixel_depths > 0\)"):
        tiny(representation="epipolar", fov=FOV, near=NEAR, far=FAR, blend_spatial=3)
