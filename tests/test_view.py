"""gqn view: the render thread that drops overtaken requests, the requests the server checks, and
the page in a real headless browser (Debian's Chromium under Selenium)."""

import base64
import io
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAINED_SCENES, make_dataset
from PIL import Image

from gqn.cameras import viewpoints
from gqn.checkpoint import load_model
from gqn.cli import main
from gqn.data import SceneDataset, view_inputs
from gqn.data.table import FREE, SPHERE
from gqn.novel_views import one_scene, to_uint8
from gqn.view import BadRequest, Viewer, sits_on
from gqn.view.live import LiveRenderer, Overtaken

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def predicted(run, data, scene: int, context: list[int], camera: list[float]) -> np.ndarray:
    """The model's own prior-mean prediction (H, W, 3) uint8, computed here, not by the server."""
    model, _ = load_model(run)
    s = SceneDataset(data, "test", model.config.image_size)[scene]
    x, v = view_inputs(one_scene(s.frames[context], s.cameras[context]))
    with torch.no_grad():
        query = viewpoints(torch.tensor([camera], dtype=torch.float32))
        return to_uint8(model.sample(x, v, query, use_mean=True))[0]


# --- the render thread ---------------------------------------------------------------------------


def test_a_newer_request_overtakes_a_waiting_one_and_clients_take_turns():
    live = LiveRenderer()
    started, release = threading.Event(), threading.Event()
    done = []

    def slow():
        started.set()
        release.wait(10)
        return "first"

    first = live.submit("page", slow)
    assert started.wait(10)  # rendering now: it cannot be overtaken any more
    second = live.submit("page", lambda: done.append("second") or "second")
    other = live.submit("other page", lambda: done.append("other") or "other")
    third = live.submit("page", lambda: done.append("third") or "third")
    with pytest.raises(Overtaken, match="overtaken by a newer request"):
        second.result(10)
    release.set()
    assert (first.result(10), other.result(10), third.result(10)) == ("first", "other", "third")
    assert done == ["other", "third"]  # the other page waited longer than the newest request
    assert (live.rendered, live.overtaken) == (3, 1)
    live.close()


def test_a_failing_job_reaches_its_caller_and_the_thread_keeps_serving():
    live = LiveRenderer()
    with pytest.raises(ZeroDivisionError):
        live.submit("page", lambda: 1 / 0).result(10)
    assert live.submit("page", lambda: 42).result(10) == 42
    live.close()


def test_without_a_thread_of_its_own_the_caller_renders_until_told_to_stop():
    live = LiveRenderer(thread=False)  # as gqn view: the main thread renders, the server runs beside it
    answers = []

    def client():
        answers.append(live.submit("page", threading.get_ident).result(10))
        answers.append(live.submit("page", lambda: 7).result(10))

    asking = threading.Thread(target=client)
    asking.start()
    live.serve(alive=asking.is_alive)  # returns once the client is done and no job waits
    asking.join(10)
    assert answers == [threading.get_ident(), 7] and live.rendered == 2
    late = live.submit("page", lambda: 1)
    live.close()  # a job nobody rendered is answered, not left waiting
    with pytest.raises(Overtaken, match="the server is stopping"):
        late.result(1)


def test_told_to_stop_the_renderer_stops_though_requests_keep_coming():
    live = LiveRenderer(thread=False)
    waiting = live.submit("page", lambda: "drawn")  # a drag's newest position, as Ctrl-C comes
    live.serve(alive=lambda: False)  # returns at once: nothing drawn
    live.close()
    assert live.rendered == 0
    with pytest.raises(Overtaken, match="the server is stopping"):
        waiting.result(1)


# --- what the server checks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(trained_tiny):
    data, run = trained_tiny
    model, loaded = load_model(run)
    return Viewer(model, SceneDataset(data, "test", model.config.image_size), loaded, str(run))


