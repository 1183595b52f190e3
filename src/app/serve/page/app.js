// The page of `rsp serve`: uploads images, lists their top classes, asks the server
// for maps (raw relevance, base64 f32) and draws them over the photo. Colour maps and
// opacity are applied here, with the formulas of rsp's render.rs, so changing them
// redraws without a request.
"use strict";

// Control points (position, rgb in [0, 1]) of the colour maps, as render.rs has them.
const STOPS = {
  bwr: [[0, [0, 0, 1]], [0.5, [1, 1, 1]], [1, [1, 0, 0]]],
  seismic: [[0, [0, 0, 0.3]], [0.25, [0, 0, 1]], [0.5, [1, 1, 1]], [0.75, [1, 0, 0]], [1, [0.5, 0, 0]]],
  coldnhot: [[0, [0, 1, 1]], [0.25, [0, 0, 1]], [0.5, [0, 0, 0]], [0.75, [1, 0, 0]], [1, [1, 1, 0]]],
  jet: [[0, [0, 0, 0.5]], [0.11, [0, 0, 1]], [0.125, [0, 0, 1]], [0.34, [0, 0.86, 1]],
        [0.35, [0, 0.9, 0.9677]], [0.375, [0.0806, 1, 0.8871]], [0.64, [0.9355, 1, 0.0323]],
        [0.65, [0.9677, 0.963, 0]], [0.66, [1, 0.9259, 0]], [0.89, [1, 0.0741, 0]],
        [0.91, [0.9091, 0, 0]], [1, [0.5, 0, 0]]],
  gray: [[0, [0, 0, 0]], [1, [1, 1, 1]]],
};

const S = {
  info: null,
  images: [],          // {id, name, size, top, photo (ImageData), selected: Set}
  maps: {},            // key -> {id, cls, method, init, w, h, heatmap (Float32Array), heatmapB64, relevanceB64, relevanceShape}
  draws: 0,            // maps drawn (the browser test reads it)
  busy: false,
};
window.rspState = S;

const $ = (sel) => document.querySelector(sel);

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

function colour(stops, t) {
  t = Number.isNaN(t) ? 0.5 : Math.min(Math.max(t, 0), 1);
  let i = 0;
  for (let k = 0; k < stops.length; k++) if (stops[k][0] <= t) i = k;
  i = Math.min(i, stops.length - 2);
  const [p0, c0] = stops[i];
  const [p1, c1] = stops[i + 1];
  const f = Math.min(Math.max((t - p0) / (p1 - p0), 0), 1);
  return c0.map((v, k) => Math.round((v + (c1[k] - v) * f) * 255));
}

// Position on the colour map and strength of every value (render.rs's `positions`).
function positions(map, cmapName) {
  const diverging = S.info.cmaps.find((c) => c.name === cmapName).diverging;
  const n = map.length;
  const t = new Float32Array(n);
  const strength = new Float32Array(n);
  let signed = false;
  for (let i = 0; i < n; i++) if (map[i] < 0) { signed = true; break; }
  if (signed || diverging) {
    let m = 0;
    for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(map[i]));
    const scale = m > 0 ? 1 / m : 0;
    for (let i = 0; i < n; i++) {
      const u = Math.min(Math.max(Math.fround(map[i] * scale), -1), 1);
      t[i] = (u + 1) / 2;
      strength[i] = Math.abs(u);
    }
  } else {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < n; i++) { lo = Math.min(lo, map[i]); hi = Math.max(hi, map[i]); }
    const scale = hi > lo ? 1 / (hi - lo) : 0;
    for (let i = 0; i < n; i++) {
      const v = Math.min(Math.max((map[i] - lo) * scale, 0), 1);
      t[i] = v;
      strength[i] = v;
    }
  }
  return [t, strength];
}

