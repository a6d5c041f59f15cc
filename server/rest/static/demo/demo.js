// The demo page: pick a model, drop an image or start the camera, see the segmentation.
import { ApiError, describeModel, listModels, segment, segmentBlob } from "./api.js";
import { decodeMask, paintMask, paletteOf } from "./mask.js";
import { Camera } from "./camera.js";
import { exifOrientation, orientedView } from "./orient.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), mode: $("mode"), modelInfo: $("model-info"), choose: $("choose"), file: $("file"),
  camera: $("camera"),
  opacity: $("opacity"), opacityValue: $("opacity-value"), downloadMask: $("download-mask"),
  downloadOverlay: $("download-overlay"), downloadGeojson: $("download-geojson"), view: $("view"),
  error: $("error"), stage: $("stage"), image: $("image-canvas"),
  overlay: $("overlay-canvas"), tip: $("tip"), video: $("video"), hover: $("hover"), legend: $("legend"),
  legendEmpty: $("legend-empty"), timings: $("timings"), fps: $("fps"),
};
// the stages the server reports (server/dataplane.py; postprocess: the class statistics)
const STAGES = ["decode", "preprocess", "queue", "inference", "mask", "postprocess", "total"];
const MODEL_REFRESH_MS = 5_000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const state = {
  models: null, description: null, palette: null, labels: new Map(),
  file: null, result: null, mask: null, view: null, name: "image", highlight: null,
  confidence: null, // the confidence PNG of the current file as a bitmap, once the view asked for it
  maskCanvas: document.createElement("canvas"), // the coloured mask at the server's orientation
  camera: null, // a Camera while it runs
  upload: 0, // the latest upload's number: an earlier one answering late is not shown
};

function setState(value) {
  document.body.dataset.state = value;
}

function showError(err) {
  ui.error.textContent = err instanceof ApiError ? err.describe() : String(err.message || err);
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

// --- models ---------------------------------------------------------------------------------------

async function loadModels() {
  state.models = await listModels();
  renderModels();
  ui.model.value = state.models.default;
  await selectModel(ui.model.value);
}

function renderModels() {
  const { names, states } = state.models;
  const shown = new Map(states.map((m) => [m.name, m.state]));
  const chosen = ui.model.value;
  ui.model.replaceChildren(...names.map((name) => {
    const s = shown.get(name);
    return new Option(s && s !== "ready" ? `${name} (${s})` : name, name);
  }));
  if (names.includes(chosen)) ui.model.value = chosen;
  ui.model.disabled = names.length < 2;
}

// Another model chosen (or the chosen one gone): describe it and segment the current image with it.
async function switchModel() {
  try {
    await selectModel(ui.model.value);
    if (state.file && !state.camera) await segmentFile(state.file);
  } catch (err) {
    showError(err);
  }
}

// Models are loaded and unloaded while the server runs: the picker follows every few seconds.
async function refreshModels() {
  if (document.hidden || !state.models) return;
  try {
    const models = await listModels();
    const key = (m) => JSON.stringify(m.states.map((s) => [s.name, s.state]));
    if (key(models) === key(state.models)) return;
    const before = ui.model.value;
    state.models = models;
    renderModels();
    if (ui.model.value !== before) await switchModel(); // the chosen one was unloaded
  } catch {
    // the next try will do; a request's own error is what the page shows
  }
}

async function selectModel(name) {
  const d = await describeModel(name);
  state.description = d;
  state.palette = paletteOf(d);
  state.labels = new Map(d.classes.map((c) => [c.id, c]));
  ui.mode.replaceChildren(...d.modes.map((m) => new Option(m, m)));
  ui.mode.value = d.mode;
  ui.mode.disabled = d.modes.length < 2;
  const [h, w] = d.inference_size;
  const providers = d.providers.map((p) => p.replace("ExecutionProvider", "")).join(", ");
  // what computes the masks: the runtime, its precision, whether that is the graph's own (exact)
  const runs = `${d.runtime} ${d.inference_precision}${d.exact ? " (exact)" : " (reduced precision)"}`;
  ui.modelInfo.textContent =
    `${d.variant.toUpperCase()} · ${d.num_labels} classes · ${w}×${h} · ${runs} · ${providers}`;
}

// --- showing a result ----------------------------------------------------------------------------

function fitStage(width, height) {
  ui.stage.classList.remove("empty");
  ui.stage.style.setProperty("--ar", String(width / height));
}

// Show a result over ``source`` (a bitmap or canvas as the browser shows it, or null when the browser
// cannot decode the file: then the mask is shown alone); ``orientation`` is the file's EXIF orientation.
async function show(result, source, orientation = 1) {
  const mask = await decodeMask(result.mask_png_base64);
  let view = orientedView(orientation, result.width, result.height);
  if (source && (source.width !== view.width || source.height !== view.height)) {
    view = orientedView(1, result.width, result.height); // not what the tag says: stretch, unturned
  }
  ui.image.width = view.width;
  ui.image.height = view.height;
  const context = ui.image.getContext("2d");
  if (source) context.drawImage(source, 0, 0, view.width, view.height);
  else {
    context.fillStyle = "#c9ced6";
    context.fillRect(0, 0, view.width, view.height);
  }
  Object.assign(state, { result, mask, view });
  paintOverlay();
  fitStage(view.width, view.height);
  renderLegend(result.classes);
  ui.downloadMask.disabled = ui.downloadOverlay.disabled = false;
}

// The coloured mask (or, in the confidence view, the grey confidence map), turned like the photo, into
// the overlay canvas.
function paintOverlay() {
  const { mask, view } = state;
  const confident = ui.view.value === "confidence" && state.confidence && !state.camera;
  if (!confident) paintMask(state.maskCanvas, mask, state.palette, state.highlight);
  ui.overlay.width = view.width;
  ui.overlay.height = view.height;
  ui.overlay.dataset.view = confident ? "confidence" : "classes";
  const context = ui.overlay.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.setTransform(...view.matrix);
  context.drawImage(confident ? state.confidence : state.maskCanvas, 0, 0);
}

// The confidence view: the server's confidence PNG (format=confidence) for the current file.
async function showView() {
  if (ui.view.value === "confidence" && state.file && !state.camera && !state.confidence) {
    const upload = state.upload;
    try {
      const blob = await segmentBlob(ui.model.value, state.file, ui.mode.value, "confidence");
      const bitmap = await createImageBitmap(blob);
      if (upload !== state.upload) return bitmap.close();
      state.confidence = bitmap;
    } catch (err) {
      showError(err);
      return;
    }
  }
  if (state.mask) paintOverlay();
}

function swatch(id) {
  const span = document.createElement("span");
  span.className = "swatch";
  const c = state.labels.get(id)?.color || [0, 0, 0];
  span.style.background = `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  return span;
}

function renderLegend(classes) {
  const sorted = [...classes].sort((a, b) => b.pixels - a.pixels);
  const top = sorted.length ? sorted[0].fraction : 1;
  const rows = sorted.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    tr.title = `class ${c.id}: ${c.pixels.toLocaleString("en")} pixels`;
    const percent = (100 * c.fraction).toFixed(c.fraction >= 0.1 ? 1 : 2);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(2, (100 * c.fraction) / top)}%`; // the largest class: a full bar
    tr.append(cell(swatch(c.id)), cell(c.label, "label"), cell(`${percent} %`, "num"), cell(bar, "bar-cell"));
    tr.addEventListener("mouseenter", () => highlight(c.id));
    tr.addEventListener("mouseleave", () => highlight(null));
    return tr;
  });
  ui.legend.tBodies[0].replaceChildren(...rows);
  ui.legend.hidden = rows.length === 0;
  ui.legendEmpty.hidden = rows.length > 0;
}

