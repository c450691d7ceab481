/* crosslens inspect: the front end of the inspection page.
 *
 * One classic script, no imports, no build step, no network beyond the same-origin JSON API
 * (notes/inspect_api.md). In a static export `window.CROSSLENS_EXPORT` maps canonical request
 * keys ("GET /api/matrix?layer=conv1&sort=variance") to responses, and every request is
 * answered from that map instead of the network.
 *
 * Views: live strip, graph, activation matrix, projection, instance (+ two attribution
 * panels), channel, building blocks. The instance view shows the data's modality
 * (session.dataset.modality): an image, tokens (coloured by their attribution), feature
 * rows (attribution bars) or a series plot (shaded by the attribution); the channel and
 * building-blocks views need image inputs and say so for the other modalities. They are linked through one state object: selecting a
 * layer, a channel or an instance anywhere calls select*(), which reloads the views that
 * depend on it. Each view sets data-state = loading | ready | error | missing for tests.
 */
(function () {
  "use strict";

  const EXPORT = window.CROSSLENS_EXPORT || null;
  const POLL_MS = 250;
  const JOB_TIMEOUT_MS = 30 * 60 * 1000;

  // ---------------------------------------------------------------- api
  class ApiError extends Error {
    constructor(message, status, missing) {
      super(message);
      this.status = status || 0;
      this.missing = !!missing;
    }
  }

  // encodeURIComponent, as the exporter's canonical_key (endpoints.py) builds its keys.
  const enc = (value) => encodeURIComponent(String(value));

  function canonicalQuery(params) {
    return Object.keys(params || {})
      .filter((k) => params[k] !== undefined && params[k] !== null && String(params[k]) !== "")
      .sort()
      .map((k) => enc(k) + "=" + enc(params[k]))
      .join("&");
  }

  function requestKey(method, path, params) {
    const q = canonicalQuery(params);
    return method + " " + path + (q ? "?" + q : "");
  }

  function fromExport(key) {
    if (Object.prototype.hasOwnProperty.call(EXPORT, key)) return EXPORT[key];
    throw new ApiError("not part of this export (" + key + ")", 404, true);
  }

  const cache = new Map();
  const NO_CACHE = new Set(["/api/subsets", "/api/frames"]);
  let inFlight = 0;

  function busy(delta) {
    inFlight += delta;
    const el = document.getElementById("busy");
    if (el) el.hidden = inFlight <= 0;
  }

  async function readJson(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const msg = body && body.error ? body.error : "HTTP " + response.status + " " + response.statusText;
      throw new ApiError(msg, response.status, false);
    }
    return body;
  }

  async function get(path, params, opts) {
    const key = requestKey("GET", path, params);
    if (EXPORT) return fromExport(key);
    const fresh = opts && opts.fresh;
    if (!fresh && !NO_CACHE.has(path) && !path.startsWith("/api/jobs") && cache.has(key)) {
      return cache.get(key);
    }
    const q = canonicalQuery(params);
    const url = path + (q ? "?" + q : "");
    const promise = (async () => {
      busy(1);
      try {
        return await readJson(await fetch(url, { headers: { Accept: "application/json" } }));
      } finally { busy(-1); }
    })();
    if (!NO_CACHE.has(path) && !path.startsWith("/api/jobs")) {
      cache.set(key, promise);
      promise.catch(() => cache.delete(key));
    }
    return promise;
  }

  function postKey(path, body) {
    const flat = {};
    for (const k of Object.keys(body)) {
      const v = body[k];
      flat[k] = v !== null && typeof v === "object" ? stableJson(v) : v;
    }
    return requestKey("POST", path, flat);
  }

  function stableJson(value) {
    if (Array.isArray(value)) return "[" + value.map(stableJson).join(",") + "]";
    if (value !== null && typeof value === "object") {
      return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + stableJson(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }

  async function post(path, body) {
    if (EXPORT) return fromExport(postKey(path, body));
    busy(1);
    try {
      return await readJson(await fetch(path, {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      }));
    } finally { busy(-1); }
  }

  async function upload(file) {
    if (EXPORT) throw new ApiError("uploads need the running server (crosslens inspect); not part of this export", 404, true);
    const form = new FormData();
    form.append("file", file, file.name);
    busy(1);
    try {
      return await readJson(await fetch("/api/upload", { method: "POST", body: form }));
    } finally { busy(-1); }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // A job: POST /api/jobs then poll until done; onProgress(fraction, message);
  // isStale() stops polling when the view has moved on.
  async function runJob(body, onProgress, isStale) {
    if (EXPORT && body.kind === "attribution") {
      // The export holds finished attributions under GET /api/attribution.
      const opts = body.options && Object.keys(body.options).length ? stableJson(body.options) : null;
      return get("/api/attribution", { index: body.index, method: body.method, options: opts, target: body.target });
    }
    let job = await post("/api/jobs", body);
    const started = Date.now();
    while (job.status !== "done") {
      if (job.status === "error") throw new ApiError(job.message || job.error || "the job failed", 0, false);
      if (isStale && isStale()) return null;
      if (Date.now() - started > JOB_TIMEOUT_MS) throw new ApiError("the job did not finish in 30 minutes", 0, false);
      if (onProgress) onProgress(job.progress || 0, job.message || "");
      await sleep(POLL_MS);
      const id = job.job;
      const next = await get("/api/jobs/" + encodeURIComponent(id));
      job = Object.assign({ job: id }, next);
    }
    if (onProgress) onProgress(1, "done");
    return job.result;
  }

  // ---------------------------------------------------------------- small helpers
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "style") el.style.cssText = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  const $ = (id) => document.getElementById(id);

  // replaceChildren without the null / false placeholders of conditional children.
  function fill(el, ...children) {
    el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
    return el;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1000) return v.toExponential(2);
    if (a >= 100) return v.toFixed(0);
    if (a >= 1) return v.toFixed(2);
    if (a >= 0.001) return v.toPrecision(3);
    return v.toExponential(2);
  }

  function setViewState(view, state) {
    const el = $("view-" + view);
    if (el) el.dataset.state = state;
  }

  function showProblem(container, err, testid) {
    const missing = err instanceof ApiError && err.missing;
    fill(container, h("div", {
      class: missing ? "missing" : "error", "data-testid": testid || "error",
      text: missing ? "Not part of this export." : String(err.message || err),
      title: missing ? err.message : null,
    }));
    return missing ? "missing" : "error";
  }

  // Tokens: a view's later request wins over an earlier one still in flight.
  const tokens = {};
  function ticket(name) { tokens[name] = (tokens[name] || 0) + 1; return tokens[name]; }
  const stale = (name, t) => tokens[name] !== t;

  // ---------------------------------------------------------------- colours
  const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
    .map(hexRgb);
  const DIVERGING = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b"]
    .map(hexRgb);
  const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function hexRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function ramp(stops, t) {
    t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
    const x = t * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    const a = stops[i], b = stops[i + 1];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
  }

  // A scale: sequential (viridis) for one-signed data, diverging centred on 0 otherwise.
  function makeScale(vmin, vmax) {
    if (!(vmax > vmin)) vmax = vmin + 1;
    if (vmin < 0 && vmax > 0) {
      const m = Math.max(-vmin, vmax);
      return { vmin: -m, vmax: m, stops: DIVERGING, color: (v) => ramp(DIVERGING, (v + m) / (2 * m)) };
    }
    return { vmin, vmax, stops: VIRIDIS, color: (v) => ramp(VIRIDIS, (v - vmin) / (vmax - vmin)) };
  }

  const css = (rgb) => "rgb(" + (rgb[0] | 0) + "," + (rgb[1] | 0) + "," + (rgb[2] | 0) + ")";

  function categorical(i) {
    if (i < TAB10.length) return TAB10[i];
    return "hsl(" + ((i * 137.5) % 360) + ",60%,50%)";
  }

  function colorbar(scale, label, testid) {
    const cv = h("canvas", { width: 120, height: 10 });
    const ctx = cv.getContext("2d");
    for (let x = 0; x < 120; x++) {
      ctx.fillStyle = css(ramp(scale.stops, x / 119));
      ctx.fillRect(x, 0, 1, 10);
    }
    return h("span", { class: "cbar", "data-testid": testid || "colorbar" },
      label ? h("span", { text: label }) : null, h("span", { text: fmt(scale.vmin) }), cv, h("span", { text: fmt(scale.vmax) }));
  }

  function hiDpi(canvas, w, hgt) {
    const r = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * r);
    canvas.height = Math.round(hgt * r);
    canvas.style.width = w + "px";
    canvas.style.height = hgt + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    return ctx;
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the image could not be decoded"));
      img.src = src;
    });
  }

  const tooltip = h("div", { class: "tooltip", "data-testid": "tooltip", hidden: true });
  function tip(ev, text) {
    if (!text) { tooltip.hidden = true; return; }
    tooltip.textContent = text;
    tooltip.hidden = false;
    tooltip.style.left = ev.clientX + 12 + "px";
    tooltip.style.top = ev.clientY + 12 + "px";
  }

  // ---------------------------------------------------------------- state
  const S = {
    session: null, graph: null, layer: null, channel: null, index: 0,
    subsets: [], matrix: null, projection: null, instance: null, frames: [], uploads: [],
    sort: "variance", mscale: "global", a: null, b: null, projMethod: "pca", colorBy: "label", mode: "box",
    selection: null, highlight: null, k: 3, flowTo: null, dictPos: null, userCount: 0,
  };
  const timings = { start: performance.now(), ready: null, layerSwitch: [] };

  function layerInfo(name) {
    return (S.session.layers || []).find((l) => l.name === name) || null;
  }

  // Spatial size (h, w) of a layer's output, or null for a vector output.
  function layerHW(name) {
    const info = layerInfo(name);
    if (!info || !Array.isArray(info.shape)) return null;
    let shape = info.shape.slice();
    if (shape.length === 4) shape = shape.slice(1);
    if (shape.length !== 3) return null;
    const channelsLast = S.session.model.framework === "keras" ||
      (shape[2] === info.channels && shape[0] !== info.channels);
    const hw = channelsLast ? [shape[0], shape[1]] : [shape[1], shape[2]];
    return hw[0] * hw[1] > 1 ? hw : null;  // a 1x1 map (global pooling) has no positions
  }

  function classes() { return (S.session && S.session.model.classes) || []; }
  // "image" | "text" | "tabular" | "series"
  function modality() { return (S.session && S.session.dataset && S.session.dataset.modality) || "image"; }
  // A colour from the server for a style attribute: only #rrggbb or rgb()/rgba() numbers.
  function safeColor(c) {
    return typeof c === "string" && (/^#[0-9a-f]{6}$/i.test(c) || /^rgba?\([0-9.,\s]+\)$/.test(c)) ? c : "#999";
  }
  function className(c) { const n = classes()[c]; return n === undefined ? String(c) : n; }
  function maxIndex() {
    const base = S.session ? S.session.dataset.size - 1 : 0;
    return Math.max(base, ...S.uploads, ...S.frames.map((f) => f.index));
  }

  // ---------------------------------------------------------------- selection (the links)
  function selectLayer(name, opts) {
    if (!layerInfo(name)) return;
    const changed = name !== S.layer;
    if (!changed && !(opts && opts.force)) return Promise.resolve();
    S.layer = name;
    // A channel number means nothing across layers: start at the layer's most varying
    // channel (the matrix's first column) unless one is given.
    const info = layerInfo(name);
    const given = opts && opts.channel;
    S.channel = Number.isInteger(given) && given >= 0 && given < (info.channels || 0) ? given : null;
    $("layer-select").value = name;
    markGraph();
    updateWhere();
    S.dictPos = null;
    const t0 = performance.now();
    const matrix = loadMatrix().then(() => {
      if (S.layer !== name || S.channel !== null) return;
      S.channel = S.matrix && S.matrix.layer === name && S.matrix.order.length ? S.matrix.order[0] : 0;
      updateWhere();
      drawMatrix();
    });
    const shown = Promise.allSettled([matrix, loadProjection()]).then(() => {
      const dt = performance.now() - t0;
      if (!(opts && opts.initial)) timings.layerSwitch.push(dt);
      document.body.dataset.layer = name;
    });
    const channel = S.channel !== null ? loadChannel()
      : matrix.then(() => (S.layer === name ? loadChannel() : null));
    // Resolves when every view of the layer has drawn (the page's "ready").
    return Promise.allSettled([shown, channel, loadBlocks()]);
  }

  function selectChannel(c) {
    S.channel = c;
    updateWhere();
    drawMatrix();
    loadChannel();
  }

  function selectIndex(i) {
    i = Math.max(0, Math.min(maxIndex(), i | 0));
    S.index = i;
    S.dictPos = null;
    $("live-index").value = i;
    updateWhere();
    markFrames();
    drawProjection();
    const done = loadInstance();
    loadChannel();
    loadBlocks();
    return done;
  }

  function updateWhere() {
    fill($("where"), 
      "layer ", h("b", { text: S.layer || "–" }), " · channel ", h("b", { text: S.channel === null ? "–" : String(S.channel) }),
      " · instance ", h("b", { text: String(S.index) }));
  }

  // ---------------------------------------------------------------- header
  function renderHeader() {
    const m = S.session.model, d = S.session.dataset;
    fill($("meta"), 
      h("b", { text: m.name }), " (" + m.framework + ", input " + (m.input_shape || []).join("×") + ", " + classes().length + " classes) on ",
      h("b", { text: d.name }), " (" + d.size + " instances) ",
      EXPORT ? h("span", { class: "badge export", "data-testid": "export-badge", text: "static export" }) : null);
    document.title = "crosslens · " + m.name;
    const sel = $("layer-select");
    fill(sel, ...S.session.layers.map((l) =>
      h("option", { value: l.name, text: l.name + "  (" + (l.type || "") + ", " + (l.channels || "?") + " ch)" })));
    sel.addEventListener("change", () => selectLayer(sel.value));
    const small = modality() === "image" && (m.input_shape || []).some((s) => s > 3 && s <= 64);
    document.body.classList.toggle("small-input", small);
    document.body.dataset.modality = modality();
  }

  const pxClass = () => (document.body.classList.contains("small-input") ? "px" : "");

  // ---------------------------------------------------------------- graph view
  async function loadGraph() {
    const body = $("graph-body");
    try {
      S.graph = await get("/api/graph");
      renderGraph();
      setViewState("graph", "ready");
    } catch (err) {
      setViewState("graph", showProblem(body, err, "graph-error"));
    }
  }

  function shapeText(shape) {
    if (!Array.isArray(shape)) return shape ? String(shape) : "";
    return shape.map((s) => (s === null ? "?" : s)).join("×");
  }

  function renderGraph() {
    const nodes = S.graph.nodes || [];
    const kids = new Map();
    const ids = new Set(nodes.map((n) => n.id));
    for (const n of nodes) {
      const p = n.parent !== null && n.parent !== undefined && ids.has(n.parent) ? n.parent : null;
      if (!kids.has(p)) kids.set(p, []);
      kids.get(p).push(n);
    }
    const inputs = new Map();
    for (const [src, dst] of S.graph.edges || []) {
      if (!inputs.has(dst)) inputs.set(dst, []);
      inputs.get(dst).push(src);
    }
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const collapseDeep = nodes.length > 80;
    const build = (parent, depth) => {
      const list = kids.get(parent) || [];
      return h("ul", { class: depth === 0 ? "tree" : null, role: depth === 0 ? "tree" : "group" }, list.map((n) => {
        const children = kids.get(n.id);
        const from = (inputs.get(n.id) || []).map((s) => (byId.get(s) || { name: s }).name);
        const row = h("div", {
          class: "row" + (n.is_layer ? " layer" : ""), "data-testid": "graph-node", "data-name": n.name,
          "data-layer": n.is_layer ? n.name : null, title: (n.name || "") + (n.params ? " · " + n.params + " parameters" : "") +
            (from.length ? "\ninputs: " + from.join(", ") : ""),
          role: "treeitem",
        },
        h("span", { class: "tog", text: children ? "▾" : "" }),
        h("span", { class: "name", text: shortName(n.name, parent === null ? null : byId.get(parent)) }),
        h("span", { class: "type", text: n.type || "" }),
        h("span", { class: "shape", text: shapeText(n.shape) }),
        // A node with several inputs (a residual add, a concatenation) names them: the DAG.
        from.length > 1 ? h("span", { class: "from", text: "⇐ " + from.map((f) => shortName(f, byId.get(parent))).join(", ") }) : null);
        const li = h("li", { class: children && collapseDeep && depth >= 1 ? "collapsed" : null }, row,
          children ? build(n.id, depth + 1) : null);
        if (children) {
          const tog = row.querySelector(".tog");
          tog.textContent = li.classList.contains("collapsed") ? "▸" : "▾";
          tog.addEventListener("click", (ev) => {
            ev.stopPropagation();
            li.classList.toggle("collapsed");
            tog.textContent = li.classList.contains("collapsed") ? "▸" : "▾";
          });
        }
        if (n.is_layer) row.addEventListener("click", () => selectLayer(n.name));
        else if (children) row.addEventListener("click", () => row.querySelector(".tog").click());
        return li;
      }));
    };
    fill($("graph-body"), build(null, 0));
    markGraph();
  }

  function shortName(name, parent) {
    if (!name) return "";
    if (parent && parent.name && name.startsWith(parent.name + ".")) return name.slice(parent.name.length + 1);
    return name;
  }

  function markGraph() {
    for (const row of document.querySelectorAll("#graph-body .row")) {
      const on = row.dataset.layer === S.layer;
      row.classList.toggle("selected", on);
      row.setAttribute("aria-selected", on ? "true" : "false");
      if (on) {
        // Open the blocks around the selected layer.
        for (let li = row.parentElement; li && li.id !== "graph-body"; li = li.parentElement) {
          if (li.tagName === "LI" && li !== row.parentElement && li.classList.contains("collapsed")) {
            li.classList.remove("collapsed");
            const tog = li.querySelector(":scope > .row .tog");
            if (tog) tog.textContent = "▾";
          }
        }
      }
    }
  }

  function filterGraph(text) {
    text = text.trim().toLowerCase();
    for (const row of document.querySelectorAll("#graph-body .row")) {
      const hay = (row.dataset.name + " " + row.querySelector(".type").textContent).toLowerCase();
      row.classList.toggle("hidden", !!text && !hay.includes(text));
    }
    if (text) for (const li of document.querySelectorAll("#graph-body li.collapsed")) li.classList.remove("collapsed");
  }

  // ---------------------------------------------------------------- subsets
  async function loadSubsets() {
    S.subsets = await get("/api/subsets");
    fillAB();
  }

  function fillAB() {
    const opts = () => S.subsets.map((s) => h("option", { value: s.id, text: s.name + " (" + s.size + ")" }));
    const a = $("matrix-a"), b = $("matrix-b");
    fill(a, ...opts());
    fill(b, ...opts());
    const ids = S.subsets.map((s) => s.id);
    const pair = S.session.default_difference || [];
    if (!ids.includes(S.a)) S.a = ids.includes(pair[0]) ? pair[0] : ids.includes("correct") ? "correct" : ids[0];
    if (!ids.includes(S.b)) S.b = ids.includes(pair[1]) ? pair[1] : ids.includes("wrong") ? "wrong" : ids[Math.min(1, ids.length - 1)];
    a.value = S.a;
    b.value = S.b;
  }

  // ---------------------------------------------------------------- matrix view
  function matrixParams() {
    const p = { layer: S.layer, sort: S.sort };
    if (S.sort === "difference") { p.a = S.a; p.b = S.b; }
    return p;
  }

  async function loadMatrix() {
    const t = ticket("matrix");
    setViewState("matrix", "loading");
    try {
      const m = await get("/api/matrix", matrixParams());
      if (stale("matrix", t)) return;
      S.matrix = m;
      drawMatrix();
      setViewState("matrix", "ready");
    } catch (err) {
      if (stale("matrix", t)) return;
      S.matrix = null;
      fill($("matrix-legend"), );
      setViewState("matrix", showProblem($("matrix-body"), err, "matrix-error"));
    }
  }

  function drawMatrix() {
    const m = S.matrix;
    if (!m) return;
    const body = $("matrix-body");
    const rows = m.rows || [];
    const order = m.order || [];
    const scale = makeScale(m.vmin, m.vmax);
    const perColumn = S.mscale === "column";
    // Per channel: each column stretched over its own range, so subsets that differ on a
    // weak channel still stand out.
    const lo = [], hi = [];
    if (perColumn) {
      for (let j = 0; j < order.length; j++) {
        lo[j] = Infinity; hi[j] = -Infinity;
        for (const r of rows) { lo[j] = Math.min(lo[j], r.values[j]); hi[j] = Math.max(hi[j], r.values[j]); }
      }
    }
    const cell = perColumn ? (v, j) => ramp(VIRIDIS, hi[j] > lo[j] ? (v - lo[j]) / (hi[j] - lo[j]) : 0.5) : (v) => scale.color(v);
    fill($("matrix-legend"), perColumn
      ? colorbar({ vmin: 0, vmax: 1, stops: VIRIDIS }, "each channel: its lowest → highest subset mean", "matrix-colorbar")
      : colorbar(scale, "mean activation", "matrix-colorbar"));
    const kinds = new Map(S.subsets.map((s) => [s.id, s.kind]));
    let lastKind = null;
    const labels = h("div", { class: "labels" }, h("div", { class: "hdr muted", text: "subset · size" }),
      rows.map((r) => {
        const kind = kinds.get(r.subset) || "";
        const first = lastKind !== null && kind !== lastKind;
        lastKind = kind;
        return h("div", {
          class: "mrow" + (kind === "user" ? " user" : "") + (first ? " kind-first" : "") + (S.highlight === r.subset ? " on" : ""),
          "data-testid": "matrix-row", "data-subset": r.subset,
          title: r.name + " — " + r.size + " instances (click: show them in the projection)",
          onclick: () => highlightSubset(r.subset),
        }, h("span", { text: r.name }), h("span", { class: "n", text: String(r.size) }));
      }));
    const right = h("div", {});
    const cols = h("canvas", { class: "cols" });
    const cv = h("canvas", { "data-testid": "matrix-canvas", "data-layer": m.layer, "data-columns": order.join(",") });
    right.append(cols, cv);
    fill(body, h("div", { class: "mx", "data-testid": "matrix", "data-layer": m.layer }, labels, right));
    const width = Math.max(80, right.clientWidth || body.clientWidth - 160);
    const rowH = 17;
    const cw = width / Math.max(1, order.length);
    const ctx = hiDpi(cv, width, rowH * rows.length);
    rows.forEach((r, i) => {
      const vals = r.values || [];
      for (let j = 0; j < order.length; j++) {
        ctx.fillStyle = css(cell(vals[j], j));
        ctx.fillRect(j * cw, i * rowH, Math.ceil(cw + 0.5), rowH - 1);
      }
    });
    const sel = order.indexOf(S.channel);
    if (sel >= 0) {
      ctx.strokeStyle = "#ff7a00";
      ctx.lineWidth = 2;
      ctx.strokeRect(sel * cw + 1, 1, Math.max(2, cw - 2), rowH * rows.length - 2);
    }
    // Column labels: every channel when there is room, else a readable subset.
    const cctx = hiDpi(cols, width, 22);
    cctx.font = "10px system-ui, sans-serif";
    cctx.fillStyle = "#6a7384";
    cctx.textAlign = "center";
    const every = Math.max(1, Math.ceil(26 / cw));
    for (let j = 0; j < order.length; j += every) cctx.fillText(String(order[j]), j * cw + cw / 2, 16);
    if (sel >= 0) {
      cctx.fillStyle = "#ff7a00";
      cctx.font = "bold 10px system-ui, sans-serif";
      cctx.fillText(String(order[sel]), sel * cw + cw / 2, 8);
    }
    const at = (ev) => {
      const r = cv.getBoundingClientRect();
      const j = Math.floor((ev.clientX - r.left) / cw), i = Math.floor((ev.clientY - r.top) / rowH);
      return j >= 0 && j < order.length && i >= 0 && i < rows.length ? [i, j] : null;
    };
    cv.addEventListener("mousemove", (ev) => {
      const p = at(ev);
      tip(ev, p ? rows[p[0]].name + " · channel " + order[p[1]] + " · " + fmt(rows[p[0]].values[p[1]]) : null);
    });
    cv.addEventListener("mouseleave", () => tip(null, null));
    cv.addEventListener("click", (ev) => {
      const p = at(ev);
      if (p) selectChannel(order[p[1]]);
    });
  }

  // A subset's instances marked in the projection (a second click clears it).
  async function highlightSubset(id) {
    if (S.highlight === id) {
      S.highlight = null;
      S.selection = null;
    } else {
      const t = ticket("highlight");
      try {
        const indices = [];
        for (let offset = 0; ; offset += 1000) {
          const page = await get("/api/instances", { subset: id, offset, limit: 1000 });
          indices.push(...page.items.map((it) => it.index));
          if (offset + 1000 >= page.total) break;
        }
        if (stale("highlight", t)) return;
        S.highlight = id;
        S.selection = indices;
      } catch (err) {
        if (proj.msg) showProblem(proj.msg, err, "highlight-error");
        return;
      }
    }
    drawMatrix();
    drawProjection();
    if (proj.msg && S.highlight) {
      const name = (S.subsets.find((x) => x.id === id) || { name: id }).name;
      fill(proj.msg, h("div", { class: "note", "data-testid": "highlight", text: "showing “" + name + "” (" + S.selection.length + " instances)" }));
    }
  }

  // ---------------------------------------------------------------- projection view
  async function loadProjection() {
    const t = ticket("projection");
    setViewState("projection", "loading");
    if (S.projMethod === "umap" && proj.msg) {
      fill(proj.msg, h("span", { class: "muted", "data-testid": "projection-wait",
        text: "computing UMAP on the server (the first one of a layer takes seconds)…" }));
    }
    try {
      const p = await get("/api/projection", { layer: S.layer, method: S.projMethod });
      if (stale("projection", t)) return;
      S.projection = p;
      if (!S.highlight) S.selection = null;
      layoutProjection();
      setViewState("projection", "ready");
    } catch (err) {
      if (stale("projection", t)) return;
      S.projection = null;
      setViewState("projection", showProblem($("projection-body"), err, "projection-error"));
    }
  }

  const proj = { canvas: null, overlay: null, screen: null, w: 0, h: 0, drag: null, msg: null };

  function layoutProjection() {
    const body = $("projection-body");
    const p = S.projection;
    if (!p) return;
    const canvas = h("canvas", { "data-testid": "projection-canvas", "data-points": (p.points || []).length });
    const overlay = h("canvas", { class: "overlay", "data-testid": "projection-overlay" });
    const wrap = h("div", { class: "proj-wrap" }, canvas, overlay);
    const ev = p.explained_variance;
    const axisName = p.method === "pca" ? "PC" : "UMAP ";
    const axis = h("div", { class: "axis" },
      h("span", { text: axisName + "1" + (ev ? " (" + (100 * ev[0]).toFixed(1) + "% var.)" : "") + " →" }),
      h("span", { text: axisName + "2" + (ev ? " (" + (100 * ev[1]).toFixed(1) + "% var.)" : "") + " ↑" }));
    proj.msg = h("div", { class: "msg", "data-testid": "projection-msg" });
    const legend = h("div", { class: "proj-legend", "data-testid": "projection-legend" });
    fill(body, wrap, axis, legend, proj.msg);
    proj.canvas = canvas;
    proj.overlay = overlay;
    proj.legend = legend;
    const w = Math.max(160, wrap.clientWidth || body.clientWidth);
    const hgt = Math.round(Math.min(360, Math.max(200, w * 0.62)));
    proj.w = w;
    proj.h = hgt;
    hiDpi(canvas, w, hgt);
    hiDpi(overlay, w, hgt);
    // Screen positions, with a margin; y up.
    const pts = p.points || [];
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of pts) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    const pad = 10, sx = (w - 2 * pad) / ((x1 - x0) || 1), sy = (hgt - 2 * pad) / ((y1 - y0) || 1);
    proj.screen = new Float32Array(pts.length * 2);
    pts.forEach(([x, y], i) => {
      proj.screen[2 * i] = pad + (x - x0) * sx;
      proj.screen[2 * i + 1] = hgt - pad - (y - y0) * sy;
    });
    bindProjection(overlay);
    drawProjection();
  }

  function pointColor(i) {
    const p = S.projection;
    if (S.colorBy === "correct") return p.correct && p.correct[i] === false ? "#c23b32" : "#1f8a4c";
    const c = S.colorBy === "prediction" ? p.prediction[i] : p.label[i];
    return c === null || c === undefined || c < 0 ? "#999" : categorical(c);
  }

  function drawProjection() {
    const p = S.projection;
    if (!p || !proj.canvas || !proj.screen) return;
    const ctx = proj.canvas.getContext("2d");
    ctx.clearRect(0, 0, proj.w, proj.h);
    const n = proj.screen.length / 2;
    const r = n > 3000 ? 1.6 : n > 800 ? 2.3 : 3.2;
    // With a selection, the other points fade so the selected ones stand out.
    const selected = S.selection && S.selection.length ? new Set(S.selection) : null;
    const layers = selected ? [[0.18, (i) => !selected.has(i)], [0.95, (i) => selected.has(i)]] : [[0.8, () => true]];
    for (const [alpha, keep] of layers) {
      ctx.globalAlpha = alpha;
      // Batch by colour: fewer state changes for thousands of points.
      const groups = new Map();
      for (let i = 0; i < n; i++) {
        if (!keep(i)) continue;
        const c = pointColor(i);
        if (!groups.has(c)) groups.set(c, []);
        groups.get(c).push(i);
      }
      for (const [c, idx] of groups) {
        ctx.fillStyle = c;
        ctx.beginPath();
        for (const i of idx) {
          ctx.moveTo(proj.screen[2 * i] + r, proj.screen[2 * i + 1]);
          ctx.arc(proj.screen[2 * i], proj.screen[2 * i + 1], r, 0, 2 * Math.PI);
        }
        ctx.fill();
      }
    }
    ctx.globalAlpha = 1;
    if (S.index < n) {
      ctx.strokeStyle = "#ff7a00";
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.arc(proj.screen[2 * S.index], proj.screen[2 * S.index + 1], r + 5, 0, 2 * Math.PI);
      ctx.stroke();
    }
    // Legend with counts.
    const counts = new Map();
    const key = S.colorBy === "correct" ? (i) => (p.correct && p.correct[i] === false ? 1 : 0)
      : S.colorBy === "prediction" ? (i) => p.prediction[i] : (i) => p.label[i];
    for (let i = 0; i < n; i++) counts.set(key(i), (counts.get(key(i)) || 0) + 1);
    const entries = [...counts.keys()].sort((a, b) => a - b);
    fill(proj.legend, h("span", { class: "muted", text: S.colorBy === "correct" ? "" : S.colorBy + ":" }),
      ...entries.map((k) => {
        const color = S.colorBy === "correct" ? (k ? "#c23b32" : "#1f8a4c") : k < 0 || k === null ? "#999" : categorical(k);
        const name = S.colorBy === "correct" ? (k ? "wrong" : "correct") : k < 0 || k === null ? "unlabelled" : className(k);
        return h("span", { "data-testid": "legend-item" }, h("span", { class: "sw", style: "background:" + color }),
          name + " (" + counts.get(k) + ")");
      }));
  }

  function bindProjection(overlay) {
    const pos = (ev) => {
      const r = overlay.getBoundingClientRect();
      return [ev.clientX - r.left, ev.clientY - r.top];
    };
    const octx = overlay.getContext("2d");
    overlay.addEventListener("mousedown", (ev) => {
      ev.preventDefault();
      proj.drag = { start: pos(ev), path: [pos(ev)], lasso: S.mode === "lasso" || ev.shiftKey };
    });
    overlay.addEventListener("mousemove", (ev) => {
      const [x, y] = pos(ev);
      if (!proj.drag) {
        const i = nearest(x, y, 8);
        const p = S.projection;
        tip(ev, i === null ? null : "#" + i + " · label " + className(p.label[i]) + " · predicted " + className(p.prediction[i]));
        return;
      }
      tip(null, null);
      proj.drag.path.push([x, y]);
      octx.clearRect(0, 0, proj.w, proj.h);
      octx.strokeStyle = "#2f6fde";
      octx.fillStyle = "rgba(47,111,222,.12)";
      octx.lineWidth = 1.5;
      octx.beginPath();
      if (proj.drag.lasso) {
        proj.drag.path.forEach(([px, py], k) => (k ? octx.lineTo(px, py) : octx.moveTo(px, py)));
        octx.closePath();
      } else {
        const [sx, sy] = proj.drag.start;
        octx.rect(sx, sy, x - sx, y - sy);
      }
      octx.fill();
      octx.stroke();
    });
    overlay.addEventListener("mouseleave", () => tip(null, null));
    const finish = (ev) => {
      if (!proj.drag) return;
      const d = proj.drag;
      proj.drag = null;
      octx.clearRect(0, 0, proj.w, proj.h);
      const [x, y] = pos(ev);
      d.path.push([x, y]);
      // A lasso may end where it started: the drag's reach, not its end, tells it from a click.
      const moved = Math.max(...d.path.map(([px, py]) => Math.hypot(px - d.start[0], py - d.start[1])));
      if (moved < 4) {
        const i = nearest(x, y, 10);
        if (i !== null) selectIndex(i);
        return;
      }
      const inside = d.lasso ? inPolygon(d.path) : inBox(d.start, [x, y]);
      const picked = [];
      const n = proj.screen.length / 2;
      for (let i = 0; i < n; i++) if (inside(proj.screen[2 * i], proj.screen[2 * i + 1])) picked.push(i);
      S.selection = picked;
      S.highlight = null;
      drawProjection();
      if (picked.length) createSubset(picked);
      else fill(proj.msg, h("span", { class: "muted", text: "no instance in the selection" }));
    };
    overlay.addEventListener("mouseup", finish);
    window.addEventListener("mouseup", (ev) => { if (proj.drag && proj.overlay === overlay) finish(ev); });
  }

  function nearest(x, y, radius) {
    if (!proj.screen) return null;
    let best = null, bd = radius * radius;
    const n = proj.screen.length / 2;
    for (let i = 0; i < n; i++) {
      const dx = proj.screen[2 * i] - x, dy = proj.screen[2 * i + 1] - y, d = dx * dx + dy * dy;
      if (d <= bd) { bd = d; best = i; }
    }
    return best;
  }

  function inBox(a, b) {
    const x0 = Math.min(a[0], b[0]), x1 = Math.max(a[0], b[0]), y0 = Math.min(a[1], b[1]), y1 = Math.max(a[1], b[1]);
    return (x, y) => x >= x0 && x <= x1 && y >= y0 && y <= y1;
  }

  function inPolygon(poly) {
    return (x, y) => {
      let inside = false;
      for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
        const [xi, yi] = poly[i], [xj, yj] = poly[j];
        if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
      }
      return inside;
    };
  }

  async function createSubset(indices) {
    const taken = new Set(S.subsets.map((s) => s.name));
    do { S.userCount += 1; } while (taken.has("selection " + S.userCount));
    const name = "selection " + S.userCount;
    const msg = proj.msg;
    fill(msg, h("span", { class: "muted", text: "saving " + indices.length + " instances as “" + name + "”…" }));
    try {
      const subset = await post("/api/subsets", { name, indices });
      S.subsets = S.subsets.filter((s) => s.id !== subset.id).concat([subset]);
      fillAB();
      // Every matrix now has one more row: drop the cached ones.
      for (const k of [...cache.keys()]) if (k.startsWith("GET /api/matrix")) cache.delete(k);
      fill(msg, h("div", { class: "note", "data-testid": "subset-created", "data-subset": subset.id },
        "“" + subset.name + "” (" + subset.size + " instances) is now a row of the activation matrix."));
      await loadMatrix();
    } catch (err) {
      if (err instanceof ApiError && err.missing) {
        fill(msg, h("div", { class: "missing", "data-testid": "subset-missing",
          text: indices.length + " instances selected; new subsets need the running server (not part of this export)." }));
      } else {
        fill(msg, h("div", { class: "error", "data-testid": "subset-error", text: String(err.message || err) }));
      }
    }
  }

  // ---------------------------------------------------------------- instance view
  async function loadInstance() {
    const t = ticket("instance");
    setViewState("instance", "loading");
    try {
      const inst = await get("/api/instance", { index: S.index });
      if (stale("instance", t)) return;
      S.instance = inst;
      renderInstance();
      setViewState("instance", "ready");
      for (const panel of panels) panel.onInstance();
    } catch (err) {
      if (stale("instance", t)) return;
      S.instance = null;
      setViewState("instance", showProblem($("instance-body"), err, "instance-error"));
      for (const panel of panels) panel.clear();
    }
  }

  function renderInstance() {
    const inst = S.instance;
    const hasLabel = inst.label !== null && inst.label !== undefined && inst.label >= 0;
    const correct = hasLabel ? inst.label === inst.prediction : null;
    const topP = Math.max(1e-9, ...(inst.top5 || []).map((t) => t.p));
    fill($("instance-body"), h("div", { class: "inst", "data-testid": "instance", "data-index": inst.index },
      instanceInput(inst),
      h("div", { class: "facts" },
        h("div", { class: "lab" }, "#" + inst.index + " · label ",
          h("b", { "data-testid": "instance-label", text: hasLabel ? (inst.label_name || className(inst.label)) : "none" }),
          " · predicted ", h("b", { text: className(inst.prediction) }), " ",
          correct === null ? null : h("span", { class: correct ? "ok" : "wrong", text: correct ? "✓ correct" : "✗ wrong" })),
        h("div", { class: "top5", "data-testid": "top5" }, (inst.top5 || []).map((t) =>
          h("div", { class: "bar" }, h("span", { class: "nm", title: t.name, text: t.name || className(t.class) }),
            h("span", { class: "track" }, h("span", { class: "fill", style: "display:block;width:" + (100 * t.p / topP).toFixed(1) + "%" })),
            h("span", { class: "p", text: (100 * t.p).toFixed(1) + "%" })))))));
  }

  // The input as its modality shows it: an image, its tokens, its features or a series plot.
  function instanceInput(inst) {
    const kind = inst.modality || "image";
    if (kind === "text") {
      const ids = inst.token_ids || [];
      return h("div", { class: "tokens", "data-testid": "instance-tokens" },
        (inst.tokens || []).map((t, i) => h("span", { class: "tok", title: "id " + ids[i], text: t })));
    }
    if (kind === "tabular") {
      return h("table", { class: "features", "data-testid": "instance-features" },
        h("tbody", {}, (inst.features || []).map((f) =>
          h("tr", {}, h("th", { text: f.name }), h("td", { text: fmt(f.value) })))));
    }
    if (kind === "series") {
      return h("img", { class: "series", src: inst.image, alt: "series of instance " + inst.index, "data-testid": "instance-series" });
    }
    return h("img", { class: "input " + pxClass(), src: inst.image, alt: "instance " + inst.index, "data-testid": "instance-image" });
  }

  // An attribution result as its modality shows it (text: tokens on their colours; table:
  // bars per feature, largest |attribution| first; series: the shaded plot; image: the
  // overlay and heatmap). Everything from the server is written as text, never as HTML.
  function attributionView(result, slot) {
    const kind = result.modality || "image";
    if (kind === "text") {
      return h("div", { class: "tokens", "data-testid": "attribution-tokens-" + slot },
        (result.tokens || []).map((t) => h("span", { class: "tok", "data-testid": "token", "data-score": String(t.score),
          title: (t.score >= 0 ? "+" : "") + Number(t.score).toPrecision(4), style: "background:" + safeColor(t.color), text: t.token })));
    }
    if (kind === "tabular") {
      const rows = result.features || [];
      const m = Math.max(1e-12, ...rows.map((f) => Math.abs(f.attribution)));
      return h("div", { class: "fbars", "data-testid": "attribution-bars-" + slot }, rows.map((f) => {
        const w = (50 * Math.abs(f.attribution) / m).toFixed(1) + "%";
        const at = f.attribution >= 0 ? "left:50%;width:" + w : "right:50%;width:" + w;
        return h("div", { class: "fbar", "data-testid": "feature-bar", "data-feature": f.name, "data-attribution": String(f.attribution) },
          h("span", { class: "nm", title: f.name + " = " + f.value, text: f.name + " = " + fmt(f.value) }),
          h("span", { class: "track" }, h("span", { class: "fill", style: at + ";background:" + safeColor(f.color) })),
          h("span", { class: "v", text: (f.attribution >= 0 ? "+" : "") + fmt(f.attribution) }));
      }));
    }
    if (kind === "series") {
      return h("img", { class: "series", src: result.image, alt: "series shaded by its attribution", "data-testid": "attribution-image-" + slot });
    }
    return h("div", { class: "res" },
      h("figure", { style: "margin:0" }, h("img", { src: result.image, class: pxClass(), alt: "attribution overlay", "data-testid": "attribution-image-" + slot }),
        h("figcaption", { class: "cap", text: "overlay" })),
      result.heatmap ? h("figure", { style: "margin:0" }, h("img", { src: result.heatmap, class: pxClass(), alt: "attribution heatmap", "data-testid": "attribution-heatmap-" + slot }),
        h("figcaption", { class: "cap", text: "heatmap" })) : null);
  }

  function attributionLegend(result, slot) {
    if ((result.modality || "image") === "image") return colorbar(makeScale(result.vmin, result.vmax), "attribution", "attribution-colorbar-" + slot);
    return h("div", { class: "muted", "data-testid": "attribution-legend-" + slot,
      text: "red raises the target, blue lowers it · from " + fmt(result.vmin) + " to " + fmt(result.vmax) });
  }

  // One attribution panel: method picker, its options, target, Explain, progress, result.
  class ExplainPanel {
    constructor(slot, preferred) {
      this.slot = slot;
      this.preferred = preferred;
      this.auto = false;
      this.ticket = 0;
      this.el = h("div", { class: "xp", "data-testid": "explain-" + slot });
    }

    build() {
      const methods = S.session.methods || [];
      const names = methods.map((m) => m.name);
      const pick = this.preferred.find((n) => names.includes(n)) || names[Math.min(this.slot, names.length - 1)];
      this.method = h("select", { "data-testid": "method-select-" + this.slot, "aria-label": "method" },
        methods.map((m) => h("option", { value: m.name, text: m.name + (m.family ? " · " + m.family : ""), title: m.summary || "" })));
      if (pick) this.method.value = pick;
      this.opts = h("div", { class: "opts", "data-testid": "method-options-" + this.slot });
      this.target = h("select", { "data-testid": "target-select-" + this.slot, "aria-label": "target" },
        h("option", { value: "predicted", text: "predicted class" }), h("option", { value: "label", text: "true label" }),
        classes().map((c, i) => h("option", { value: String(i), text: "class " + c })));
      this.button = h("button", { class: "primary", type: "button", "data-testid": "explain-button-" + this.slot, text: "Explain",
        onclick: () => { this.auto = true; this.run(); } });
      this.bar = h("div", { class: "progress", hidden: true, "data-testid": "explain-progress-" + this.slot }, h("div"));
      this.out = h("div", { class: "res-wrap" });
      this.summary = h("div", { class: "muted" });
      this.method.addEventListener("change", () => { this.renderOptions(); this.summaryText(); this.clear(); });
      this.target.addEventListener("change", () => this.clear());
      fill(this.el, 
        h("div", { class: "controls" }, this.method, this.target, this.button), this.summary, this.opts, this.bar, this.out);
      this.renderOptions();
      this.summaryText();
    }

    summaryText() {
      const m = (S.session.methods || []).find((x) => x.name === this.method.value);
      this.summary.textContent = m && m.summary ? m.summary : "";
    }

    renderOptions() {
      const m = (S.session.methods || []).find((x) => x.name === this.method.value);
      const fields = (m && m.options) || [];
      this.fields = fields;
      fill(this.opts, ...fields.map((o) => {
        const kind = String(o.kind || "").toLowerCase();
        let input;
        if (kind === "bool" || typeof o.default === "boolean") {
          input = h("input", { type: "checkbox", name: o.name });
          input.checked = !!o.default;
        } else if (Array.isArray(o.choices) && o.choices.length) {
          input = h("select", { name: o.name }, o.choices.map((c) => h("option", { value: String(c), text: String(c) })));
          input.value = String(o.default);
        } else if (kind === "int" || kind === "float" || typeof o.default === "number") {
          input = h("input", { type: "number", name: o.name, step: kind === "int" ? "1" : "any" });
          input.value = o.default === null || o.default === undefined ? "" : String(o.default);
        } else {
          input = h("input", { type: "text", name: o.name, placeholder: o.default === null ? "none" : "" });
          input.value = o.default === null || o.default === undefined ? "" : typeof o.default === "object" ? JSON.stringify(o.default) : String(o.default);
        }
        input.dataset.testid = "option-" + this.slot + "-" + o.name;
        input.setAttribute("data-testid", "option-" + this.slot + "-" + o.name);
        input.addEventListener("change", () => this.clear());
        return h("label", { title: kind ? o.name + " (" + kind + ")" : o.name }, o.name + " ", input);
      }));
    }

    // Options that differ from the defaults (so defaults stay the server's business).
    options() {
      const out = {};
      for (const o of this.fields || []) {
        const input = this.opts.querySelector("[name='" + o.name + "']");
        if (!input) continue;
        const kind = String(o.kind || "").toLowerCase();
        let v;
        if (input.type === "checkbox") v = input.checked;
        else if (input.type === "number") v = input.value === "" ? null : kind === "int" ? parseInt(input.value, 10) : parseFloat(input.value);
        else {
          v = input.value === "" ? null : input.value;
          if (v !== null && typeof o.default !== "string") { try { v = JSON.parse(v); } catch (e) { /* keep text */ } }
        }
        if (stableJson(v) !== stableJson(o.default === undefined ? null : o.default)) out[o.name] = v;
      }
      return out;
    }

    clear() {
      this.ticket += 1;
      this.bar.hidden = true;
      fill(this.out, h("div", { class: "muted", text: "Choose a method and press Explain." }));
      this.el.dataset.state = "idle";
    }

    onInstance() {
      if (this.auto) this.run(); else this.clear();
    }

    async run() {
      if (!S.instance) return;
      const t = ++this.ticket;
      const tv = this.target.value;
      const body = { kind: "attribution", index: S.index, method: this.method.value, options: this.options(),
        target: tv === "predicted" || tv === "label" ? tv : parseInt(tv, 10) };
      this.el.dataset.state = "running";
      this.bar.hidden = false;
      this.bar.firstChild.style.width = "0%";
      fill(this.out, h("div", { class: "muted", "data-testid": "explain-status-" + this.slot, text: "computing " + body.method + "…" }));
      const started = performance.now();
      try {
        const result = await runJob(body, (p, message) => {
          if (t !== this.ticket) return;
          this.bar.firstChild.style.width = (100 * p).toFixed(0) + "%";
          this.out.firstChild.textContent = "computing " + body.method + "… " + (100 * p).toFixed(0) + "%" + (message ? " · " + message : "");
        }, () => t !== this.ticket);
        if (t !== this.ticket || !result) return;
        this.bar.hidden = true;
        const seconds = result.seconds !== undefined ? result.seconds : (performance.now() - started) / 1000;
        fill(this.out, attributionView(result, this.slot), attributionLegend(result, this.slot),
        h("div", { class: "muted" }, body.method + " · target " + String(result.target !== undefined ? result.target : body.target) + " · " +
          fmt(seconds) + " s" + (result.cached ? " · cached" : "")));
        this.el.dataset.state = "done";
      } catch (err) {
        if (t !== this.ticket) return;
        this.bar.hidden = true;
        this.el.dataset.state = showProblem(this.out, err, "explain-error-" + this.slot);
      }
    }
  }

  const panels = [new ExplainPanel(0, ["saliency", "gradient", "input_x_gradient"]),
    new ExplainPanel(1, ["integrated_gradients", "grad_cam", "smoothgrad"])];

  // ---------------------------------------------------------------- channel view
  // The channel and building-blocks views show maps on image inputs only.
  function imageOnly(view, what) {
    ticket(view);
    fill($(view + "-body"), h("div", { class: "muted na", "data-testid": view + "-na",
      text: what + " need image inputs (a channel's map on the input); this data set is " + modality() +
        ": the activation matrix, the projection and the instance view show it." }));
    setViewState(view, "ready");
  }

  async function loadChannel() {
    if (S.session && modality() !== "image") { imageOnly("channel", "Channel views"); return; }
    if (S.layer === null || S.channel === null) return;
    const t = ticket("channel");
    setViewState("channel", "loading");
    try {
      const c = await get("/api/channel", { layer: S.layer, channel: S.channel, index: S.index });
      if (stale("channel", t)) return;
      await renderChannel(c, t);
      if (stale("channel", t)) return;
      setViewState("channel", "ready");
    } catch (err) {
      if (stale("channel", t)) return;
      setViewState("channel", showProblem($("channel-body"), err, "channel-error"));
    }
  }

  async function renderChannel(c, t) {
    const tiles = (c.top || []).map((item) => {
      const cv = h("canvas", { width: 84, height: 84 });
      const tile = h("div", { class: "tile" + (item.index === S.index ? " current" : ""), "data-testid": "top9-tile", "data-index": item.index,
        title: "instance " + item.index + " · activation " + fmt(item.value), onclick: () => selectIndex(item.index) },
      cv, h("div", { text: "#" + item.index + " · " + fmt(item.value) }));
      tile._draw = async () => {
        const img = await loadImage(item.image);
        const s = 168;
        cv.width = s; cv.height = s;
        const ctx = cv.getContext("2d");
        ctx.imageSmoothingEnabled = !pxClass();
        ctx.drawImage(img, 0, 0, s, s);
        const shape = c.input_size || inputHW(img);
        if (item.box && item.box.length === 4) {
          const [y0, x0, y1, x1] = item.box;
          const fy = s / shape[0], fx = s / shape[1];
          ctx.strokeStyle = "#ff7a00";
          ctx.lineWidth = 3;
          ctx.strokeRect(x0 * fx + 1.5, y0 * fy + 1.5, Math.max(3, (x1 - x0) * fx - 3), Math.max(3, (y1 - y0) * fy - 3));
        }
      };
      return tile;
    });
    const fvBox = h("div", { class: "fv", "data-testid": "featurevis" });
    renderFeaturevis(fvBox, c, t);
    fill($("channel-body"), 
      h("div", { class: "muted", style: "margin-bottom:4px" }, "layer ", h("b", { text: c.layer }), " · channel ",
        h("b", { "data-testid": "channel-number", text: String(c.channel) }), " · instance #" + S.index),
      h("div", { class: "ch", "data-testid": "channel", "data-channel": c.channel, "data-layer": c.layer },
        h("div", {},
          h("h3", { text: "activation on this input" }),
          h("div", { class: "amap" }, c.activation_map ? h("img", { src: c.activation_map, class: pxClass(), alt: "activation map", "data-testid": "activation-map" })
            : h("div", { class: "muted", text: "no spatial map for this layer" })),
          c.value_range ? h("div", { class: "muted", "data-testid": "activation-range",
            text: "channel " + c.channel + ": " + fmt(c.value_range[0]) + " → " + fmt(c.value_range[1]) + " (dark → bright)" }) : null,
          h("h3", { text: "feature visualization" }), fvBox),
        h("div", {}, h("h3", { text: "top-9 instances (activating region outlined)" }),
          h("div", { class: "top9", "data-testid": "top9" }, tiles))));
    await Promise.all(tiles.map((tile) => tile._draw().catch(() => null)));
  }

  function inputHW(img) {
    const s = (S.session.model.input_shape || []).slice(-3);
    if (s.length === 3) {
      const channelsLast = s[2] <= 4 && s[0] > 4;
      return channelsLast ? [s[0], s[1]] : [s[1], s[2]];
    }
    return [img.naturalHeight, img.naturalWidth];
  }

  function renderFeaturevis(box, c, t) {
    const fv = c.featurevis || { status: "missing" };
    const est = S.session.featurevis || {};
    if (fv.status === "unavailable" || est.available === false) {
      fill(box, h("div", { class: "muted", text: "feature visualization needs an image model" }));
      return;
    }
    if (fv.status === "ready" && fv.image) {
      const steps = Array.isArray(fv.steps) ? fv.steps : null;
      const preview = fv.preview || (typeof fv.steps === "number" && est.steps && fv.steps < est.steps);
      fill(box, preview ? h("div", { class: "missing", "data-testid": "featurevis-preview",
        text: "preview: " + fv.steps + " of " + (fv.default_steps || est.steps) + " steps, not yet the feature" }) : null,
      h("img", { src: fv.image, alt: "feature visualization", "data-testid": "featurevis-image" }),
        h("div", { class: "muted", text: (steps ? steps.length + " snapshots" : (fv.steps || est.steps || "?") + " steps") +
          (fv.seconds !== undefined ? " · " + fmt(fv.seconds) + " s to compute" : "") }),
        steps ? h("div", { class: "steps", "data-testid": "featurevis-steps" }, steps.map((s) =>
          h("figure", {}, h("img", { src: s.image || s, alt: "" }), h("figcaption", { text: s.step !== undefined ? "step " + s.step : "" })))) : null);
      return;
    }
    const msg = h("div", { class: "muted", text: "not computed yet" + (est.steps ? " (" + est.steps + " steps" +
      (est.seconds_per_channel_estimate ? ", about " + fmt(est.seconds_per_channel_estimate) + " s on this CPU" : "") + ")" : "") });
    const bar = h("div", { class: "progress", hidden: true }, h("div"));
    const button = h("button", { type: "button", "data-testid": "featurevis-compute", text: "compute" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      bar.hidden = false;
      try {
        await runJob({ kind: "featurevis", layer: c.layer, channel: c.channel }, (p, m) => {
          bar.firstChild.style.width = (100 * p).toFixed(0) + "%";
          msg.textContent = "optimizing… " + (100 * p).toFixed(0) + "%" + (m ? " · " + m : "");
        });
        if (stale("channel", t)) return;
        const fresh = await get("/api/channel", { layer: c.layer, channel: c.channel, index: S.index }, { fresh: true });
        renderFeaturevis(box, fresh, t);
        // Later views (dictionary, groups) show it too.
        for (const k of [...cache.keys()]) if (!k.startsWith("GET /api/matrix") && !k.startsWith("GET /api/projection")) cache.delete(k);
      } catch (err) {
        button.disabled = false;
        bar.hidden = true;
        fill(msg, h("span", { class: err.missing ? "missing" : "error", text: err.missing ? "Not part of this export." : err.message }));
      }
    });
    fill(box, h("div", { class: "ph muted", style: "width:128px;height:128px;border:1px dashed #ccd;display:flex;align-items:center;justify-content:center", text: "no image" }),
      msg, bar, EXPORT ? null : button);
  }

  // ---------------------------------------------------------------- building blocks view
  function loadBlocks() {
    if (!S.session || S.layer === null) return;
    if (modality() !== "image") { imageOnly("blocks", "Building blocks"); ticket("groups"); return; }
    const body = $("blocks-body");
    const hw = layerHW(S.layer);
    if (!hw) {
      ticket("groups");
      fill(body, h("div", { class: "muted", text: "Layer " + S.layer + " has no spatial positions; choose a convolutional layer for building blocks." }));
      setViewState("blocks", "ready");
      return;
    }
    const pickCanvas = h("canvas", { width: 320, height: 320, "data-testid": "blocks-input", title: "click a position" });
    const dict = h("div", { class: "dict", "data-testid": "dictionary" });
    const groups = h("div", { "data-testid": "groups-wrap" });
    const kInput = h("input", { type: "number", min: "1", max: "12", value: String(S.k), "data-testid": "groups-k" });
    kInput.addEventListener("change", () => { S.k = Math.max(1, Math.min(12, parseInt(kInput.value, 10) || 3)); loadGroups(groups, flowWrap); });
    const later = S.session.layers.slice(S.session.layers.findIndex((l) => l.name === S.layer) + 1).filter((l) => layerHW(l.name));
    // Default: the last spatial layer, the farthest flow the model has.
    if (!later.some((l) => l.name === S.flowTo)) S.flowTo = later.length ? later[later.length - 1].name : null;
    const toSel = h("select", { "data-testid": "flow-to" }, later.map((l) => h("option", { value: l.name, text: l.name })));
    if (S.flowTo) toSel.value = S.flowTo;
    const flowWrap = h("div", { class: "flow", "data-testid": "flow" });
    const flowBtn = h("button", { type: "button", "data-testid": "flow-button", text: "show flow", disabled: later.length ? null : true });
    toSel.addEventListener("change", () => { S.flowTo = toSel.value; loadFlow(flowWrap); });
    flowBtn.addEventListener("click", () => loadFlow(flowWrap));
    fill(body, h("div", { class: "bb" },
      h("div", {}, h("div", { class: "pick" }, pickCanvas),
        h("div", { class: "muted", style: "max-width:160px", text: "Click a position: the channels that fire there (" + hw[0] + "×" + hw[1] + " positions)." })),
      h("div", {}, h("h3", { text: "semantic dictionary" }), dict)),
    h("h3", {}, "neuron groups (NMF) · k ", kInput),
    groups,
    h("h3", {}, "group flow to ", later.length ? toSel : h("span", { class: "muted", text: "(no later spatial layer)" }), " ", flowBtn),
    flowWrap);
    fill(dict, h("span", { class: "muted", text: "click a position on the input" }));
    drawPick(pickCanvas, hw);
    pickCanvas.addEventListener("click", (ev) => {
      const r = pickCanvas.getBoundingClientRect();
      const y = Math.min(hw[0] - 1, Math.floor(((ev.clientY - r.top) / r.height) * hw[0]));
      const x = Math.min(hw[1] - 1, Math.floor(((ev.clientX - r.left) / r.width) * hw[1]));
      S.dictPos = [y, x];
      drawPick(pickCanvas, hw);
      loadDictionary(dict);
    });
    return loadGroups(groups, flowWrap);
  }

  async function drawPick(cv, hw) {
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, cv.width, cv.height);
    if (S.instance && S.instance.index === S.index) {
      try {
        const img = await loadImage(S.instance.image);
        ctx.imageSmoothingEnabled = !pxClass();
        ctx.drawImage(img, 0, 0, cv.width, cv.height);
      } catch (e) { /* an empty picker still works */ }
    } else {
      const t = ticket("pick");
      try {
        const inst = await get("/api/instance", { index: S.index });
        if (stale("pick", t)) return;
        const img = await loadImage(inst.image);
        ctx.imageSmoothingEnabled = !pxClass();
        ctx.drawImage(img, 0, 0, cv.width, cv.height);
      } catch (e) { /* shown in the instance view */ }
    }
    const gy = cv.height / hw[0], gx = cv.width / hw[1];
    if (hw[0] <= 32) {
      ctx.strokeStyle = "rgba(255,255,255,.18)";
      ctx.lineWidth = 1;
      for (let i = 1; i < hw[0]; i++) { ctx.beginPath(); ctx.moveTo(0, i * gy); ctx.lineTo(cv.width, i * gy); ctx.stroke(); }
      for (let j = 1; j < hw[1]; j++) { ctx.beginPath(); ctx.moveTo(j * gx, 0); ctx.lineTo(j * gx, cv.height); ctx.stroke(); }
    }
    if (S.dictPos) {
      ctx.strokeStyle = "#ff7a00";
      ctx.lineWidth = 4;
      ctx.strokeRect(S.dictPos[1] * gx + 2, S.dictPos[0] * gy + 2, gx - 4, gy - 4);
    }
  }

  function fvTile(src, caption) {
    return src ? h("img", { src, alt: caption || "feature visualization" })
      : h("div", { class: "ph", text: "feature vis. not computed" });
  }

  // A button computing the missing feature visualizations of `units` (featurevis job
  // bodies) with one progress bar, then calling `done` (which reloads the view).
  const fvTried = new Set();
  function featurevisButton(bodies, testid, done) {
    if (!bodies.length || EXPORT) return null;
    const id = stableJson(bodies);
    if (fvTried.has(id)) {
      return h("div", { class: "missing", "data-testid": testid + "-missing",
        text: "computed, but the server still lists these as missing" });
    }
    const est = (S.session.featurevis || {}).seconds_per_channel_estimate;
    const bar = h("div", { class: "progress", hidden: true }, h("div"));
    const button = h("button", { type: "button", "data-testid": testid,
      text: "compute " + bodies.length + " feature vis." + (est ? " (≈ " + fmt(est * bodies.length) + " s)" : "") });
    button.addEventListener("click", async () => {
      button.disabled = true;
      bar.hidden = false;
      const parts = bodies.map(() => 0);
      const show = () => { bar.firstChild.style.width = (100 * parts.reduce((a, b) => a + b, 0) / parts.length).toFixed(0) + "%"; };
      try {
        await Promise.all(bodies.map((b, i) => runJob(b, (p) => { parts[i] = p; show(); })));
        fvTried.add(id);
        for (const k of [...cache.keys()]) if (/^GET \/api\/(dictionary|groups|channel)/.test(k)) cache.delete(k);
        done();
      } catch (err) {
        bar.hidden = true;
        button.replaceWith(h("span", { class: "error", text: err.message }));
      }
    });
    return h("div", { class: "fv-compute" }, button, bar);
  }

  const fvMissing = (fv) => fv && typeof fv === "object" && fv.status === "missing";

  function fvImage(fv) {
    return typeof fv === "string" ? fv : fv && fv.status === "ready" ? fv.image : null;
  }

  async function loadDictionary(box) {
    const t = ticket("dictionary");
    box.dataset.state = "loading";
    fill(box, h("span", { class: "muted", text: "loading…" }));
    try {
      const d = await get("/api/dictionary", { layer: S.layer, index: S.index, y: S.dictPos[0], x: S.dictPos[1], k: 6 });
      if (stale("dictionary", t)) return;
      const layer = S.layer;
      const missing = (d.channels || []).filter((c) => fvMissing(c.featurevis))
        .map((c) => ({ kind: "featurevis", layer, channel: c.channel }));
      fill(box, ...(d.channels || []).map((c) => h("div", { class: "d", "data-testid": "dictionary-entry", "data-channel": c.channel,
        title: "select channel " + c.channel, onclick: () => selectChannel(c.channel) },
      fvTile(fvImage(c.featurevis)),
      h("div", {}, "ch " + c.channel + " · ", h("b", { text: fmt(c.value) })))),
      featurevisButton(missing, "dictionary-featurevis", () => { if (!stale("dictionary", t)) loadDictionary(box); }));
      if (!(d.channels || []).length) fill(box, h("span", { class: "muted", text: "no channel is active here" }));
      box.dataset.state = "ready";
    } catch (err) {
      if (stale("dictionary", t)) return;
      box.dataset.state = showProblem(box, err, "dictionary-error");
    }
  }

  async function loadGroups(box, flowWrap) {
    const t = ticket("groups");
    setViewState("blocks", "loading");
    if (flowWrap) fill(flowWrap, );
    try {
      // target: the server's default, the instance's predicted class.
      const params = { layer: S.layer, index: S.index, k: S.k };
      const g = await get("/api/groups", params);
      if (stale("groups", t)) return;
      fill(box, h("div", { class: "bb" },
        h("div", { class: "overlay" }, h("img", { src: g.overlay, class: pxClass(), alt: "dominant group per position", "data-testid": "groups-overlay" }),
          h("div", { class: "muted", text: "dominant group per position" })),
        h("div", {},
          h("div", { class: "muted", text: "attribution of each group to " + (g.target !== undefined ? "class " + className(g.target) : "the predicted class") +
            (g.attribution_rule ? " (" + g.attribution_rule + ")" : "") }),
          h("div", { class: "groups", "data-testid": "groups" }, (g.groups || []).map((gr) =>
            h("div", { class: "g", "data-testid": "group", style: "border-top-color:" + gr.color, title: "top channels: " + (gr.channels || []).join(", ") },
              h("img", { src: gr.map, class: pxClass(), alt: "group " + gr.id + " map" }),
              fvTile(fvImage(gr.featurevis)),
              h("div", { class: "attr" }, "attr ", h("b", { text: fmt(gr.attribution) })),
              h("div", { class: "muted", text: "ch " + (gr.channels || []).slice(0, 4).join(", ") })))),
          featurevisButton((g.groups || []).filter((gr) => fvMissing(gr.featurevis) && Array.isArray(gr.direction))
            .map((gr) => ({ kind: "featurevis", layer: g.layer || S.layer, direction: gr.direction })), "groups-featurevis",
          () => { if (!stale("groups", t)) loadGroups(box, flowWrap); }))));
      setViewState("blocks", "ready");
    } catch (err) {
      if (stale("groups", t)) return;
      setViewState("blocks", showProblem(box, err, "groups-error"));
    }
  }

  async function loadFlow(box) {
    if (!S.flowTo) return;
    const t = ticket("flow");
    fill(box, h("span", { class: "muted", text: "loading…" }));
    try {
      const f = await get("/api/group_flow", { layer: S.layer, to: S.flowTo, index: S.index, k: S.k });
      if (stale("flow", t)) return;
      const flat = (f.matrix || []).flat();
      const scale = makeScale(Math.min(0, ...flat), Math.max(0, ...flat));
      const sw = (g) => h("span", { class: "sw", style: "background:" + (g.color || "#999") });
      fill(box, h("table", { "data-testid": "flow-matrix" },
        h("tr", {}, h("th", { class: "muted", text: "from \\ to" }), (f.to || []).map((g) => h("th", {}, sw(g)))),
        (f.matrix || []).map((row, i) => h("tr", {}, h("th", {}, sw((f.from || [])[i] || {})),
          row.map((v) => {
            const rgb = scale.color(v);
            const light = rgb[0] * 0.3 + rgb[1] * 0.59 + rgb[2] * 0.11 > 150;
            return h("td", { style: "background:" + css(rgb) + ";color:" + (light ? "#222" : "#fff"), title: fmt(v), text: fmt(v) });
          })))),
      colorbar(scale, "attribution", "flow-colorbar"));
    } catch (err) {
      if (stale("flow", t)) return;
      showProblem(box, err, "flow-error");
    }
  }

  // ---------------------------------------------------------------- live view
  async function loadFrames() {
    try {
      const f = await get("/api/frames");
      S.frames = f.frames || [];
      renderFrames();
      setViewState("live", "ready");
    } catch (err) {
      S.frames = [];
      setViewState("live", err.missing ? "ready" : "error");
      renderFrames();
    }
  }

  function stripItems() {
    return S.frames.map((f) => ({ index: f.index, name: f.name }))
      .concat(S.uploads.map((u, k) => ({ index: u, name: "upload " + (k + 1) })));
  }

  function renderFrames() {
    const items = stripItems();
    fill($("frames"), ...items.map((f) => h("button", { type: "button", "data-testid": "frame", "data-index": f.index,
      text: f.name, title: "instance " + f.index, onclick: () => selectIndex(f.index) })));
    markFrames();
  }

  function markFrames() {
    for (const b of document.querySelectorAll("#frames button")) {
      const on = Number(b.dataset.index) === S.index;
      b.classList.toggle("current", on);
      if (on && b.scrollIntoView) b.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  function step(delta) {
    const items = stripItems();
    const at = items.findIndex((f) => f.index === S.index);
    if (at >= 0 && items.length > 1) {
      const next = items[(at + delta + items.length) % items.length];
      return selectIndex(next.index);
    }
    const n = maxIndex() + 1;
    return selectIndex(((S.index + delta) % n + n) % n);
  }

  function bindLive() {
    $("live-prev").addEventListener("click", () => step(-1));
    $("live-next").addEventListener("click", () => step(1));
    $("live-index").addEventListener("change", (ev) => selectIndex(parseInt(ev.target.value, 10) || 0));
    document.addEventListener("keydown", (ev) => {
      const tag = (ev.target && ev.target.tagName) || "";
      if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
      if (ev.key === "ArrowRight") step(1);
      else if (ev.key === "ArrowLeft") step(-1);
    });
    const up = $("upload");
    if (EXPORT) up.disabled = true;
    up.addEventListener("change", async () => {
      const file = up.files && up.files[0];
      if (!file) return;
      const msg = $("live-msg");
      msg.className = "msg muted";
      msg.textContent = "uploading " + file.name + "…";
      try {
        const r = await upload(file);
        S.uploads.push(r.index);
        renderFrames();
        msg.className = "msg note";
        msg.textContent = (r.name || file.name) + " is instance #" + r.index;
        msg.dataset.index = r.index;
        await selectIndex(r.index);
      } catch (err) {
        msg.className = "msg error";
        msg.textContent = err.message;
      } finally {
        up.value = "";
      }
    });
  }

  // ---------------------------------------------------------------- controls
  function bindControls() {
    $("matrix-sort").addEventListener("change", (ev) => {
      S.sort = ev.target.value;
      $("matrix-ab").hidden = S.sort !== "difference";
      loadMatrix();
    });
    $("matrix-scale").addEventListener("change", (ev) => { S.mscale = ev.target.value; drawMatrix(); });
    $("matrix-a").addEventListener("change", (ev) => { S.a = ev.target.value; if (S.sort === "difference") loadMatrix(); });
    $("matrix-b").addEventListener("change", (ev) => { S.b = ev.target.value; if (S.sort === "difference") loadMatrix(); });
    for (const r of document.querySelectorAll("input[name=proj-method]")) {
      r.addEventListener("change", () => { S.projMethod = r.value; loadProjection(); });
    }
    for (const r of document.querySelectorAll("input[name=proj-mode]")) {
      r.addEventListener("change", () => { S.mode = r.value; });
    }
    $("proj-color").addEventListener("change", (ev) => { S.colorBy = ev.target.value; drawProjection(); });
    $("graph-filter").addEventListener("input", (ev) => filterGraph(ev.target.value));
    let timer = null;
    let lastWidth = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(timer);
      timer = setTimeout(() => { drawMatrix(); layoutProjection(); }, 150);
    });
  }

  // ---------------------------------------------------------------- start
  async function start() {
    document.body.appendChild(tooltip);
    bindControls();
    bindLive();
    try {
      S.session = await get("/api/session");
    } catch (err) {
      fill($("meta"), h("span", { class: "error", "data-testid": "session-error", text: "Cannot load the session: " + err.message }));
      document.body.dataset.ready = "error";
      return;
    }
    renderHeader();
    if (modality() !== "image") {
      $("upload").disabled = true;
      $("upload").title = "uploads are images; this data set is " + modality();
    }
    for (const p of panels) { $("explain-pair").appendChild(p.el); p.build(); p.clear(); }
    const init = window.CROSSLENS_EXPORT_STATE || {};
    S.index = init.index || 0;
    if (EXPORT && init.index === undefined) {
      // Start on an instance the export holds.
      const held = Object.keys(EXPORT).map((k) => /^GET \/api\/instance\?index=(\d+)$/.exec(k))
        .filter(Boolean).map((m) => Number(m[1]));
      if (held.length && !held.includes(0)) S.index = Math.min(...held);
    }
    const first = init.layer && layerInfo(init.layer) ? init.layer : S.session.default_layer && layerInfo(S.session.default_layer)
      ? S.session.default_layer : S.session.layers[0].name;
    loadGraph();
    loadFrames();
    try { await loadSubsets(); } catch (err) { S.subsets = []; }
    $("live-index").max = String(maxIndex());
    $("live-index").value = S.index;
    updateWhere();
    const views = [loadInstance(), selectLayer(first, { initial: true, force: true, channel: init.channel })];
    await Promise.allSettled(views);
    timings.ready = performance.now();
    document.body.dataset.ready = "1";
  }

  window.crosslens = {
    state: S, timings, selectLayer, selectChannel, selectIndex, requestKey, postKey,
    // Screen positions (CSS pixels in the projection canvas) of the points, for tests.
    projectionScreen: () => (proj.screen ? Array.from(proj.screen) : []),
    exportMode: !!EXPORT,
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