def test_the_camera_follows_the_datasets_path_and_finds_the_scenes_own_views(viewer):
    assert viewer.path == SPHERE and viewer.info()["path"] == "sphere"
    _, cameras = viewer.views(0)
    camera, truth = viewer.camera({"yaw": 0.4, "pitch": 0.2}, cameras)
    np.testing.assert_array_equal(camera, SPHERE.cameras([0.4], [0.2])[0])
    assert truth is None
    camera, truth = viewer.camera({"view": 5}, cameras)
    assert truth == 5 and (camera == cameras[5]).all()
    # the view's camera reached along the path (yaw a turn later) is that view
    yaw, pitch = cameras[5, 3] + 2 * np.pi, cameras[5, 4]
    assert sits_on(SPHERE.cameras([yaw], [pitch])[0], cameras) == 5
    camera, _ = viewer.camera({"yaw": 0.0, "pitch": 3.0}, cameras)
    assert camera[4] == pytest.approx(1.45)  # the sphere stops short of the pole


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"scene": 99, "context": [0], "view": 1},
            404,
            f"scene 99: shepard_metzler_5_parts/test has scenes 0..{TRAINED_SCENES - 1}",
        ),
        (
            {"scene": -1, "context": [0], "view": 1},
            400,
            f"scene -1: expected an index 0..{TRAINED_SCENES - 1}",
        ),
        ({"scene": 0, "context": [0, 15], "view": 1}, 404, "view 15: scene 0 has views 0..14"),
        ({"scene": 0, "context": [], "view": 1}, 400, "context: expected a list of one or more view"),
        ({"scene": 0, "context": [1, 1], "view": 2}, 400, "context [1, 1]: a view appears twice"),
        (
            {"scene": 0, "context": [0], "yaw": "left", "pitch": 0},
            400,
            'yaw: expected a finite number, got "left"',
        ),
        ({"scene": 0, "context": [0], "yaw": 0}, 400, "pitch: expected a finite number, got null"),
        (
            {"scene": 0, "context": [0], "view": 1, "mode": "best"},
            400,
            'mode "best": expected "mean" or "sample"',
        ),
        ({"scene": 0, "context": [0], "view": 1, "seed": -2}, 400, "seed -2: expected an integer >= 0"),
        ([1, 2], 400, "the request must be a JSON object"),
    ],
    ids=[
        "scene-range",
        "scene-negative",
        "view-range",
        "no-context",
        "twice",
        "camera",
        "no-pitch",
        "mode",
        "seed",
        "list",
    ],
)
def test_a_bad_request_is_refused_in_one_line(viewer, body, status, message):
    with pytest.raises(BadRequest) as e:
        viewer.request(body)
    assert e.value.status == status and str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_render_is_the_models_own_prediction(trained_tiny, viewer):
    data, run = trained_tiny
    answer = viewer.request({"scene": 1, "context": [0, 2], "yaw": 1.0, "pitch": -0.3})()
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))))
    expected = predicted(run, data, 1, [0, 2], answer["camera"])
    assert np.abs(image.astype(int) - expected).max() <= 1
    assert answer["context"] == [0, 2] and answer["truth"] is None and answer["render_ms"] > 0


def test_a_sample_follows_its_seed_and_leaves_torchs_rng_alone(viewer):
    def sample(seed: int) -> str:
        body = {"scene": 1, "context": [0, 2], "view": 3, "mode": "sample", "seed": seed}
        return viewer.request(body)()["image"]  # the PNG, as base64

    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = sample(4)
    assert torch.equal(torch.get_rng_state(), state)
    assert sample(4) == first and sample(5) != first


def test_view_errors_are_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.pt"), "--port", "0"]) == 1
    assert "missing.pt" in capsys.readouterr().err
    assert main(["view", "pretrained:shepard_metzler_5_parts", "--port", "70000"]) == 1
    assert "--port 70000: expected 0..65535" in capsys.readouterr().err


