"""The README's screenshot of `gqn view`, taken by headless Chromium (Selenium) on the real page.

    python scripts/screenshot_view.py --out docs/images/view.png
    python scripts/screenshot_view.py --checkpoint pretrained:rooms_ring_camera --scene 3 --out view-rooms.png

It starts `gqn view CHECKPOINT` (the built-in data of the model's dataset), opens the page, goes
to --scene, drags the camera a little, puts it on view --go of the scene (so that the true view
shows beside the prediction) and saves the window.
"""

from __future__ import annotations

import argparse
import time

from browser import chromium, serve_view, wait_for_frame
from selenium.webdriver.common.action_chains import ActionChains


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="pretrained:shepard_metzler_5_parts")
    p.add_argument("--scene", type=int, default=3)
    p.add_argument("--go", type=int, default=5, help="the view the camera ends on")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with serve_view([args.checkpoint], timeout=900) as url, chromium(1000, 1060) as driver:
        driver.get(url)
        frame = wait_for_frame(driver)
        field = driver.find_element("id", "scene")
        field.clear()
        field.send_keys(str(args.scene), "\n")
        frame = wait_for_frame(driver, after=frame["seq"])
        picture = driver.find_element("id", "prediction")
        ActionChains(driver).click_and_hold(picture).move_by_offset(40, 10).release().perform()
        frame = wait_for_frame(driver, after=frame["seq"])
        driver.find_element("css selector", f".thumb[data-view='{args.go}'] button").click()
        frame = wait_for_frame(driver, after=frame["seq"])
        time.sleep(0.5)  # the true view's image
        driver.save_screenshot(args.out)
    print(
        f"wrote {args.out}: scene {frame['scene']}, context {frame['context']}, camera on view {frame['truth']}"
    )


if __name__ == "__main__":
    main()
