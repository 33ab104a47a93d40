"""The import contract (pyproject.toml, [tool.importlinter]): imports run one way, and it is kept."""

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gqn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package and contract under `root`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    return contract["layers"]


@pytest.fixture
def copy(tmp_path) -> Path:
    """The package and its contract, copied where a test may change them."""
    shutil.copytree(REPO / "gqn", tmp_path / "gqn", ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.slow
def test_the_contract_is_kept(copy):
    kept = lint_imports(copy)
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout + kept.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, imported, name",
    [
        # metrics, a foundation, reaching up to the training loop
        ("metrics", "gqn.train", "train"),
        # the training loop's evaluation, the viewer and the training loop reaching for a command
        ("held_out", "gqn.evaluate", "run"),
        ("view", "gqn.render", "run"),
        ("train", "gqn.export", "run"),
    ],
)
def test_an_import_against_the_layers_breaks_it(copy, module, imported, name):
    source = copy / "gqn" / (f"{module}/__init__.py" if module == "view" else f"{module}.py")
    with open(source, "a") as f:  # inside a function, where a cycle hides
        f.write(f"\n\ndef against():\n    from {imported} import {name}\n\n    return {name}\n")
    broken = lint_imports(copy)
    assert broken.returncode != 0 and "1 broken" in broken.stdout
    assert f"gqn.{module} -> {imported}" in broken.stdout


def test_every_module_has_a_layer():
    """A new module must take its place in the contract, or it could import anything."""
    placed = {m.strip() for layer in layers() for m in layer.replace("|", ":").split(":")}
    top_level = {f"gqn.{m.name}" for m in pkgutil.iter_modules(gqn.__path__)}
    assert top_level == placed