// The map over the photo with opacity alpha·(0.7 + strength), at most 1 (render.rs's overlay).
function draw(canvas, m, photo) {
  const cmapName = $("#cmap").value;
  const alpha = parseFloat($("#opacity").value);
  const stops = STOPS[cmapName];
  const [t, strength] = positions(m.heatmap, cmapName);
  canvas.width = m.w;
  canvas.height = m.h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(m.w, m.h);
  for (let i = 0; i < m.w * m.h; i++) {
    const a = Math.min(alpha * (0.7 + strength[i]), 1);
    const c = colour(stops, t[i]);
    for (let k = 0; k < 3; k++) {
      const p = photo ? photo.data[i * 4 + k] : 255;
      out.data[i * 4 + k] = Math.round(p * (1 - a) + c[k] * a);
    }
    out.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  S.draws++;
}

function decodeF32(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

async function api(path, options) {
  const r = await fetch(path, options);
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: e.g. the body-size limit */ }
  if (!r.ok) {
    const why = body && body.error ? body.error : `${r.status} ${r.statusText}: ${text}`;
    throw new Error(why);
  }
  return body;
}

function methodEntries() {
  return [...document.querySelectorAll("input.method:checked")].map((box) => {
    const [method, init] = box.value.split(":");
    return { method, init: init || null, label: box.dataset.label };
  });
}

function mapKey(id, cls, method, init) {
  return `${id}/${cls}/${method}/${init || "-"}`;
}

async function loadPhoto(id) {
  const img = new Image();
  img.src = `/api/images/${id}/photo.png`;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  return [img, ctx.getImageData(0, 0, c.width, c.height)];
}

async function upload(file) {
  if (file.size > S.info.max_upload) {
    const mib = (b) => (b / 1048576).toFixed(1);
    throw new Error(`${file.name}: ${mib(file.size)} MiB is over the server's upload limit ` +
                    `(${mib(S.info.max_upload)} MiB, rsp serve --max-upload-mb)`);
  }
  const reply = await api(`/api/images?${new URLSearchParams({ name: file.name })}`, {
    method: "POST",
    body: file,
  });
  reply.name = file.name;
  let entry = S.images.find((i) => i.id === reply.id);
  if (!entry) {
    const [img, photo] = await loadPhoto(reply.id);
    entry = { ...reply, img, photo, selected: new Set() };
    S.images.push(entry);
  }
  renderImages();
}

async function uploadAll(files) {
  clearError();
  for (const file of files) {
    try {
      setStatus(`uploading ${file.name}…`);
      await upload(file);
    } catch (e) {
      showError(e.message.startsWith(file.name) ? e.message : `${file.name}: ${e.message}`);
    }
  }
  setStatus("");
}

function renderImages() {
  const box = $("#images");
  box.textContent = "";
  for (const im of S.images) {
    const card = document.createElement("div");
    card.className = "image";
    card.dataset.id = im.id;
    const title = document.createElement("div");
    title.textContent = im.name;
    card.append(im.img, title);
    const list = document.createElement("ol");
    list.id = `top-${im.id}`;
    for (const p of im.top) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "cls" + (im.selected.has(p.class) ? " selected" : "");
      b.dataset.id = im.id;
      b.dataset.class = p.class;
      b.textContent = p.name;
      b.addEventListener("click", () => {
        if (im.selected.has(p.class)) im.selected.delete(p.class);
        else im.selected.add(p.class);
        renderImages();
      });
      li.append(b, ` ${(100 * p.score).toFixed(2)}%`);
      li.dataset.class = p.class;
      li.dataset.score = p.score;
      list.append(li);
    }
    card.append(list);
    box.append(card);
  }
}

function setStatus(text) {
  $("#status").textContent = text;
}

async function explainSelected() {
  if (S.busy) return;
  clearError();
  const entries = methodEntries();
  const todo = [];
  for (const im of S.images) {
    for (const cls of im.selected) {
      for (const e of entries) {
        if (!S.maps[mapKey(im.id, cls, e.method, e.init)]) todo.push([im, cls, e]);
      }
    }
  }
  if (!entries.length) showError("tick at least one method");
  else if (!S.images.some((im) => im.selected.size)) showError("click a class of an image to explain it");
  const bar = $("#progress");
  S.busy = true;
  bar.max = Math.max(todo.length, 1);
  bar.value = 0;
  bar.hidden = todo.length === 0;
  try {
    for (const [im, cls, e] of todo) {
      setStatus(`explaining ${bar.value + 1}/${todo.length} on the GPU…`);
      const r = await api("/api/explain", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: im.id, class: cls, method: e.method, init: e.init }),
      });
      S.maps[mapKey(im.id, cls, e.method, e.init)] = {
        id: im.id, cls, method: e.method, init: e.init, w: r.width, h: r.height,
        heatmap: decodeF32(r.heatmap), heatmapB64: r.heatmap,
        relevanceB64: r.relevance, relevanceShape: r.relevance_shape,
      };
      bar.value += 1;
      renderGrid();
    }
  } catch (err) {
    showError(err.message);
  } finally {
    S.busy = false;
    bar.hidden = true;
    setStatus("");
    renderGrid();
  }
}

function stem(name) {
  return name.replace(/\.[^.]*$/, "");
}

function relevanceUrl(m) {
  const q = new URLSearchParams({ id: m.id, class: m.cls, method: m.method });
  if (m.init) q.set("init", m.init);
  return `/api/relevance?${q}`;
}

