// rd-edge station: polls /api/state (1 s; the chart's new points only), each stream's newest overlay
// (at most live_fps), the evidence gallery and recent OK frames (2 s; items already shown are kept,
// images fetched once on screen); review buttons POST /api/review. A hidden page (another tab, a screen saver)
// polls only the state. No framework, no CDN.
"use strict";

const LABELS = { false_alarm: "False alarm", confirmed_defect: "Defect", missed_defect: "Missed defect" };
const cards = new Map();
let liveFps = 5;
let finished = false;
let threshold = null;
let since = null;  // the previous state's "points": /api/state sends the chart points after it
let historySeconds = 300;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const enc = encodeURIComponent;
const q = (root, sel) => root.querySelector(sel);

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.style.display = "block";
  clearTimeout(box.hideTimer);
  box.hideTimer = setTimeout(() => { box.style.display = "none"; }, 4000);
}

function ensureCard(stream) {
  if (cards.has(stream.name)) return cards.get(stream.name);
  const card = document.getElementById("stream-card").content.firstElementChild.cloneNode(true);
  card.id = `stream-${stream.name}`;
  card.dataset.stream = stream.name;
  q(card, ".name").textContent = stream.name;
  if (!stream.live) {
    q(card, ".live-row").style.display = "none";
    q(card, ".chart").style.display = "none";
    q(card, ".ok-title").style.display = "none";
  }
  document.getElementById("streams").appendChild(card);
  cards.set(stream.name, card);
  if (stream.live) liveLoop(stream.name, card);
  galleryLoop(stream.name, card, stream.live);
  return card;
}

async function liveLoop(name, card) {
  const img = q(card, ".live-img");
  let updates = 0;
  for (;;) {
    const started = performance.now();
    if (document.hidden) { await sleep(500); continue; }
    try {
      const response = await fetch(`/api/frame/${enc(name)}`, { cache: "no-store" });
      const frame = response.headers.get("X-Frame");
      if (response.status === 200 && frame !== img.dataset.frame) {
        const url = URL.createObjectURL(await response.blob());
        const old = img.src;
        img.onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
        img.src = url;
        img.dataset.frame = frame;
        img.dataset.updates = String(++updates);
        q(card, ".live-cap").textContent = `frame ${frame}`;
      }
    } catch (err) { /* server gone or busy: try again */ }
    const period = finished ? 2000 : 1000 / liveFps;
    await sleep(Math.max(period - (performance.now() - started), 30));
  }
}

function updateCard(card, s, now) {
  if (!s.live) return;
  const points = card.history || [];  // the chart's last 5 minutes: /api/state sends new points only
  points.push(...s.history);
  let old = 0;
  while (old < points.length && points[old][0] < now - historySeconds) old++;
  card.history = old ? points.slice(old) : points;
  for (const key of ["frames", "ok", "ng", "errors"]) q(card, `.${key}`).textContent = s[key];
  q(card, ".yield").textContent = s.yield === null ? "–" : `${fmt(100 * s.yield, 1)} %`;
  q(card, ".fps").textContent = fmt(s.fps, 1);
  q(card, ".latency").textContent = s.latency_ms === null ? "–" : `${fmt(s.latency_ms, 1)} ms`;
  const badge = q(card, ".badge.drift");
  const drifting = Boolean(s.drift && s.drift.drifting);
  badge.classList.toggle("on", drifting);
  badge.textContent = drifting ? "DRIFT" : "no drift";
  q(card, ".drift-value").textContent = s.drift ? fmt(s.drift.ks, 2) : "–";
  drawChart(q(card, ".chart"), card.history);
}

function drawChart(canvas, points) {
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width) canvas.width = width;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (!points.length) return;
  const now = Date.now() / 1000;
  const span = Math.min(300, Math.max(60, now - points[0][0]));  // grows to the last 5 minutes
  let lo = Math.min(...points.map((p) => p[1])), hi = Math.max(...points.map((p) => p[1]));
  if (threshold !== null) { lo = Math.min(lo, threshold); hi = Math.max(hi, threshold); }
  const pad = (hi - lo) * 0.1 || 0.05;
  lo -= pad; hi += pad;
  const x = (t) => 36 + (width - 44) * (1 - (now - t) / span);
  const y = (v) => height - 14 - (height - 24) * (v - lo) / (hi - lo);
  ctx.font = "11px system-ui"; ctx.fillStyle = "#9aa4b2";
  ctx.fillText(hi.toPrecision(3), 2, 12); ctx.fillText(lo.toPrecision(3), 2, height - 16);
  ctx.fillText(`-${Math.round(span)} s`, 36, height - 2); ctx.fillText("now", width - 26, height - 2);
  if (threshold !== null) {
    ctx.strokeStyle = "#f5a524"; ctx.setLineDash([6, 4]); ctx.beginPath();
    ctx.moveTo(36, y(threshold)); ctx.lineTo(width - 8, y(threshold)); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#f5a524"; ctx.fillText(`threshold ${threshold.toPrecision(3)}`, 40, y(threshold) - 4);
  }
  const step = Math.max(1, Math.floor(points.length / 600));  // every NG point, OK ones thinned
  points.forEach(([t, v, ng], i) => {
    if (!ng && i % step) return;
    ctx.fillStyle = ng ? "#e5484d" : "#2fb36d";
    ctx.fillRect(x(t) - 1.5, y(v) - 1.5, 3, 3);
  });
}

