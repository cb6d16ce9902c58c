// The review page: upload images, see each verdict and heatmap, review them. Plain DOM, no libraries;
// values from the server are set as text, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("patchcore-token") || "";
let current = null; // the inspection shown in "Latest result"
const pictures = new Map(); // inspection id -> blob URL of its heatmap

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    if (response.status === 401) $("token-box").hidden = false;
    throw new Error(message);
  }
  return response;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function heatmapOf(inspection) {
  if (!pictures.has(inspection.id)) {
    const blob = await (await api(inspection.heatmap)).blob();
    pictures.set(inspection.id, URL.createObjectURL(blob));
  }
  return pictures.get(inspection.id);
}

function verdictText(inspection) {
  return inspection.verdict === null ? "no threshold" : inspection.verdict;
}

async function show(inspection) {
  current = inspection;
  $("result").hidden = false;
  $("r-name").textContent = inspection.image;
  $("verdict").textContent = verdictText(inspection);
  $("verdict").className = inspection.verdict || "";
  $("score").textContent = inspection.score.toFixed(4);
  $("normalised").textContent = inspection.normalised_score === null ? "-" : inspection.normalised_score.toFixed(3);
  $("threshold").textContent = inspection.threshold === null ? "-" : inspection.threshold.toFixed(4);
  $("regions").textContent = inspection.regions ? String(inspection.regions.length) : "-";
  $("review").textContent = inspection.review || "not reviewed";
  $("heatmap").src = await heatmapOf(inspection);
  $("boxes").replaceChildren();
  if (!inspection.heatmap_window) return; // kept by an older service: where its heatmap lies is not known
  const [x0, y0, x1, y1] = inspection.heatmap_window;
  const [width, height] = inspection.size;
  const whole = x0 <= 0 && y0 <= 0 && x1 >= width && y1 >= height;
  $("caption").textContent = whole ? "heatmap over the image" : "heatmap over the network's view (the centre crop)";
  drawBoxes(inspection);
}

// Each region's box over the heatmap, in percent of the picture: it stays in place at every zoom.
function drawBoxes(inspection) {
  const layer = $("boxes");
  const [x0, y0, x1, y1] = inspection.heatmap_window;
  for (const r of inspection.regions || []) {
    const left = Math.max(r.x, x0), top = Math.max(r.y, y0);
    const right = Math.min(r.x + r.width, x1), bottom = Math.min(r.y + r.height, y1);
    if (right <= left || bottom <= top) continue; // outside the picture (cropped away)
    const box = document.createElement("div");
    box.className = "region";
    box.title = "max score " + r.max_score + ", " + r.area + " px";
    box.style.left = (100 * (left - x0) / (x1 - x0)) + "%";
    box.style.top = (100 * (top - y0) / (y1 - y0)) + "%";
    box.style.width = (100 * (right - left) / (x1 - x0)) + "%";
    box.style.height = (100 * (bottom - top) / (y1 - y0)) + "%";
    layer.appendChild(box);
  }
}

// Fit the picture to the viewer, or show it at its own resolution (scroll to pan).
function toggleZoom() {
  const image = $("heatmap"), full = $("zoom").getAttribute("aria-pressed") !== "true";
  $("zoom").setAttribute("aria-pressed", String(full));
  $("zoom").textContent = full ? "fit" : "full resolution";
  $("viewer").classList.toggle("zoomed", full);
  image.style.width = full ? image.naturalWidth + "px" : "";
}

async function inspect(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const inspection = await (await api("/v1/inspect", { method: "POST", body: form })).json();
  await show(inspection);
  return inspection;
}

async function upload(files) {
  let done = 0;
  for (const file of files) {
    say("inspecting " + file.name + " (" + (done + 1) + " of " + files.length + ")...");
    try {
      await inspect(file);
      done += 1;
    } catch (error) {
      say(file.name + ": " + error.message, true);
      await refresh();
      return;
    }
  }
  say(done + " image" + (done === 1 ? "" : "s") + " inspected");
  await refresh();
}

async function review(inspection, verdict) {
  const body = JSON.stringify({ review: verdict });
  const updated = await (await api("/v1/inspections/" + inspection.id + "/review", {
    method: "POST", headers: { "Content-Type": "application/json" }, body,
  })).json();
  if (current && current.id === updated.id) await show(updated);
  await refresh();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "small";
  b.textContent = label;
  b.addEventListener("click", action);
  return b;
}

async function refresh() {
  const verdict = $("filter").value;
  const query = "?limit=50" + (verdict ? "&verdict=" + encodeURIComponent(verdict) : "");
  let page;
  try {
    page = await (await api("/v1/inspections" + query)).json();
  } catch (error) {
    say(error.message, true);
    return;
  }
  $("counts").textContent = page.inspections.length + " shown of " + page.total + " inspections, " + page.reviewed + " reviewed";
  const rows = $("rows");
  rows.replaceChildren();
  for (const inspection of page.inspections) {
    const row = document.createElement("tr");
    row.dataset.id = inspection.id;
    cell(row, inspection.created.replace("T", " ").slice(0, 19));
    cell(row, inspection.image);
    cell(row, inspection.score.toFixed(4));
    cell(row, verdictText(inspection), inspection.verdict || "");
    cell(row, inspection.review || "-", "review");
    const actions = cell(row, "");
    actions.appendChild(button("show", () => show(inspection).catch((e) => say(e.message, true))));
    actions.appendChild(button("good", () => review(inspection, "good").catch((e) => say(e.message, true))));
    actions.appendChild(button("defective", () => review(inspection, "defective").catch((e) => say(e.message, true))));
    rows.appendChild(row);
  }
}

async function card() {
  try {
    const m = await (await api("/v1/model")).json();
    const auroc = m.metrics && m.metrics.image_auroc !== null && m.metrics.image_auroc !== undefined ? ", image AUROC " + m.metrics.image_auroc.toFixed(3) : "";
    $("model").textContent = m.dataset + " / " + m.category + " - " + m.backbone + " (" + m.weights + "), threshold " +
      (m.threshold === null ? "none" : m.threshold.toFixed(4)) + auroc + " - " + m.runtime;
  } catch (error) {
    $("model").textContent = "model card: " + error.message;
  }
}

function start() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
  $("file").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });
  $("filter").addEventListener("change", refresh);
  $("zoom").addEventListener("click", toggleZoom);
  $("mark-good").addEventListener("click", () => current && review(current, "good").catch((e) => say(e.message, true)));
  $("mark-defective").addEventListener("click", () => current && review(current, "defective").catch((e) => say(e.message, true)));
  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("patchcore-token", token);
    $("token-box").hidden = true;
    card();
    refresh();
  });
  card();
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