function cell(content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.append(content);
  return td;
}

function highlight(id) {
  state.highlight = id;
  if (state.mask) paintOverlay();
}

function renderTimings(timings, roundTripMs) {
  const rows = STAGES.filter((s) => s in timings).map((s) => [s, timings[s]]);
  rows.push(["round trip", roundTripMs]);
  ui.timings.tBodies[0].replaceChildren(...rows.map(([name, ms]) => {
    const tr = document.createElement("tr");
    if (name === "total" || name === "round trip") tr.className = "sum";
    tr.append(cell(name), cell(`${ms.toFixed(1)} ms`, "num"));
    return tr;
  }));
}

function applyOpacity() {
  ui.overlay.style.opacity = String(ui.opacity.value / 100);
  ui.opacityValue.textContent = `${ui.opacity.value} %`;
}

// --- hover ------------------------------------------------------------------------------------------

function onHover(event) {
  if (!state.mask) return;
  const rect = ui.overlay.getBoundingClientRect();
  const shownX = Math.floor(((event.clientX - rect.left) / rect.width) * state.view.width);
  const shownY = Math.floor(((event.clientY - rect.top) / rect.height) * state.view.height);
  const [x, y] = state.view.toMask(shownX, shownY); // the server's pixel coordinates
  if (x < 0 || y < 0 || x >= state.mask.width || y >= state.mask.height) return;
  const id = state.mask.ids[y * state.mask.width + x];
  const label = state.labels.get(id)?.label ?? `class ${id}`;
  const text = document.createElement("span");
  text.className = "hover-label";
  text.textContent = label;
  ui.hover.replaceChildren(swatch(id), text, ` class ${id} at (${x}, ${y})`);
  ui.hover.dataset.id = id;
  ui.hover.classList.remove("muted");
  ui.tip.replaceChildren(swatch(id), label);
  ui.tip.style.left = `${event.clientX - rect.left}px`;
  ui.tip.style.top = `${event.clientY - rect.top}px`;
  ui.tip.hidden = false;
}

// --- one image ------------------------------------------------------------------------------------

