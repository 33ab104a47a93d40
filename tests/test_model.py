"""The GQN network and its ELBO, against known answers."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny
from torch import nn

from gqn.checkpoint import available, load_pretrained, weights_path
from gqn.config import get_config, with_cameras
from gqn.counts import count_flops, count_parameters
from gqn.errors import GQNError
from gqn.model import GQN, PRESETS, GQNConfig, gaussian_nll, kl_divergence
from gqn.runtime import autocast


def inputs(b=2, k=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(b, k, 3, size, size, generator=g),
        torch.rand(b, k, 7, generator=g),
        torch.rand(b, 3, size, size, generator=g),
        torch.rand(b, 7, generator=g),
    )


@pytest.mark.parametrize("representation", ["tower", "pool", "pyramid", "epipolar"])
@pytest.mark.parametrize("shared", [True, False])
def test_output_shapes(representation, shared):
    cfg = tiny(representation=representation, shared_core=shared, L=3, fov=90.0, near=0.5, far=6.0)
    model = GQN(cfg)
    assert len(model.generation) == len(model.inference) == (1 if shared else 3)
    cx, cv, qx, qv = inputs(size=64)
    out = model(cx, cv, qx, qv, sigma=0.7)
    for key in ("loss", "nll", "kl", "mse"):
        assert out[key].shape == ()
    assert out["kl_steps"].shape == (3,) and out["mean"].shape == (2, 3, 64, 64)
    r = model.represent(cx, cv, qv)
    assert r.shape == ((2, 16, 16, 16) if representation in ("tower", "epipolar") else (2, 16, 1, 1))
    assert model.sample(cx, cv, qv).shape == (2, 3, 64, 64)
    assert model.reconstruct(cx, cv, qx, qv).shape == (2, 3, 64, 64)


def test_representation_is_the_sum_over_context_views():
    model = GQN(tiny())
    cx, cv, _, _ = inputs(k=3)
    parts = [model.represent(cx[:, i : i + 1], cv[:, i : i + 1]) for i in range(3)]
    torch.testing.assert_close(model.represent(cx, cv), sum(parts))


def test_any_context_size_and_128_pixels():
    model = GQN(tiny())
    for k in (1, 7):
        cx, cv, qx, qv = inputs(k=k, size=128)
        out = model(cx, cv, qx, qv, sigma=1.0)
        assert out["mean"].shape == (2, 3, 128, 128)
    assert model.represent(cx, cv).shape == (2, 16, 32, 32)


@pytest.mark.parametrize("representation", ["pool", "pyramid", "epipolar"])
@pytest.mark.parametrize("shared", [True, False])
def test_grid_scale_8_runs_every_representation_that_takes_any_grid(representation, shared):
    cfg = tiny(
        representation=representation, shared_core=shared, L=3, fov=90.0, near=0.5, far=6.0, grid_scale=8
    )
    model = GQN(cfg)
    cx, cv, qx, qv = inputs(size=128)
    out = model(cx, cv, qx, qv, sigma=0.7)
    assert out["mean"].shape == (2, 3, 128, 128) and out["kl_steps"].shape == (3,)
    assert model.sample(cx, cv, qv).shape == model.reconstruct(cx, cv, qx, qv).shape == (2, 3, 128, 128)


def test_grid_scale_8_keeps_the_16x16_grid_at_128_pixels():
    cfg = tiny(
        representation="epipolar", fov=90.0, near=0.5, far=6.0, pixel_depths=4, grid_scale=8, image_size=128
    )
    model = GQN(cfg)
    cx, cv, qx, qv = inputs(size=128)
    assert model.represent(cx, cv, qv).shape == (2, 16, 16, 16)
    assert model.noise_shape(2, 128, 128) == (cfg.L, 2, cfg.z_channels, 16, 16)
    out = model(cx, cv, qx, qv, sigma=0.7)
    assert out["mean"].shape == (2, 3, 128, 128) and out["kl_steps"].shape == (cfg.L,)
    out["objective"].backward()
    assert all(p.grad is not None for p in model.parameters())
    noise = torch.randn(model.noise_shape(2, 128, 128))
    assert model.sample(cx, cv, qv, noise=noise).shape == (2, 3, 128, 128)
    with pytest.raises(GQNError, match="multiples of 8"):
        model(cx[..., :36, :36], cv, qx[..., :36, :36], qv, 1.0)
    with pytest.raises(GQNError, match="grid_scale must be 4, got 8"):
        tiny(grid_scale=8)
    with pytest.raises(GQNError, match="multiple of grid_scale 8, got 100"):
        tiny(representation="pool", grid_scale=8, image_size=100)


def test_bad_shapes_are_clear_errors():
    model = GQN(tiny())
    cx, cv, qx, qv = inputs(size=32)
    with pytest.raises(GQNError, match="multiples of 4"):
        model(cx[..., :30, :30], cv, qx[..., :30, :30], qv, 1.0)
    with pytest.raises(GQNError, match=r"context_v must be \(B, K, 7\)"):
        model(cx, cv[:, :2], qx, qv, 1.0)
    with pytest.raises(GQNError, match=r"context_x must be \(B, K, 3, H, W\)"):
        model(cx[:, 0], cv, qx, qv, 1.0)


@pytest.mark.parametrize("shared", [True, False])
def test_every_parameter_gets_a_gradient(shared):
    model = GQN(tiny(shared_core=shared, L=3))
    out = model(*inputs(), sigma=0.7)
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_kl_matches_torch_distributions_and_is_nonnegative():
    g = torch.Generator().manual_seed(1)
    shape = (4, 3, 5, 5)
    qm, pm = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    qs, ps = torch.rand(shape, generator=g) + 0.1, torch.rand(shape, generator=g) + 0.1
    ours = kl_divergence(qm, qs, pm, ps)
    q, p = torch.distributions.Normal(qm, qs), torch.distributions.Normal(pm, ps)
    torch.testing.assert_close(ours, torch.distributions.kl_divergence(q, p).flatten(1).sum(1))
    assert (ours >= 0).all()
    assert kl_divergence(qm, qs, qm, qs).abs().max() < 1e-5


def test_nll_constant_at_sigma_07_is_the_6909_floor():
    x = torch.rand(1, 3, 64, 64)
    assert gaussian_nll(x, x, 0.7).item() == pytest.approx(6908.7, abs=0.5)
    # One pixel off by 0.7: half a nat more.
    y = x.clone()
    y[0, 0, 0, 0] += 0.7
    assert (gaussian_nll(x, y, 0.7) - gaussian_nll(x, x, 0.7)).item() == pytest.approx(0.5, abs=1e-3)


def test_loss_is_nll_plus_kl_and_kl_is_the_sum_of_steps():
    out = GQN(tiny(L=4))(*inputs(), sigma=0.7)
    torch.testing.assert_close(out["loss"], out["nll"] + out["kl"])
    torch.testing.assert_close(out["kl"], out["kl_steps"].sum())
    assert (out["kl_steps"] >= 0).all()


@pytest.mark.parametrize("shared", [True, False])
def test_sampling_is_reproducible_under_a_seed(shared):
    model = GQN(tiny(shared_core=shared))
    cx, cv, _, qv = inputs()
    torch.manual_seed(5)
    a = model.sample(cx, cv, qv)
    torch.manual_seed(5)
    b = model.sample(cx, cv, qv)
    torch.manual_seed(6)
    c = model.sample(cx, cv, qv)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(model.sample(cx, cv, qv, use_mean=True), model.sample(cx, cv, qv, use_mean=True))


def test_prior_at_test_time_comes_from_the_same_state_as_in_training():
    """Make the posterior return exactly the prior of the current generator state: then every KL
    is 0 and the posterior-mean reconstruction equals the prior-mean sample, bit for bit."""
    model = GQN(tiny(L=3))
    gen, inf = model.generation[0], model.inference[0]
    last_prior = {}
    gen.prior.register_forward_hook(lambda m, args, out: last_prior.update(out=out))

    class EchoPrior(nn.Module):
        def forward(self, h_e):
            return last_prior["out"]

    inf.posterior = EchoPrior()
    cx, cv, qx, qv = inputs()
    out = model(cx, cv, qx, qv, sigma=0.7)
    assert out["kl_steps"].abs().max() == 0
    assert torch.equal(
        model.reconstruct(cx, cv, qx, qv, use_mean=True), model.sample(cx, cv, qv, use_mean=True)
    )


def test_overfits_one_batch():
    """100 Adam steps on one batch of block images: the reducible part of the loss (squared error
    term plus KL, i.e. the loss less the sigma constant) and the MSE both fall at least 20x."""
    torch.manual_seed(0)
    size, sigma = 32, 0.3
    x = torch.zeros(4, 3, 3, size, size)
    for i in range(4):
        x[i, :, i % 3, 4 + 2 * i : 20 + 2 * i, 6:22] = 1.0
    v = torch.rand(4, 3, 7)
    cx, cv, qx, qv = x[:, :2], v[:, :2], x[:, 2], v[:, 2]
    model = GQN(tiny(L=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    constant = 3 * size * size * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    history = []
    for _ in range(100):
        out = model(cx, cv, qx, qv, sigma)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append((out["loss"].item() - constant, out["mse"].item()))
    (first_loss, first_mse), (last_loss, last_mse) = history[0], history[-1]
    assert last_loss < first_loss / 20, (first_loss, last_loss)
    assert last_mse < first_mse / 20, (first_mse, last_mse)


def test_bf16_autocast_is_close_to_fp32():
    model = GQN(tiny())
    cx, cv, qx, qv = inputs()
    torch.manual_seed(0)
    full = model(cx, cv, qx, qv, sigma=0.7)
    torch.manual_seed(0)
    with autocast("bf16"):
        half = model(cx, cv, qx, qv, sigma=0.7)
    assert half["loss"].dtype == torch.float32
    assert half["loss"].item() == pytest.approx(full["loss"].item(), rel=0.01)
    with pytest.raises(GQNError, match="precision 'fp16'"):
        with autocast("fp16"):
            pass


def test_channels_last_gives_the_same_loss():
    model = GQN(tiny())
    cx, cv, qx, qv = inputs()
    torch.manual_seed(0)
    a = model(cx, cv, qx, qv, sigma=0.7)["loss"]
    model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    b = model(cx, cv, qx, qv, sigma=0.7)["loss"]
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)  # other conv kernels, other rounding


def test_config_presets_files_and_unknown_keys(tmp_path):
    paper = PRESETS["paper"]
    assert (paper.r_channels, paper.h_channels, paper.u_channels, paper.z_channels, paper.L) == (
        256,
        256,
        256,
        64,
        12,
    )
    assert paper.kernel_size == 5 and paper.representation == "tower"
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"L": 3, "h_channels": 32}))
    cfg = get_config(str(path))
    assert cfg.L == 3 and cfg.h_channels == 32 and cfg.r_channels == 256
    path.write_text(json.dumps({"L": 3, "hidden": 32}))
    with pytest.raises(
        GQNError,
        match=r"c\.json: unknown key\(s\) hidden; valid: L, blend_spatial, depth_samples, far, fov, grid_scale, h_channels",
    ):
        get_config(str(path))
    with pytest.raises(GQNError, match="unknown config 'huge'; presets: paper, small, tiny"):
        get_config("huge")
    with pytest.raises(GQNError, match="representation 'cube'"):
        GQNConfig(representation="cube")
    assert GQNConfig.from_dict(tiny().to_dict()) == tiny()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").glob("*.json")), ids=lambda p: p.name
)
def test_every_config_file_builds_its_model(path):
    cfg = with_cameras(get_config(str(path)), "shepard_metzler_5_parts")
    model = GQN(cfg)
    assert model.config.image_size in (64, 128) and model.config.representation == "epipolar"
    assert model.noise_shape(1, cfg.image_size, cfg.image_size)[-2:] == (16, 16)  # the 16x16 grid at any size


def test_a_config_file_may_be_shipped_weights_description():
    """`--config gqn/weights/NAME.json` trains the shipped model itself, depth samples and all."""
    for name in available():
        shipped = get_config(str(weights_path(f"pretrained:{name}").with_suffix(".json")))
        assert shipped == load_pretrained(name).config


def test_parameter_and_flop_counts():
    model = GQN(tiny())
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    # The observation network is one 1x1 convolution from 16 canvas channels to RGB.
    assert counts["observation"] == 16 * 3 + 3
    flops = count_flops(model, context=1, image_size=32)
    # Backward costs about twice the forward pass.
    assert 2.5 < flops["train"] / flops["forward"] < 3.5
    # The representation's first convolution alone: 3 -> 16 channels, 2x2, on a 16x16 output.
    assert flops["forward"] > 2 * 16 * 16 * 16 * 3 * 4
    # Pixel evidence is counted as a network of its own, and the total still holds every parameter.
    sharp = GQN(tiny(representation="epipolar", fov=90.0, near=0.5, far=6.0, pixel_depths=4))
    counts = count_parameters(sharp)
    assert counts["total"] == sum(p.numel() for p in sharp.parameters())
    assert counts["pixel evidence"] == sum(
        p.numel() for p in [*sharp.evidence.parameters(), *sharp.blend.parameters()]
    )


@pytest.mark.slow
def test_works_under_torch_compile():
    model = GQN(tiny())
    cx, cv, qx, qv = inputs()
    compiled = torch.compile(model)
    torch.manual_seed(0)
    eager = model(cx, cv, qx, qv, sigma=0.7)["loss"]
    torch.manual_seed(0)
    out = compiled(cx, cv, qx, qv, sigma=0.7)
    out["loss"].backward()
    torch.testing.assert_close(out["loss"], eager, rtol=1e-4, atol=1e-2)
    assert all(p.grad is not None for p in model.parameters())


def test_deterministic_step_regresses_the_prior_mean_while_the_posterior_learns_the_prior():
    torch.manual_seed(0)
    model = GQN(tiny())
    cx, cv, qx, qv = inputs()
    out = model(cx, cv, qx, qv, sigma=0.7, deterministic=True)
    torch.testing.assert_close(out["mean"].clamp(0, 1), model.sample(cx, cv, qv, use_mean=True))
    assert out["kl_steps"].shape == (tiny().L,) and out["kl"].item() > 0
    out["loss"].backward()
    shadowed = {n: p.grad.clone() for n, p in model.named_parameters()}
    # Everything but the inference network learns what the prior-mean regression alone teaches it.
    model.zero_grad(set_to_none=True)
    r = model.represent(cx, cv, qv)
    mean, _ = model._generate(r, None, qv, qx.shape[2:], "prior_mean")
    gaussian_nll(qx, mean, 0.7).mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("inference."):
            assert p.grad is None and shadowed[name].abs().sum() > 0, name
        else:
            torch.testing.assert_close(shadowed[name], p.grad, msg=name)


def test_deterministic_warm_up_brings_the_posterior_onto_the_prior():
    """The ELBO after a warm-up starts with a KL far below that of a posterior left untrained
    (on the sm5-epipolar run, ~900 nats, whose gradient wiped out what the warm-up had learned)."""

    def elbo_kl_after_warm_up(loss: str) -> float:
        torch.manual_seed(0)
        model = GQN(tiny())
        cx, cv, qx, qv = inputs()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(150):
            out = model(cx, cv, qx, qv, sigma=2.0, deterministic=True)
            optimizer.zero_grad()
            out[loss].backward()
            optimizer.step()
        torch.manual_seed(1)
        return model(cx, cv, qx, qv, sigma=2.0)["kl"].item()

    shadowed, untrained = elbo_kl_after_warm_up("loss"), elbo_kl_after_warm_up("nll")
    assert shadowed < 0.1 * untrained, (shadowed, untrained)
