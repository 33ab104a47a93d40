"""What a trained GQN scores on held-out scenes, next to two baselines: `gqn eval`.

    gqn eval runs/gqn --data data/shepard_metzler_5_parts --scenes 200 --context 1,3,5
    gqn eval pretrained:rooms_ring_camera      # the built-in data of the model's own dataset

The scoring itself is the library gqn.scoring (`evaluate`, `format_table`).

Each held-out scene gets one seeded order of its views: the first is the query, the next K the
context, so every context size predicts the same query from nested contexts. For each K:
the ELBO, NLL and KL (nats per image and bits per dimension) at the model's sigma, and MSE, PSNR
and SSIM against the true query of
  posterior      the reconstruction through the posterior (it sees the query: an upper bound)
  prior_mean     the prediction with z at the prior's mean at every step
  prior_sample   prior samples (the mean of the metrics over --samples draws)
  context_mean   baseline: the average of the context images
  nearest_view   baseline: the context image whose viewing direction is closest to the query's
and, for the prior mean and the nearest-view baseline, whether the prediction turns with the
camera: from the same context, each scene is predicted at Q query cameras (the query and the
views after the largest context, at most 10) and scored by `gqn.metrics.view_scores`:
  view gain            mean PSNR against the view at the same camera minus mean PSNR against the
                       views at the other cameras, in dB (0 for a prediction blind to the camera)
  view identification  the fraction of the Q views whose nearest prediction is the one made for
                       their camera (1/Q for a blind prediction, 1 for the truth)
"""

from __future__ import annotations

from pathlib import Path

from gqn.arguments import MODEL_DATA, HelpFormatter, checkpoint, data
from gqn.checkpoint import is_pretrained, load_model
from gqn.defaults import open_dataset
from gqn.errors import GQNError
from gqn.files import writable_folder, write_json
from gqn.scoring import SCENES, check_settings, evaluate, fit_scenes, format_table


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="ELBO, MSE, PSNR and SSIM on held-out scenes, with two baselines",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint(), data(default=MODEL_DATA)],
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        help=f"held-out scenes to evaluate (default: {SCENES}, or all the split has if fewer)",
    )
    p.add_argument("--context", default="1,3,5", help="context sizes, comma-separated")
    p.add_argument("--samples", type=int, default=4, help="prior samples per query")
    p.add_argument(
        "--sigma", type=float, default=None, help="pixel sigma of the ELBO (default: the model's at its step)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the view orders and the prior samples")
    p.add_argument(
        "--out", default=None, help="JSON file (default: eval.json beside the checkpoint's run folder)"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        contexts = tuple(int(c) for c in args.context.split(","))
    except ValueError:
        raise GQNError(
            f"--context {args.context!r}: expected comma-separated integers such as 1,3,5"
        ) from None
    if min(contexts) < 1:
        raise GQNError(f"--context {args.context}: sizes start at 1")
    check_settings(args.scenes, args.samples, args.sigma, args.seed)  # before any work
    model, loaded = load_model(args.checkpoint)
    out = args.out or default_report_path(args.checkpoint, loaded.path)
    writable_folder(Path(out).parent)  # before the work, not after it
    dataset = open_dataset(args.data, args.split, model.config.image_size, loaded.dataset)
    scenes = fit_scenes(args.scenes, SCENES, dataset)
    sigma = loaded.sigma if args.sigma is None else args.sigma
    report = evaluate(model, dataset, scenes, contexts, args.samples, sigma, args.seed)
    report.update(checkpoint=loaded.path, step=loaded.step)
    print(format_table(report))
    print(f"wrote {write_json(report, out)}")
    return 0


def default_report_path(source: str, path: str) -> Path:
    """eval.json in a checkpoint's run folder; for pretrained weights, eval-NAME.json here."""
    if is_pretrained(source):
        return Path(f"eval-{Path(path).stem}.json")
    return Path(path).parent.parent / "eval.json"
