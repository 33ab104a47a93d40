"""`gqn data ...`: look at, check and show GQN datasets in the official TFRecord layout."""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys

from tqdm import tqdm

from gqn.arguments import HelpFormatter, scene
from gqn.data.index import record_index
from gqn.data.layout import LAYOUT, discover
from gqn.data.table import DATASETS, get_dataset, parse_file_name
from gqn.defaults import DATASET, default_data
from gqn.errors import GQNError


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data",
        help="read, verify and show GQN datasets",
        description=f"GQN datasets in DeepMind's TFRecord layout: {LAYOUT}\n"
        f"Known datasets: {', '.join(DATASETS)}",
        formatter_class=HelpFormatter,
    )
    verbs = data.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in (add_list, add_info, add_verify, add_synth, add_download, add_builtin, add_compare, add_show):
        add(verbs)


def add_list(verbs) -> None:
    p = verbs.add_parser(
        "list",
        help="the official datasets: frame size, views, files per split",
        description="The seven official GQN datasets, or the file names of one.\n\n"
        "examples:\n  gqn data list\n  gqn data list shepard_metzler_5_parts",
        formatter_class=HelpFormatter,
    )
    p.add_argument("name", nargs="?", metavar="DATASET", help="an official dataset: list its file names")
    p.set_defaults(run=run_list)


def add_info(verbs) -> None:
    p = verbs.add_parser(
        "info",
        help="datasets, splits, files, scenes, views, frame size and bytes under PATH",
        description="Summarise the GQN data under PATH (a root, dataset or split folder, or a file).\n\n"
        "example:\n  gqn data info data/shepard_metzler_5_parts",
        formatter_class=HelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="a root of datasets, a dataset or split folder, or a file")
    p.set_defaults(run=run_info)


def add_verify(verbs) -> None:
    p = verbs.add_parser(
        "verify",
        help="check every CRC and decode every JPEG under PATH",
        description="Read every record under PATH completely: framing and both CRCs, the Example's\n"
        "features, every camera (finite), every JPEG. Exits 1 if anything is corrupt, naming file\n"
        "and byte offset, or if a file holds no scene or scenes differ in their number of views.\n\n"
        "example:\n  gqn data verify data/shepard_metzler_5_parts --workers 2",
        formatter_class=HelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="a root of datasets, a dataset or split folder, or a file")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    p.set_defaults(run=run_verify)


