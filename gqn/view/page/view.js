// gqn view: the page's logic. The server draws every picture; this file only keeps the state
// (scene, context, camera on the path, mode), asks for a picture whenever it changes, and shows
// the newest answer. Answers to requests that a newer one overtook come back 409 and are ignored.
"use strict";

const $ = (id) => document.getElementById(id);
const DRAG = 0.01; // radians per pixel dragged
const YAW_STEP = (2 * Math.PI) / 48; // arrow keys
const PITCH_STEP = Math.PI / 36;
const CONTEXT = 3; // views in the context when a scene opens

const state = {
  info: null,
  scene: 0,
  cameras: [], // [[x, y, z, yaw, pitch], ...] of the scene's views
  context: [],
  yaw: 0,
  pitch: 0,
  position: [0, 0, 0], // the free path's: that of the last view gone to
  view: null, // the scene's view the camera sits on, when it was put there by "go"
  mode: "mean",
  seed: 0,
  client: Math.random().toString(36).slice(2),
  sent: 0, // requests sent, and the newest answer shown
  shown: 0,
};

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text) {
  $("message").textContent = text || "";
}

function fmt(x) {
  return (x >= 0 ? " " : "") + x.toFixed(3);
}

async function start() {
  const info = await getJSON("/api/info");
  state.info = info;
  $("model").textContent =
    `${info.checkpoint} (step ${info.step}, ${info.representation}) on ${info.dataset}/${info.split}, ` +
    `${info.image_size} px, ${info.path} camera path`;
  $("scenes").textContent = `of 0..${info.scenes - 1}`;
  $("scene").max = info.scenes - 1;
  await openScene(0);
}

async function openScene(index) {
  const n = state.info.scenes;
  index = ((index % n) + n) % n;
  const scene = await getJSON(`/api/scene/${index}`);
  state.scene = index;
  state.cameras = scene.cameras;
  state.context = [...Array(Math.min(CONTEXT, scene.views - 1)).keys()];
  $("scene").value = index;
  const strip = $("thumbnails");
  strip.replaceChildren();
  scene.cameras.forEach((camera, j) => {
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    thumb.dataset.view = j;
    const img = document.createElement("img");
    img.src = `/api/scene/${index}/view/${j}.png`;
    img.alt = `view ${j}`;
    img.title = `view ${j}: click to add to the context or take out`;
    img.addEventListener("click", () => toggle(j));
    const go = document.createElement("button");
    go.textContent = `go ${j}`;
    go.title = `put the camera on view ${j}`;
    go.addEventListener("click", () => goTo(j));
    thumb.append(img, go);
    strip.append(thumb);
  });
  showContext();
  goTo(state.context.length); // the first view outside the context
}

function showContext() {
  for (const thumb of $("thumbnails").children) {
    thumb.classList.toggle("in-context", state.context.includes(Number(thumb.dataset.view)));
    thumb.classList.toggle("at-camera", Number(thumb.dataset.view) === state.view);
  }
}

function toggle(j) {
  if (state.context.includes(j)) {
    if (state.context.length === 1) {
      say("the context needs at least one view");
      return;
    }
    state.context = state.context.filter((k) => k !== j);
  } else {
    state.context = [...state.context, j].sort((a, b) => a - b);
  }
  say("");
  showContext();
  draw();
}

function goTo(j) {
  const camera = state.cameras[j];
  state.position = camera.slice(0, 3);
  state.yaw = camera[3];
  state.pitch = camera[4];
  state.view = j;
  showContext();
  draw();
}

function move(dyaw, dpitch) {
  state.yaw += dyaw;
  if (state.info.path !== "ring") {
    const limit = state.info.path === "sphere" ? state.info.pitch_limit : Math.PI / 2;
    state.pitch = Math.max(-limit, Math.min(limit, state.pitch + dpitch));
  }
  state.view = null;
  showContext();
  draw();
}

async function draw() {
  const seq = ++state.sent;
  const body = {
    scene: state.scene,
    context: state.context,
    mode: state.mode,
    seed: state.seed,
    client: state.client,
  };
  if (state.view !== null) body.view = state.view;
  else Object.assign(body, { yaw: state.yaw, pitch: state.pitch, position: state.position });
  const sent = performance.now();
  let response, answer;
  try {
    response = await fetch("/api/render", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    answer = await response.json();
  } catch (error) {
    say(`the server did not answer: ${error}`);
    return;
  }
  if (response.status === 409) return; // overtaken by a newer request: nothing to show
  if (!response.ok) {
    say(answer.error);
    return;
  }
  if (seq < state.shown) return; // an older answer arriving late
  state.shown = seq;
  const img = $("prediction");
  img.src = `data:image/png;base64,${answer.image}`;
  Object.assign(img.dataset, {
    seq,
    scene: answer.scene,
    camera: JSON.stringify(answer.camera),
    context: JSON.stringify(answer.context),
    mode: answer.mode,
    seed: answer.seed,
    truth: answer.truth === null ? "" : answer.truth,
  });
  const [x, y, z, yaw, pitch] = answer.camera;
  $("camera").textContent =
    `x ${fmt(x)}  y ${fmt(y)}  z ${fmt(z)}  yaw ${fmt(yaw)}  pitch ${fmt(pitch)} (rad)` +
    (answer.truth === null ? "" : `  = view ${answer.truth}`);
  $("latency").textContent =
    `render ${answer.render_ms.toFixed(1)} ms, server ${answer.server_ms.toFixed(1)} ms, ` +
    `round trip ${(performance.now() - sent).toFixed(1)} ms`;
  const truth = $("truth");
  if (answer.truth === null) {
    truth.removeAttribute("src");
    $("no-truth").hidden = false;
  } else {
    truth.src = `/api/scene/${answer.scene}/view/${answer.truth}.png`;
    $("no-truth").hidden = true;
  }
  say("");
}

// --- input: drag (mouse, pen, touch), arrow keys, the picker and the mode -----------------------
const prediction = $("prediction");
let last = null;
prediction.addEventListener("pointerdown", (e) => {
  last = [e.clientX, e.clientY];
  prediction.setPointerCapture(e.pointerId);
  prediction.classList.add("dragging");
  prediction.focus();
  e.preventDefault();
});
prediction.addEventListener("pointermove", (e) => {
  if (last === null) return;
  const [dx, dy] = [e.clientX - last[0], e.clientY - last[1]];
  last = [e.clientX, e.clientY];
  if (dx || dy) move(-dx * DRAG, dy * DRAG);
});
for (const end of ["pointerup", "pointercancel"]) {
  prediction.addEventListener(end, () => {
    last = null;
    prediction.classList.remove("dragging");
  });
}
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement) return;
  const step = {
    ArrowLeft: [YAW_STEP, 0],
    ArrowRight: [-YAW_STEP, 0],
    ArrowUp: [0, PITCH_STEP],
    ArrowDown: [0, -PITCH_STEP],
  }[e.key];
  if (!step) return;
  e.preventDefault();
  move(...step);
});
$("previous").addEventListener("click", () => openScene(state.scene - 1).catch((e) => say(e.message)));
$("next").addEventListener("click", () => openScene(state.scene + 1).catch((e) => say(e.message)));
$("scene").addEventListener("change", (e) => openScene(Number(e.target.value)).catch((e) => say(e.message)));
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", (e) => {
    state.mode = e.target.value;
    draw();
  });
}
$("resample").addEventListener("click", () => {
  state.seed += 1;
  if (state.mode !== "sample") document.querySelector("input[value=sample]").click();
  else draw();
});

start().catch((error) => say(error.message));