@pytest.mark.slow
def test_serving_beyond_localhost_is_said(trained_tiny):
    data, run = trained_tiny
    process = subprocess.Popen(
        [sys.executable, "-m", "gqn", "view", str(run), "--data", data, "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "open http://0.0.0.0:" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the page's server and the renderer stop, exit 0
        _, err = process.communicate(timeout=30)
    assert "note: serving on 0.0.0.0, not 127.0.0.1" in err
    assert process.returncode == 0, err


# --- the page in a real browser ------------------------------------------------------------------


def get(url: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_the_page_turns_the_scene_when_dragged_and_draws_the_models_views(trained_tiny):
    from browser import chromium, serve_view, wait_for_frame
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    data, run = trained_tiny
    with serve_view([str(run), "--data", data]) as url, chromium() as driver:
        driver.get(url)
        # the page opens scene 0 with views 0, 1, 2 as context and the camera on view 3
        first = wait_for_frame(driver)
        assert (first["scene"], first["context"], first["truth"]) == (0, [0, 1, 2], 3)
        assert driver.find_element("id", "truth").get_attribute("src").endswith("/api/scene/0/view/3.png")
        assert (
            np.abs(first["image"].astype(int) - predicted(run, data, 0, [0, 1, 2], first["camera"])).max()
            <= 1
        )

        # drag the prediction: the camera turns along the sphere, the picture follows
        picture = driver.find_element("id", "prediction")
        ActionChains(driver).click_and_hold(picture).move_by_offset(60, 0).move_by_offset(
            60, 20
        ).release().perform()
        dragged = wait_for_frame(driver, after=first["seq"])
        assert dragged["seq"] > first["seq"] + 1  # one request per move
        assert dragged["truth"] is None and dragged["camera"] != first["camera"]
        assert np.abs(dragged["camera"][3] - first["camera"][3]) > 0.5  # about 120 px * 0.01 rad
        assert np.abs(dragged["image"].astype(int) - first["image"]).max() > 1
        expected = predicted(run, data, 0, [0, 1, 2], dragged["camera"])
        assert np.abs(dragged["image"].astype(int) - expected).max() <= 1
        assert "yaw" in driver.find_element("id", "camera").text
        assert "round trip" in driver.find_element("id", "latency").text

        # a click on a thumbnail adds that view to the context
        driver.find_element("css selector", ".thumb[data-view='4'] img").click()
        widened = wait_for_frame(driver, after=dragged["seq"])
        assert widened["context"] == [0, 1, 2, 4] and widened["camera"] == dragged["camera"]
        assert np.abs(widened["image"].astype(int) - dragged["image"]).max() > 1
        expected = predicted(run, data, 0, [0, 1, 2, 4], widened["camera"])
        assert np.abs(widened["image"].astype(int) - expected).max() <= 1

        # bad requests get one-line errors, and the server keeps serving the page
        assert get(f"{url}api/scene/99") == (
            404,
            {"error": f"scene 99: shepard_metzler_5_parts/test has scenes 0..{TRAINED_SCENES - 1}"},
        )
        status, answer = get(f"{url}api/render", b'{"scene": 0, "context": [0], "yaw": [1], "pitch": 0}')
        assert (status, answer) == (400, {"error": "yaw: expected a finite number, got [1]"})
        assert get(f"{url}api/render", b"{not json")[0] == 400
        picture.send_keys(Keys.ARROW_LEFT)
        turned = wait_for_frame(driver, after=widened["seq"])
        assert turned["camera"][3] == pytest.approx(widened["camera"][3] + 2 * np.pi / 48, abs=1e-5)


def test_elsewhere_the_camera_turns_freely_where_the_last_view_stood(trained_tiny, tmp_path):
    _, run = trained_tiny
    model, loaded = load_model(run)
    jaco = SceneDataset(make_dataset(tmp_path, "jaco", files=(1, 1), views=11), "test", 64)
    viewer = Viewer(model, jaco, loaded, str(run))
    assert viewer.path == FREE and viewer.info()["path"] == "free" and viewer.info()["views"] == 11
    _, cameras = viewer.views(0)
    camera, truth = viewer.camera({"yaw": 0.3, "pitch": -0.2, "position": [1, 2, 0.5]}, cameras)
    np.testing.assert_array_equal(camera, np.float32([1, 2, 0.5, 0.3, -0.2]))
    assert truth is None
    for position in (None, [1, 2], [1, "2", 3], [1, 2, float("nan")]):
        with pytest.raises(BadRequest, match="position: expected"):
            viewer.camera({"yaw": 0.3, "pitch": -0.2, "position": position}, cameras)
