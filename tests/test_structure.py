"""The shape of the code that CONTRIBUTING.md promises: short functions, a training loop that
fits on a screen or two, and camera paths chosen in the dataset table alone."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gqn"
MAX_FUNCTION_LINES = 100


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_over_100_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_training_loop_module_is_under_300_lines():
    assert len((PACKAGE / "train.py").read_text().splitlines()) < 300


def test_no_camera_path_is_chosen_by_a_dataset_names_prefix():
    # The path a dataset's camera moves along is a field of its entry in gqn/data/table.py.
    prefix = re.compile(r"""\.startswith\(\(?\s*["'](rooms|shepard|jaco|mazes)""")
    found = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if path != PACKAGE / "data" / "table.py" and prefix.search(path.read_text())
    ]
    assert not found, found
