"""What view gain and view identification a dataset allows: the scale of `gqn eval`'s view metrics.

    python benchmarks/view_scale.py                                   # the built-in data
    python benchmarks/view_scale.py --data data/rooms_ring_camera --queries 5

View gain depends on how different a dataset's views are from one another: a Shepard-Metzler
object on black changes its whole silhouette between cameras, while two views of a room share
the floor, the walls' colours and the horizon. So a figure means little without the same
figure for a reference prediction on the same scenes. This prints, over --scenes held-out scenes
each seen from --queries cameras (as `gqn eval` does at K = 3), the view gain and view
identification of the truth itself, of the truth blurred by a Gaussian of 1, 2 and 4 pixels
(what a prediction that is right but blurred can reach) and of the mean of the views (blind to
the camera: 0 dB and 1/Q).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from gqn.data import view_inputs
from gqn.defaults import open_dataset
from gqn.metrics import view_scores


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x (N, 3, H, W) blurred by a Gaussian of `sigma` pixels (reflected borders)."""
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).expand(3, 1, -1)
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, g[..., None, :], groups=3)  # along rows
    return F.conv2d(x, g[..., :, None], groups=3)  # along columns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="ROOT/DATASET (default: the built-in data)")
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes")
    p.add_argument("--queries", type=int, default=10, help="cameras per scene (gqn eval: at most 10)")
    args = p.parse_args()
    test = open_dataset(args.data, "test")
    scenes = min(args.scenes, len(test))
    predictions = {
        "truth": lambda x: x,
        **{f"truth blurred, {s:g} px": (lambda x, s=s: blurred(x, s)) for s in (1, 2, 4)},
        "mean of the views (blind)": lambda x: x.mean(0, keepdim=True).expand_as(x),
    }
    totals = {name: [0.0, 0.0] for name in predictions}
    for i in range(scenes):
        x, _ = view_inputs(test.get_views([(i, tuple(range(args.queries)))]))
        x = x[0]  # (Q, 3, H, W)
        for name, predict in predictions.items():
            gain, identification = view_scores(predict(x), x)
            totals[name][0] += gain / scenes
            totals[name][1] += identification / scenes
    print(f"{test.dataset_name}/test: {scenes} scenes, {args.queries} cameras each")
    print(f"{'prediction':<28}{'view gain dB':>14}{'identification':>16}")
    for name, (gain, identification) in totals.items():
        print(f"{name:<28}{gain:>14.2f}{identification:>16.3f}")


if __name__ == "__main__":
    main()