async function segmentFile(file) {
  stopCamera();
  const upload = ++state.upload;
  state.file = file;
  state.confidence?.close();
  state.confidence = null;
  state.name = file.name.replace(/\.[^.]*$/, "") || "image";
  ui.fps.hidden = true;
  ui.tip.hidden = true;
  setState("busy");
  try {
    const started = performance.now();
    const result = await segment(ui.model.value, file, ui.mode.value);
    const roundTrip = performance.now() - started;
    if (upload !== state.upload) return; // a newer upload (or the camera) took over
    const bitmap = await createImageBitmap(file).catch(() => null); // TIFF: browsers do not show it
    await show(result, bitmap, await exifOrientation(file));
    bitmap?.close();
    renderTimings(result.timings_ms, roundTrip);
    clearError();
    ui.downloadGeojson.disabled = false;
    if (ui.view.value === "confidence") await showView();
    if (!bitmap) showError(new Error("This browser cannot display this image format; the mask is shown alone."));
    setState("done");
  } catch (err) {
    if (upload !== state.upload) return;
    showError(err);
    setState("error");
  }
}

// --- camera ---------------------------------------------------------------------------------------

async function startCamera() {
  clearError();
  state.upload += 1; // an upload still in flight is not shown over the camera
  ui.camera.disabled = true; // while the browser asks for permission
  try {
    state.camera = await Camera.open(ui.video, {
      send: (blob) => segment(ui.model.value, blob, ui.mode.value),
      show: async (result, frame, roundTripMs) => {
        await show(result, frame);
        renderTimings(result.timings_ms, roundTripMs);
        clearError();
      },
      report: ({ fps, frames, width, height }) => {
        ui.fps.textContent = `camera: ${fps.toFixed(1)} fps · ${frames} frames · ${width}×${height}`;
        ui.fps.dataset.frames = frames;
      },
      fail: showError,
    });
  } catch (err) {
    showError(new Error(`Camera unavailable: ${err.message || err.name}`));
    return;
  } finally {
    ui.camera.disabled = false;
  }
  state.file = null;
  state.name = "camera";
  ui.downloadGeojson.disabled = true; // GeoJSON and confidence: for a file, not camera frames
  ui.camera.textContent = "Stop camera";
  ui.fps.hidden = false;
  ui.fps.textContent = "camera: waiting for the first frame…";
  setState("camera");
}

function stopCamera() {
  if (!state.camera) return;
  state.camera.stop();
  state.camera = null;
  ui.camera.textContent = "Start camera";
}

// --- downloads ------------------------------------------------------------------------------------

function download(href, filename) {
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
}

function downloadMask() {
  if (state.result) download(`data:image/png;base64,${state.result.mask_png_base64}`, `${state.name}-mask.png`);
}

function downloadOverlay() {
  if (!state.result) return;
  const canvas = document.createElement("canvas");
  canvas.width = ui.image.width;
  canvas.height = ui.image.height;
  const context = canvas.getContext("2d");
  context.drawImage(ui.image, 0, 0);
  context.globalAlpha = ui.opacity.value / 100;
  context.drawImage(ui.overlay, 0, 0);
  canvas.toBlob((blob) => {
    const url = URL.createObjectURL(blob);
    download(url, `${state.name}-overlay.png`);
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }, "image/png");
}

async function downloadGeojson() {
  if (!state.file) return;
  try {
    const blob = await segmentBlob(ui.model.value, state.file, ui.mode.value, "polygons");
    const url = URL.createObjectURL(blob);
    download(url, `${state.name}.geojson`);
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    showError(err);
  }
}

// --- wiring -----------------------------------------------------------------------------------------

function wire() {
  ui.choose.addEventListener("click", () => ui.file.click());
  document.addEventListener("paste", (event) => {
    const file = [...event.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) segmentFile(file);
  });
  ui.file.addEventListener("change", () => {
    if (ui.file.files.length) segmentFile(ui.file.files[0]);
    ui.file.value = ""; // choosing the same file again segments it again
  });
  ui.stage.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.stage.classList.add("dragging");
  });
  ui.stage.addEventListener("dragleave", () => ui.stage.classList.remove("dragging"));
  ui.stage.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.stage.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) segmentFile(file);
  });
  ui.overlay.addEventListener("mousemove", onHover);
  ui.overlay.addEventListener("mouseleave", () => (ui.tip.hidden = true));
  ui.opacity.addEventListener("input", applyOpacity);
  ui.camera.addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));
  ui.downloadMask.addEventListener("click", downloadMask);
  ui.downloadOverlay.addEventListener("click", downloadOverlay);
  ui.downloadGeojson.addEventListener("click", downloadGeojson);
  ui.view.addEventListener("change", showView);
  ui.model.addEventListener("change", switchModel);
  ui.mode.addEventListener("change", () => state.file && !state.camera && segmentFile(state.file));
  if (!navigator.mediaDevices?.getUserMedia) {
    ui.camera.disabled = true;
    ui.camera.title = "the camera needs https or localhost";
  }
  applyOpacity();
}

async function main() {
  wire();
  for (;;) {
    try {
      await loadModels();
      clearError();
      setState("idle");
      setInterval(refreshModels, MODEL_REFRESH_MS);
      return;
    } catch (err) {
      showError(err);
      setState("error");
      if (!(err instanceof ApiError) || (err.status !== 503 && err.status !== 0)) return;
      await sleep(1000 * (err.retryAfter || 2)); // not ready yet (or unreachable): try again
    }
  }
}

main();
