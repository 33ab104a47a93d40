"""Headless OpenGL for MuJoCo: OSMesa or EGL, chosen automatically.

MuJoCo reads `MUJOCO_GL` when it first makes a context, so the choice is made before that, once
per process, by rendering one frame in a child process with each backend in turn. OSMesa comes
first: on a CPU it renders small frames about twice as fast as EGL through Mesa. Set
`MUJOCO_GL=egl` to use a GPU's EGL driver instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

from gqn.errors import GQNError

BACKENDS = ("osmesa", "egl")
INSTALL_HINT = (
    "install Mesa's offscreen OpenGL: apt-get install libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri "
    "(`make setup` does this)"
)

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 8, 8)
r.update_scene(mujoco.MjData(m))
r.render()
r.close()
"""


def _works(backend: str) -> tuple[bool, str]:
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        run = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return False, "timed out"
    last = (run.stderr.strip().splitlines() or [""])[-1]
    return run.returncode == 0, last


def choose_gl() -> str:
    """Set MUJOCO_GL for this process (and its children) to a backend that renders; return it."""
    wanted = os.environ.get("MUJOCO_GL")
    candidates = [wanted] if wanted else list(BACKENDS)
    reasons = []
    for backend in candidates:
        ok, why = _works(backend)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
        reasons.append(f"{backend}: {why}")
    raise GQNError(f"no headless OpenGL for MuJoCo ({'; '.join(reasons)}); {INSTALL_HINT}")