def add_synth(verbs) -> None:
    p = verbs.add_parser(
        "synth",
        help="render a GQN dataset locally with MuJoCo, in the official format",
        description="Render synthetic scenes of a GQN dataset into ROOT/DATASET/{train,test}/i-of-n.tfrecord,\n"
        "with the official frame size, views per scene, record format and JPEG frames.\n"
        "Synthesizable: shepard_metzler_5_parts, shepard_metzler_7_parts, rooms_ring_camera,\n"
        "rooms_free_camera_no_object_rotations, rooms_free_camera_with_object_rotations.\n"
        "The same seed and counts give byte-identical files for any number of workers.\n\n"
        "example:\n  gqn data synth shepard_metzler_5_parts --out data --train-scenes 2000 --test-scenes 200",
        formatter_class=HelpFormatter,
    )
    p.add_argument("dataset", metavar="DATASET", help="the dataset to render, by its official name")
    p.add_argument("--out", required=True, metavar="ROOT", help="root folder of the layout")
    p.add_argument("--train-scenes", type=int, default=2000, help="scenes in the train split")
    p.add_argument("--test-scenes", type=int, default=200, help="scenes in the test split")
    p.add_argument("--seed", type=int, default=0, help="scene i of a split is drawn from (seed, split, i)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="rendering processes")
    p.add_argument("--scenes-per-file", type=int, default=1000, help="scenes per TFRecord file")
    p.set_defaults(run=run_synth)


def add_download(verbs) -> None:
    p = verbs.add_parser(
        "download",
        help="fetch an official dataset over HTTPS, resumable and verified",
        description="Fetch DeepMind's files into DEST/DATASET/{train,test}/ from the public bucket\n"
        "gqn-dataset. Partial files are kept as .part and resumed by a re-run; a file gets its\n"
        "real name only when its size, the server's CRC-32C/MD5 and every record's CRCs check out.\n\n"
        "examples:\n  gqn data download shepard_metzler_5_parts --dest data --split test --files 5\n"
        "  gqn data download rooms_ring_camera --dest data --range 1-100 --jobs 8",
        formatter_class=HelpFormatter,
    )
    p.add_argument("dataset", metavar="DATASET", help="an official dataset (gqn data list)")
    p.add_argument("--dest", default="data", metavar="ROOT", help="root folder of the layout")
    p.add_argument("--split", choices=["train", "test", "all"], default="all", help="the split(s) to fetch")
    p.add_argument(
        "--files", type=int, default=None, metavar="N", help="only the first N files of each split"
    )
    p.add_argument("--range", default=None, metavar="A-B", help="only files A..B (from 1) of each split")
    p.add_argument("--jobs", type=int, default=4, help="parallel transfers")
    p.add_argument("--base-url", default=None, help="a mirror of https://storage.googleapis.com/gqn-dataset")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    p.add_argument(
        "--dry-run", action="store_true", help="only say how much there is to fetch and how long it takes"
    )
    p.set_defaults(run=run_download)


def add_builtin(verbs) -> None:
    p = verbs.add_parser(
        "builtin",
        help="the built-in default data: render it once if needed, print its path",
        description="The data `gqn train` uses without --data: synthetic shepard_metzler_5_parts,\n"
        "10,000 train and 500 test scenes, rendered once into the cache (~/.cache/gqn/data).\n"
        "Another synthesizable DATASET has its own, which gqn eval, render and analyze open\n"
        "without --data for a model trained on that dataset.\n\n"
        "examples:\n  gqn data builtin\n  gqn data builtin rooms_ring_camera",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "dataset", nargs="?", default=DATASET, metavar="DATASET", help="a dataset gqn data synth renders"
    )
    p.set_defaults(run=run_builtin)


def add_compare(verbs) -> None:
    p = verbs.add_parser(
        "compare",
        help="a contact sheet of synthetic scenes beside a real one",
        description="Write a PNG whose first row is the real reference scene and whose next rows are\n"
        "scenes of PATH, the first 8 views of each, to check that rendered data looks like the real.\n\n"
        "example:\n  gqn data compare data/shepard_metzler_5_parts --reference examples/reference --out compare.png",
        formatter_class=HelpFormatter,
    )
    p.add_argument("path", metavar="PATH", help="the synthetic data")
    p.add_argument("--reference", required=True, help="real data (a file or folder)")
    p.add_argument("--split", default="test", help="split of both datasets")
    p.add_argument("--scenes", type=int, default=4, help="synthetic scenes to show")
    p.add_argument("--out", required=True, help="picture to write, in the format of its extension")
    p.add_argument("--scale", type=int, default=2, help="enlarge each view this many times")
    p.set_defaults(run=run_compare)


def add_show(verbs) -> None:
    p = verbs.add_parser(
        "show",
        help="a contact sheet of one scene's views with their cameras",
        description="Write a PNG with every view of one scene, captioned with its camera\n"
        "(x, y, z, yaw, pitch; angles in degrees).\n\n"
        "example:\n  gqn data show examples/reference --scene 0 --out views.png",
        formatter_class=HelpFormatter,
        parents=[scene()],
    )
    p.add_argument("path", metavar="PATH", help="a root of datasets, a dataset or split folder, or a file")
    p.add_argument("--split", default="test", help="split, where PATH holds several")
    p.add_argument("--out", required=True, help="picture to write, in the format of its extension")
    p.add_argument("--scale", type=int, default=2, help="enlarge each view this many times")
    p.set_defaults(run=run_show)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def run_list(args) -> int:
    if args.name is None:
        rows = [
            (d.name, f"{d.image_size}x{d.image_size}", str(d.views), str(d.train_files), str(d.test_files))
            for d in DATASETS.values()
        ]
        print_table(("dataset", "frames", "views", "train files", "test files"), rows)
        return 0
    info = get_dataset(args.name)
    for split in ("train", "test"):
        names = info.file_names(split)
        print(f"{info.name}/{split}/{{{names[0]} ... {names[-1]}}} ({len(names)} files)")
    return 0


def file_count(files: list[str]) -> str:
    """How many files a split has: "5/900" where the names say the set is larger (`i-of-900`, a
    partial copy), else just the count (a whole set, official or rendered by gqn data synth)."""
    totals = {parsed[1] for f in files if (parsed := parse_file_name(os.path.basename(f)))}
    total = totals.pop() if len(totals) == 1 else None
    return f"{len(files)}/{total}" if total and len(files) < total else f"{len(files)}"


def run_info(args) -> int:
    from gqn.data.dataset import SceneDataset

    rows = []
    for split in discover(args.path):
        ds = SceneDataset(split.files[0])
        scenes = sum(len(record_index(f)) for f in split.files)
        size = sum(os.path.getsize(f) for f in split.files)
        files = file_count(split.files)
        rows.append(
            (
                split.dataset,
                split.split,
                files,
                f"{scenes}",
                f"{ds.views}",
                f"{ds.stored_size}x{ds.stored_size}",
                human_bytes(size),
            )
        )
    print_table(("dataset", "split", "files", "scenes", "views", "frames", "bytes"), rows)
    return 0


def run_verify(args) -> int:
    from gqn.data.verify import verify_file

    splits = discover(args.path)
    files = [f for s in splits for f in s.files]
    total = sum(os.path.getsize(f) for f in files)
    errors: list[str] = []
    scenes = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="verify", disable=None, file=sys.stderr) as bar:
        with (
            multiprocessing.get_context("spawn").Pool(max(1, args.workers))
            if args.workers > 1 and len(files) > 1
            else _Inline() as pool
        ):
            reports = {}
            for report in pool.imap_unordered(verify_file, files):
                bar.update(report.bytes)
                reports[report.path] = report
    for split in splits:
        views, sizes = set(), set()
        for f in split.files:
            r = reports[f]
            scenes += r.scenes
            errors += r.errors
            views |= r.views
            sizes |= r.sizes
        where = f"{split.dataset}/{split.split}"
        info = split.info
        if info is not None:
            if views and views != {info.views}:
                errors.append(f"{where}: scenes have {sorted(views)} views, {info.name} has {info.views}")
            if sizes and sizes != {(info.image_size, info.image_size)}:
                errors.append(
                    f"{where}: frames are {sorted(sizes)}, {info.name} has {info.image_size}x{info.image_size}"
                )
        elif len(views) > 1 or len(sizes) > 1:
            errors.append(f"{where}: scenes differ in views {sorted(views)} or frame sizes {sorted(sizes)}")
        for problem in split.layout_problems():
            print(f"note: {where}: {problem}", file=sys.stderr)
    for e in errors:
        print(f"problem: {e}")
    status = "OK" if not errors else f"{len(errors)} problem(s)"
    print(f"{len(files)} files, {scenes} scenes, {human_bytes(total)}: {status}")
    return 1 if errors else 0


