"""How big a model is: parameters per network and FLOPs of one training example; `gqn model`.

gqn model --config paper
gqn model --config small --context 3
gqn model --config epipolar --dataset rooms_ring_camera
gqn model --config sharp
"""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from gqn.arguments import HelpFormatter
from gqn.config import get_config, with_cameras
from gqn.data import get_dataset
from gqn.model import GQN, PRESETS, V_DIM, X_CHANNELS


def count_parameters(model: GQN) -> dict[str, int]:
    """Parameters per network and in total."""
    parts = {
        "representation": model.representation,
        "generation": model.generation,
        "inference": model.inference,
        "observation": model.observation,
    }
    if model.config.pixel_depths:
        parts["pixel evidence"] = torch.nn.ModuleList([model.evidence, model.blend])
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


def count_flops(model: GQN, context: int = 5, image_size: int | None = None) -> dict[str, int]:
    """FLOPs (a multiply-add counts 2) of one training example: forward, and forward + backward;
    a progress bar on stderr counts the two passes (half a minute for the paper's model on a CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = image_size or model.config.image_size
    x = torch.rand(1, context, X_CHANNELS, size, size)
    v = torch.rand(1, context, V_DIM)
    qx, qv = torch.rand(1, X_CHANNELS, size, size), torch.rand(1, V_DIM)
    with tqdm(total=2, desc="counting FLOPs", unit="pass", disable=None, file=sys.stderr) as bar:
        with FlopCounterMode(display=False) as fwd:
            model(x, v, qx, qv, sigma=1.0)
        bar.update()
        with FlopCounterMode(display=False) as both:
            model(x, v, qx, qv, sigma=1.0)["objective"].backward()
        bar.update()
    model.zero_grad(set_to_none=True)
    return {"forward": fwd.get_total_flops(), "train": both.get_total_flops()}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "model",
        help="a model config's fields, parameter and FLOP counts",
        description="Print a model config (a preset or a JSON file), its parameters per network and\n"
        "the FLOPs of one training example (a multiply-add counts 2).\n\n"
        "examples:\n  gqn model --config paper\n  gqn model --config small --context 3",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--config",
        default="small",
        help=f"preset ({', '.join(PRESETS)}) or a .json file",
    )
    p.add_argument("--context", type=int, default=5, help="context views for the FLOP count")
    p.add_argument("--image-size", type=int, default=None, help="frame size (default: the config's)")
    p.add_argument(
        "--dataset",
        default="shepard_metzler_5_parts",
        help="whose cameras (field of view, depth bounds) an epipolar, sharp, views or demo config without them takes",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    get_dataset(args.dataset)  # an unknown name is an error listing the valid ones
    config = with_cameras(get_config(args.config), args.dataset)
    model = GQN(config)
    print(f"config {args.config}:")
    for key, value in config.to_dict().items():
        print(f"  {key:<15} {value}")
    print("parameters:")
    for name, n in count_parameters(model).items():
        print(f"  {name:<15} {n:>12,}")
    size = args.image_size or config.image_size
    flops = count_flops(model, context=args.context, image_size=size)
    print(f"FLOPs per example ({size}x{size}, {args.context} context views):")
    print(f"  {'forward':<15} {flops['forward'] / 1e9:>10.2f} G")
    print(f"  {'train step':<15} {flops['train'] / 1e9:>10.2f} G  (forward + backward)")
    return 0