function itemHtml(entry, labels) {
  const tag = entry.review ? `<div class="tag">marked: ${LABELS[entry.review]}</div>` : "";
  const buttons = labels.map((l) => `<button class="${l}" data-label="${l}">${LABELS[l]}</button>`).join("");
  return `<div class="item${entry.review ? " reviewed" : ""}" data-id="${entry.id}">
    <img data-src="${entry.image}" alt="frame ${entry.frame}">
    <div class="meta">#${entry.frame} · score ${fmt(entry.score, 3)}</div>${tag}${buttons}</div>`;
}

// A gallery image is fetched once it is on screen (or within 200 px of it): the strips scroll
// sideways and the OK strip may be below the fold; loading="lazy" fetches far more ahead of view.
const onScreen = new IntersectionObserver((seen) => {
  for (const e of seen) {
    if (!e.isIntersecting) continue;
    e.target.src = e.target.dataset.src;
    onScreen.unobserve(e.target);
  }
}, { rootMargin: "200px" });

function renderGallery(box, entries, labels) {
  const key = JSON.stringify(entries.map((e) => [e.id, e.review]));
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  // items still listed and marked the same stay (their images are not fetched or decoded again)
  const shown = new Map([...box.children].map((item) => [item.dataset.id, item]));
  const items = entries.map((e) => {
    const item = shown.get(e.id);
    if (item && item.dataset.key === String(e.review)) {
      shown.delete(e.id);
      return item;
    }
    const made = document.createElement("template");
    made.innerHTML = itemHtml(e, labels).trim();
    const fresh = made.content.firstElementChild;
    fresh.dataset.key = String(e.review);
    onScreen.observe(q(fresh, "img"));
    return fresh;
  });
  for (const gone of shown.values()) onScreen.unobserve(q(gone, "img"));  // never shown: forgotten
  box.replaceChildren(...items);
}

async function galleryLoop(name, card, live) {
  for (;;) {
    if (document.hidden) { await sleep(500); continue; }
    try {
      renderGallery(q(card, ".ng-gallery"), await getJSON(`/api/gallery/${enc(name)}`),
                    ["false_alarm", "confirmed_defect"]);
      if (live) renderGallery(q(card, ".ok-gallery"), await getJSON(`/api/recent/${enc(name)}`), ["missed_defect"]);
    } catch (err) { /* try again */ }
    await sleep(2000);
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-label]");
  if (!button) return;
  const item = button.closest(".item");
  button.disabled = true;
  try {
    const response = await fetch("/api/review", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: item.dataset.id, label: button.dataset.label }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.status);
    item.classList.add("reviewed");
    item.dataset.review = answer.label;
    let tag = q(item, ".tag");  // at once, not at the next gallery poll
    if (!tag) {
      tag = document.createElement("div");
      tag.className = "tag";
      q(item, ".meta").after(tag);
    }
    tag.textContent = `marked: ${LABELS[answer.label]}`;
    toast(answer.new ? `${LABELS[answer.label]} saved: ${answer.saved}`
                     : `already marked ${LABELS[answer.label]}: ${answer.saved}`);
  } catch (err) {
    toast(`not saved: ${err.message}`);
  } finally {
    button.disabled = false;
  }
});

async function stateLoop() {
  for (;;) {
    try {
      const state = await getJSON(since === null ? "/api/state" : `/api/state?since=${since}`);
      document.getElementById("title").textContent = state.title;
      liveFps = state.live_fps; finished = state.finished; threshold = state.threshold;
      historySeconds = state.history_seconds;
      const mode = document.getElementById("mode");
      mode.textContent = !state.live ? "evidence review" : (state.finished ? "run finished" : "live");
      mode.classList.toggle("live", state.live && !state.finished);
      for (const s of state.streams) updateCard(ensureCard(s), s, state.now);
      since = state.points;
    } catch (err) {
      document.getElementById("mode").textContent = "disconnected";
    }
    document.getElementById("clock").textContent = new Date().toLocaleTimeString();
    await sleep(1000);
  }
}

stateLoop();