class _Inline:
    """Stands in for a process pool when one process is enough."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def imap_unordered(self, fn, items):
        return map(fn, items)


def run_synth(args) -> int:
    from gqn.synth import synthesize

    summary = synthesize(
        args.dataset,
        args.out,
        train_scenes=args.train_scenes,
        test_scenes=args.test_scenes,
        seed=args.seed,
        workers=args.workers,
        scenes_per_file=args.scenes_per_file,
    )
    print(summary)
    return 0


def run_download(args) -> int:
    from gqn.data.download import BASE_URL, download, head_sizes, parse_range, plan

    if (args.files is not None and args.files < 1) or args.jobs < 1:
        raise GQNError("--files and --jobs must be at least 1")
    selection = (args.dataset, args.dest, args.split, args.files, parse_range(args.range))
    if args.dry_run:
        jobs = plan(*selection, base_url=args.base_url or BASE_URL)
        size, unsized = head_sizes(jobs, args.timeout, args.jobs)
        if unsized:
            raise GQNError(
                f"{len(unsized)} of {len(jobs)} files could not be sized, so there is no estimate "
                f"(is the network reachable? --base-url names a mirror): {unsized[0]}"
            )
        hours = {mbit: size * 8 / (mbit * 1e6) / 3600 for mbit in (100, 1000)}
        print(
            f"{len(jobs)} files, {human_bytes(size)} left to fetch: {hours[100]:.1f} h at 100 Mbit/s, "
            f"{hours[1000]:.1f} h at 1 Gbit/s"
        )
        return 0
    summary = download(*selection, args.jobs, args.base_url or BASE_URL, args.timeout)
    rate = summary["bytes"] / max(summary["seconds"], 1e-9) / 1e6
    print(
        f"{summary['downloaded']} downloaded, {summary['skipped']} already complete, of {summary['files']} files; "
        f"{human_bytes(summary['bytes'])} in {summary['seconds']:.1f} s ({rate:.1f} MB/s) into {summary['dest']}"
    )
    return 0


def run_builtin(args) -> int:
    print(default_data(dataset=args.dataset))
    return 0


def run_compare(args) -> int:
    import numpy as np

    from gqn.data.dataset import SceneDataset
    from gqn.images import grid, save_image

    real = SceneDataset(args.reference, split=args.split)
    ours = SceneDataset(args.path, split=args.split)
    columns = min(8, real.views, ours.views)
    rows = [real[0].frames[:columns]] + [ours[i].frames[:columns] for i in range(min(args.scenes, len(ours)))]
    size = max(r.shape[1] for r in rows)
    rows = [
        r if r.shape[1] == size else r.repeat(size // r.shape[1], 1).repeat(size // r.shape[1], 2)
        for r in rows
    ]
    path = save_image(grid(np.concatenate(rows), columns, scale=args.scale), args.out)
    print(
        f"wrote {path}: row 1 real ({real.dataset_name}), rows 2-{len(rows)} {ours.dataset_name}, {columns} views each"
    )
    return 0


def run_show(args) -> int:
    from gqn.data.dataset import SceneDataset
    from gqn.images import grid, save_image

    ds = SceneDataset(args.path, split=args.split)
    if not 0 <= args.scene < len(ds):
        raise GQNError(
            f"--scene {args.scene}: {ds.source.dataset}/{ds.source.split} has scenes 0..{len(ds) - 1}"
        )
    scene = ds[args.scene]
    captions = [
        f"{i}: {x:+.2f} {y:+.2f} {z:+.2f}\nyaw {math.degrees(yaw):.0f} pitch {math.degrees(pitch):.0f}"
        for i, (x, y, z, yaw, pitch) in enumerate(scene.cameras.tolist())
    ]
    columns = min(5, len(captions))
    path = save_image(grid(scene.frames, columns, captions, scale=args.scale), args.out)
    print(f"wrote {path}: scene {args.scene} of {ds.source.dataset}/{ds.source.split}, {len(captions)} views")
    return 0