function download(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

function renderGrid() {
  const grid = $("#grid");
  grid.textContent = "";
  const entries = methodEntries();
  const rows = [];
  for (const im of S.images) for (const cls of im.selected) rows.push([im, cls]);
  if (!rows.length || !entries.length) return;
  const head = grid.insertRow();
  head.insertCell().textContent = "image / class";
  for (const e of entries) {
    const th = document.createElement("th");
    th.textContent = e.label;
    head.append(th);
  }
  for (const [im, cls] of rows) {
    const tr = grid.insertRow();
    const label = tr.insertCell();
    label.textContent = `${im.name} / ${S.info.class_names[cls] ?? cls}`;
    for (const e of entries) {
      const td = tr.insertCell();
      const key = mapKey(im.id, cls, e.method, e.init);
      const m = S.maps[key];
      if (!m) { td.textContent = "—"; continue; }
      const canvas = document.createElement("canvas");
      canvas.className = "map";
      canvas.dataset.key = key;
      draw(canvas, m, im.photo);
      canvas.addEventListener("mousemove", (ev) => {
        const r = canvas.getBoundingClientRect();
        const x = Math.min(m.w - 1, Math.floor((ev.clientX - r.left) / r.width * m.w));
        const y = Math.min(m.h - 1, Math.floor((ev.clientY - r.top) / r.height * m.h));
        $("#hover").textContent = `${e.label}, ${im.name} / ${S.info.class_names[cls] ?? cls}: ` +
          `relevance ${m.heatmap[y * m.w + x].toExponential(3)} at (${x}, ${y})`;
      });
      const links = document.createElement("div");
      links.className = "dl";
      const png = document.createElement("a");
      png.href = "#";
      png.textContent = "PNG";
      png.addEventListener("click", (ev) => {
        ev.preventDefault();
        download(canvas.toDataURL("image/png"), `${stem(im.name)}.${e.method}.${cls}.png`);
      });
      const st = document.createElement("a");
      st.href = relevanceUrl(m);
      st.download = `${stem(im.name)}.${e.method}.${cls}.safetensors`;
      st.textContent = "safetensors";
      links.append(png, " · ", st);
      td.append(canvas, links);
    }
  }
}

function redraw() {
  for (const canvas of document.querySelectorAll("#grid canvas.map")) {
    const m = S.maps[canvas.dataset.key];
    const im = S.images.find((i) => i.id === m.id);
    draw(canvas, m, im.photo);
  }
}

function downloadAll() {
  for (const canvas of document.querySelectorAll("#grid canvas.map")) {
    const m = S.maps[canvas.dataset.key];
    const im = S.images.find((i) => i.id === m.id);
    const name = `${stem(im.name)}.${m.method}.${m.cls}`;
    download(canvas.toDataURL("image/png"), `${name}.png`);
    download(relevanceUrl(m), `${name}.safetensors`);
  }
}

async function start() {
  try {
    S.info = await api("/api/info");
  } catch (e) {
    showError(`cannot reach the server: ${e.message}`);
    return;
  }
  const info = S.info;
  $("#model").textContent = `${info.weights ?? ""} — ${info.model}, ${info.readout}, ${info.size} px`;
  $("#adapter").textContent = `${info.adapter} (${info.backend}), precision ${info.precision}`;
  const box = $("#methods");
  for (const m of info.methods) {
    const inits = m.name === "rsp" ? info.inits.map((i) => i.name) : [null];
    for (const init of inits) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.className = "method";
      input.value = init ? `${m.name}:${init}` : m.name;
      input.dataset.label = init ? `${m.name} (${init} init)` : m.name;
      input.checked = m.name === "rsp" ? init === "gradcam" : m.name === "gradcam";
      input.addEventListener("change", renderGrid);
      label.title = m.description;
      label.append(input, ` ${input.dataset.label}`);
      box.append(label);
    }
  }
  const cmap = $("#cmap");
  for (const c of info.cmaps) {
    const o = document.createElement("option");
    o.value = o.textContent = c.name;
    cmap.append(o);
  }
  cmap.value = "bwr";
  cmap.addEventListener("change", redraw);
  $("#opacity").addEventListener("input", redraw);
  $("#explain").addEventListener("click", explainSelected);
  $("#download-all").addEventListener("click", downloadAll);
  $("#file").addEventListener("change", (ev) => {
    const files = [...ev.target.files];
    ev.target.value = ""; // choosing the same file again is a new upload
    uploadAll(files);
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    uploadAll([...ev.dataTransfer.files]);
  });
  document.body.dataset.ready = "1";
}

start();
