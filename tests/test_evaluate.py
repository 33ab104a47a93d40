"""`gqn eval` and `gqn render`: metrics with known answers, reproducible reports and pictures."""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAINED_STEPS, make_dataset, train_tiny
from PIL import Image

from gqn.cameras import viewpoints
from gqn.checkpoint import load_checkpoint, load_model
from gqn.cli import main
from gqn.data import SceneDataset
from gqn.errors import GQNError
from gqn.metrics import PSNR_CAP, mse, psnr, ssim, view_scores
from gqn.novel_views import predict
from gqn.schedules import sigma_at
from gqn.scoring import evaluate, nearest_view, view_orders


def test_metrics_known_answers():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_CAP))  # identical: capped, not infinite
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    y = x + 0.1
    torch.testing.assert_close(mse(x, y), torch.full((2,), 0.01))
    torch.testing.assert_close(psnr(x, y), torch.full((2,), 20.0))


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 48, 48, generator=g)
    y = (x + 0.2 * torch.randn(1, 3, 48, 48, generator=g)).clamp(0, 1)
    reference = structural_similarity(
        x[0].permute(1, 2, 0).numpy(),
        y[0].permute(1, 2, 0).numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    assert ssim(x, y).item() == pytest.approx(reference, abs=1e-5)


def test_nearest_view_baseline_picks_the_closest_direction():
    context_x = torch.arange(3.0)[None, :, None, None, None].expand(1, 3, 3, 2, 2)
    yaw = torch.tensor([0.0, math.pi / 2, math.pi])
    cams = torch.zeros(1, 3, 5)
    cams[0, :, 3] = yaw
    query = torch.tensor([[0.0, 0.0, 0.0, math.pi / 2 + 0.3, 0.0]])
    assert nearest_view(context_x, cams, query).flatten().unique().tolist() == [1.0]


def test_eval_is_reproducible_and_has_every_number(trained_tiny):
    data, run = trained_tiny
    model, loaded = load_model(run)
    assert loaded.step == TRAINED_STEPS and loaded.sigma == pytest.approx(sigma_at(TRAINED_STEPS), abs=1e-4)
    ds = SceneDataset(data, split="test")
    a = evaluate(model, ds, scenes=8, contexts=(1, 3), samples=2, sigma=0.7, batch_size=3)
    assert json.dumps(a) == json.dumps(
        evaluate(model, ds, scenes=8, contexts=(1, 3), samples=2, sigma=0.7, batch_size=3)
    )
    # Each scene has its own noise, so another batching changes only the rounding.
    b = evaluate(model, ds, scenes=8, contexts=(1, 3), samples=2, sigma=0.7, batch_size=5)
    assert b["results"]["3"]["prior_sample"]["mse"] == pytest.approx(
        a["results"]["3"]["prior_sample"]["mse"], rel=1e-4
    )
    assert b["results"]["3"]["elbo_nats"] == pytest.approx(a["results"]["3"]["elbo_nats"], rel=1e-5)
    r = a["results"]["3"]
    assert r["elbo_nats"] == pytest.approx(r["nll_nats"] + r["kl_nats"], rel=1e-6)
    for method in ("posterior", "prior_mean", "prior_sample", "context_mean", "nearest_view"):
        assert set(r[method]) == {"mse", "psnr", "ssim"}
    # Known answers, recomputed from the frames: scene i's views in its seeded order, the query
    # first and the next 3 the context; the baseline is their mean, the prior mean model.sample's.
    context_mse, context_psnr, prior_mean_mse = [], [], []
    for i, order in view_orders(ds, 8, seed=0):
        frames = torch.from_numpy(ds[i].frames).permute(0, 3, 1, 2).float() / 255
        v = viewpoints(torch.from_numpy(ds[i].cameras))
        truth, context = frames[order[0]][None], frames[order[1:4]]
        context_mse.append(mse(context.mean(0, keepdim=True), truth).item())
        context_psnr.append(psnr(context.mean(0, keepdim=True), truth).item())
        guess = model.sample(context[None], v[order[1:4]][None], v[order[0]][None], use_mean=True)
        prior_mean_mse.append(mse(guess, truth).item())
    assert r["context_mean"]["mse"] == pytest.approx(np.mean(context_mse), rel=1e-5)
    assert r["context_mean"]["psnr"] == pytest.approx(
        np.mean(context_psnr), rel=1e-5
    )  # mean of per-image PSNR
    assert r["prior_mean"]["mse"] == pytest.approx(np.mean(prior_mean_mse), rel=1e-4)
    assert (
        a["results"]["1"]["context_mean"] == a["results"]["1"]["nearest_view"]
    )  # one view: both baselines are it


def cli(command: str) -> int:
    return main(command.split())


def test_cli_eval_render_and_orbit_write_their_files(trained_tiny, tmp_path, capsys):
    data, run = trained_tiny
    assert cli(f"eval {run} --data {data} --scenes 6 --context 1,2 --out {tmp_path}/e.json") == 0
    out = capsys.readouterr().out
    assert "prior_mean" in out and "nearest_view *" in out
    assert set(json.loads((tmp_path / "e.json").read_text())["results"]) == {"1", "2"}
    assert cli(f"render {run} --data {data} --scene 2 --samples 3 --out {tmp_path}/g.png") == 0
    # 3 context views, truth, posterior, prior mean, 3 samples, their std: 10 tiles of 2 x 64 px
    assert Image.open(tmp_path / "g.png").size[0] == 10 * (128 + 2) + 2
    assert re.search(
        r"PSNR against the truth: prior mean \d+\.\d\d dB, posterior \d+\.\d\d dB", capsys.readouterr().out
    )
    assert cli(f"render {run} --data {data} --scene 2 --orbit --frames 36 --out {tmp_path}/o.gif") == 0
    gif = Image.open(tmp_path / "o.gif")
    assert gif.n_frames == 36 and gif.size == (128, 128)


def test_the_grids_samples_follow_their_seed_and_leave_torchs_rng_alone(trained_tiny):
    data, run = trained_tiny
    model, _ = load_model(run)
    scene = SceneDataset(data, split="test")[2]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = predict(model, scene.frames, scene.cameras, samples=3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    b = predict(model, scene.frames, scene.cameras, samples=2, seed=5)
    c = predict(model, scene.frames, scene.cameras, samples=2, seed=6)
    assert torch.equal(a["samples"][:2], b["samples"])  # draw i is the same however many are drawn
    assert not torch.equal(b["samples"], c["samples"]) and not torch.equal(a["samples"][0], a["samples"][1])


def test_render_from_a_folder_of_own_images(trained_tiny, tmp_path):
    data, run = trained_tiny
    scene = SceneDataset(data, split="test")[0]
    folder = tmp_path / "mine"
    folder.mkdir()
    for i, frame in enumerate(scene.frames[:4]):
        Image.fromarray(frame).save(folder / f"view{i}.png")
    with pytest.raises(GQNError, match=r"no cameras\.json or cameras\.txt"):
        main_raise(["render", str(run), "--scene", str(folder), "--out", str(tmp_path / "x.png")])
    (folder / "cameras.json").write_text(json.dumps(scene.cameras[:4].tolist()))
    assert (
        main(
            [
                "render",
                str(run),
                "--scene",
                str(folder),
                "--orbit",
                "--camera-path",
                "sphere",
                "--out",
                str(tmp_path / "m.gif"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "m.gif").n_frames == 48


def main_raise(argv):
    """Run a command's function directly, so its GQNError reaches the test."""
    from gqn.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.run(args)


def test_bad_inputs_are_one_line_errors(trained_tiny, capsys):
    data, run = trained_tiny
    assert main(["render", str(run), "--data", data, "--scene", "99", "--out", "/tmp/never.png"]) == 1
    assert "--scene 99: shepard_metzler_5_parts/test has scenes 0..11" in capsys.readouterr().err
    assert main(["eval", str(run), "--data", data, "--context", "1,x"]) == 1
    assert "expected comma-separated integers" in capsys.readouterr().err
    assert main(["eval", str(run), "--data", data, "--context", "15"]) == 1
    assert "scenes have 15 views, so at most 14" in capsys.readouterr().err


def test_distance_ratio_known_answer():
    from gqn.analyze import distance_ratio

    vectors = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    out = distance_ratio(vectors, np.array([0, 0, 1, 1]))
    between = (10 + 10 + 2 * math.sqrt(101)) / 4
    assert out["within"] == pytest.approx(1.0) and out["between"] == pytest.approx(between)
    assert out["ratio"] == pytest.approx(1 / between)


def test_prune_zeroes_the_smallest_weights(trained_tiny):
    from gqn.analyze import prune

    model, _ = load_model(trained_tiny[1])
    weights = torch.cat([p.detach().abs().flatten() for p in model.parameters() if p.dim() > 1])
    pruned = prune(model, 0.3)
    after = torch.cat([p.detach().abs().flatten() for p in pruned.parameters() if p.dim() > 1])
    assert (after == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    kept = after > 0
    assert after[kept].min() >= weights[~kept].max()  # what was removed was the smallest
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), prune(model, 0.0).parameters()))
    biases = [p for p in pruned.parameters() if p.dim() == 1]
    assert all(torch.equal(a, b) for a, b in zip([p for p in model.parameters() if p.dim() == 1], biases))


def test_analyze_writes_every_study(trained_tiny, tmp_path, capsys):
    from gqn.analyze import representations

    data, run = trained_tiny
    assert (
        main(
            [
                "analyze",
                str(run),
                "--data",
                data,
                "--scenes",
                "4",
                "--sets",
                "3",
                "--prune-scenes",
                "4",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    numbers = json.loads((tmp_path / "analysis.json").read_text())
    rows = numbers["pruning"]
    assert [r["fraction"] for r in rows] == pytest.approx([i / 10 for i in range(10)])
    # Nothing pruned: exactly `gqn eval` of the model at its sigma, 4 scenes, K = 3.
    model, loaded = load_model(run)
    ds = SceneDataset(data, split="test")
    r = evaluate(model, ds, scenes=4, contexts=(3,), samples=0, sigma=loaded.sigma)["results"]["3"]
    assert rows[0]["elbo_nats"] == pytest.approx(r["elbo_nats"], rel=1e-6)
    assert rows[0]["prior_mean_psnr"] == pytest.approx(r["prior_mean"]["psnr"], rel=1e-6)
    assert rows[-1]["elbo_nats"] != rows[0]["elbo_nats"]  # 90% of the weights gone changes it
    study = numbers["representations"]
    assert (study["scenes"], study["sets"]) == (4, 3)
    assert study["ratio"] == pytest.approx(study["within"] / study["between"])
    assert study["ratio"] == pytest.approx(representations(model, ds, scenes=4, sets=3)["ratio"], rel=1e-5)
    assert set(numbers["files"]) == {"representations", "pruning", "features", "canvas"}
    assert Image.open(tmp_path / "representations.png").size == (900, 420)  # 9 x 4.2 in at 100 dpi
    assert Image.open(tmp_path / "pruning.png").size == (550, 360)
    # The feature maps: 16 channels of r (16 x 16 for 64 px frames), 8 a row, 4x enlarged.
    assert Image.open(tmp_path / "features.png").size == (8 * (64 + 2) + 2, 2 * (64 + 2) + 2)
    # The canvas study: L steps and the truth for each of 3 scenes.
    assert Image.open(tmp_path / "canvas.png").size == (3 * (128 + 2) + 2, 3 * (128 + 2) + 2)


def test_view_scores_blind_truth_and_swapped():
    truths = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    blind = truths.mean(0, keepdim=True).expand(6, -1, -1, -1)  # the same image for every camera
    gain, ident = view_scores(blind, truths)
    assert gain == pytest.approx(0.0, abs=1e-9) and ident == pytest.approx(1 / 6)
    gain, ident = view_scores(truths, truths)
    assert ident == 1.0 and gain > 50  # PSNR of identical images is capped at 100 dB
    swapped = truths[[1, 0, 2, 3, 4, 5]]  # predictions for cameras 0 and 1 exchanged
    assert view_scores(swapped, truths)[1] == pytest.approx(4 / 6)
    # A prediction that is the truth plus noise: the gain is its PSNR over the other views' PSNR.
    noisy = (truths + 0.05 * torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))).clamp(
        0, 1
    )
    gain, ident = view_scores(noisy, truths)
    db = torch.tensor(
        [[psnr(noisy[i : i + 1], truths[j : j + 1]).item() for j in range(6)] for i in range(6)]
    )
    off = ~torch.eye(6, dtype=torch.bool)
    assert ident == 1.0 and gain == pytest.approx((db.diagonal().mean() - db[off].mean()).item(), rel=1e-5)


def test_eval_reports_view_metrics_of_the_model_and_the_nearest_view(trained_tiny):
    data, run = trained_tiny
    model, _ = load_model(run)
    ds = SceneDataset(data, split="test")
    r = evaluate(model, ds, scenes=4, contexts=(1, 3), samples=0, sigma=0.7)["results"]["3"]["views"]
    assert r["queries"] == min(10, ds.views - 3)
    for method in ("prior_mean", "nearest_view"):
        assert 0 <= r[method]["identification"] <= 1 and math.isfinite(r[method]["gain_db"])
    # From one context view every camera's nearest view is that view: blind, exactly 0 dB and 1/Q.
    one = evaluate(model, ds, scenes=4, contexts=(1,), samples=0, sigma=0.7)["results"]["1"]["views"]
    assert one["nearest_view"]["gain_db"] == pytest.approx(0, abs=1e-9)
    assert one["nearest_view"]["identification"] == pytest.approx(1 / one["queries"])


def test_the_default_scenes_shrink_to_what_the_data_has(reference_file, tmp_path, capsys):
    """`gqn eval` of the real reference scene, as the README shows it: --scenes 100 by default,
    one scene there."""
    reference = str(Path(reference_file).parents[2])
    out = tmp_path / "e.json"
    assert cli(f"eval pretrained:shepard_metzler_5_parts --data {reference} --samples 1 --out {out}") == 0
    assert json.loads(out.read_text())["scenes"] == 1
    assert (
        "shepard_metzler_5_parts/test has 1 scenes, fewer than 100: using them all" in capsys.readouterr().err
    )
    # Asked for, more scenes than there are is an error.
    assert cli(f"eval pretrained:shepard_metzler_5_parts --data {reference} --scenes 2") == 1
    assert "--scenes 2: shepard_metzler_5_parts/test has 1 scenes" in capsys.readouterr().err


def test_the_output_format_follows_the_extension(trained_tiny, tmp_path, capsys):
    data, run = trained_tiny
    assert cli(f"render {run} --data {data} --orbit --frames 4 --out {tmp_path}/o.png") == 0
    orbit = Image.open(tmp_path / "o.png")
    assert (orbit.format, orbit.n_frames) == ("PNG", 4)  # an animated PNG, not GIF bytes
    assert cli(f"render {run} --data {data} --out {tmp_path}/g.gif") == 0
    assert Image.open(tmp_path / "g.gif").format == "GIF"
    assert cli(f"render {run} --data {data} --out {tmp_path}/g.bmp") == 1
    assert "g.bmp: cannot write a picture as .bmp; use .png, .jpg, .jpeg, .gif" in capsys.readouterr().err
    assert cli(f"render {run} --data {data} --orbit --out {tmp_path}/o.jpg") == 1
    assert "o.jpg: cannot write an animation as .jpg; use .gif, .png" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gif", "o.png"]


def builtin(dataset, views, scenes=3):
    """A stand-in for the built-in data of `dataset` in this test's cache, so nothing is rendered."""
    from gqn.defaults import SEED, TEST_SCENES, TRAIN_SCENES

    root = Path(os.environ["GQN_CACHE_DIR"]) / "data" / f"{dataset}-{TRAIN_SCENES}-{TEST_SCENES}-seed{SEED}"
    return make_dataset(root, dataset, files=(1, 1), scenes_per_file=scenes, views=views)


def test_without_data_a_model_sees_the_built_in_data_of_its_own_dataset(reference_file, tmp_path, capsys):
    builtin("shepard_metzler_5_parts", views=15)
    builtin("rooms_ring_camera", views=10)
    assert load_model("pretrained:rooms_ring_camera")[1].dataset == "rooms_ring_camera"
    assert cli(f"render pretrained:rooms_ring_camera --scene 1 --out {tmp_path}/g.png") == 0
    assert "rooms_ring_camera scene 1" in capsys.readouterr().out
    assert cli(f"eval pretrained:rooms_ring_camera --context 1 --samples 0 --out {tmp_path}/e.json") == 0
    assert json.loads((tmp_path / "e.json").read_text())["dataset"] == "rooms_ring_camera"
    # Another dataset's scenes, asked for: drawn, with a note.
    reference = str(Path(reference_file).parents[2])
    assert cli(f"render pretrained:rooms_ring_camera --data {reference} --out {tmp_path}/r.png") == 0
    assert "note: the model was trained on rooms_ring_camera; these scenes are shepard_metzler_5_parts" in (
        capsys.readouterr().err
    )


def test_a_model_of_a_dataset_without_built_in_data_says_what_to_pass(tmp_path, capsys):
    builtin("shepard_metzler_5_parts", views=15)
    data, run = train_tiny(tmp_path, scenes_per_file=4, name="jaco")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["dataset"] == "jaco"
    assert cli(f"eval {run} --context 1") == 1
    assert capsys.readouterr().err == (
        "gqn: error: the model was trained on jaco, which has no built-in data: pass --data ROOT/jaco\n"
    )
    assert cli(f"eval {run} --data {data} --context 1 --samples 0 --out {tmp_path}/e.json") == 0
