"""A training checkpoint as pretrained weights: `gqn export`.

    gqn export runs/gqn --name shepard_metzler_5_parts --out gqn/weights --eval eval.json
    gqn export runs/rooms_free-1 --name rooms_free_camera_with_object_rotations --out gqn/weights \
        --eval eval.json --check eval-20.json
    gqn export runs/sm5-2 --earlier runs/sm5-1/checkpoints/step-00004000.pt --name sm5 --out .

Writes NAME.safetensors and NAME.json (the layout is in `gqn.checkpoint`, which also reads them):
the model's tensors, and its config, the step and pixel sigma it was trained to, the dataset it
learned from, the `gqn train` commands that reproduce it (`gqn.config.training_commands`), the
SHA-256 of the weights and the eval table measured on it (and with --check a second, smaller one:
CI reproduces that one instead, for a model whose full table takes too long to measure). Weights
in `gqn/weights/` ship with gqn and load as `pretrained:NAME` wherever a verb takes a CHECKPOINT,
and in Python as `gqn.load_pretrained(NAME)`. While it writes, --out is claimed (`gqn.lock`): a
second export into it is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gqn.arguments import HelpFormatter, checkpoint
from gqn.checkpoint import (
    WEIGHTS_DIR,
    describe,
    is_pretrained,
    load_checkpoint,
    read_description,
    resolve,
    save_weights,
)
from gqn.config import training_commands
from gqn.errors import GQNError
from gqn.files import writable_folder
from gqn.lock import claim


def export(
    checkpoint: str | os.PathLike,
    name: str,
    out: str | os.PathLike = WEIGHTS_DIR,
    eval_report: dict | None = None,
    earlier: list[str | os.PathLike] = (),
    check_report: dict | None = None,
) -> tuple[Path, Path]:
    """Write NAME.safetensors and NAME.json into `out` from a training checkpoint (or run folder);
    `earlier`: the checkpoints of earlier training stages it was resumed or grown from, first to last;
    `check_report`: a smaller eval of the same weights, recorded as "eval_check"."""
    if is_pretrained(checkpoint):
        raise GQNError(f"{checkpoint}: already exported weights; gqn export takes a training checkpoint")
    path = resolve(str(checkpoint))
    state = load_checkpoint(path)
    last = describe(path, state)
    stages = [load_checkpoint(resolve(str(p), flag="--earlier")) for p in earlier] + [state]
    # The weights the first stage started from, as recorded when it started (checkpoints from
    # before gqn recorded it: as they are now, which is right unless they were replaced since).
    first = describe(earlier[0], stages[0]) if earlier else last
    origin = first.init_origin
    init = first.train_config.get("init")
    if origin is None and init and is_pretrained(init):
        origin = read_description(init)
    train_config = last.train_config
    meta = {
        "model_config": state["model_config"],
        "step": last.step,
        "sigma": last.sigma,
        "dataset": last.dataset,
        "trained_with": training_commands(name, stages, origin),
        # paths on the machine that trained it: `trained_with` names them in the recipe's terms
        "train_config": {
            k: v for k, v in train_config.items() if k not in ("run_dir", "data", "resume", "init")
        },
    }
    for key, report in (("eval", eval_report), ("eval_check", check_report)):
        if report is not None:
            meta[key] = {k: v for k, v in report.items() if k != "checkpoint"}  # a local path
    tensors = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
    with claim(out):  # one writer: two exports into `out` could pair one's weights with the other's JSON
        return save_weights(out, name, tensors, meta)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="a checkpoint's weights as safetensors + config JSON (what pretrained: names load)",
        description=__doc__,
        formatter_class=HelpFormatter,
        parents=[checkpoint("a checkpoint file or a run folder")],
    )
    p.add_argument("--name", required=True, help="NAME of NAME.safetensors and NAME.json")
    p.add_argument("--out", default=".", help="folder to write into (gqn/weights/ ships with gqn)")
    p.add_argument("--eval", default=None, help="an eval JSON of `gqn eval` to record with the weights")
    p.add_argument(
        "--check",
        default=None,
        help="a smaller eval JSON of the same weights (fewer scenes), which CI reproduces instead",
    )
    p.add_argument(
        "--earlier",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="a checkpoint of an earlier training stage this one resumed or grew (--init) from (repeat, first to last)",
    )
    p.set_defaults(run=run)


def read_report(path: str | None) -> dict | None:
    """The eval JSON at `path` (None: none)."""
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise GQNError(f"{path}: cannot read the eval report ({e})") from None


def run(args) -> int:
    report, check = read_report(args.eval), read_report(args.check)
    if check is not None and report is None:
        raise GQNError("--check is the smaller eval beside --eval's: give --eval too")
    writable_folder(args.out)
    for path in export(args.checkpoint, args.name, args.out, report, args.earlier, check):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
