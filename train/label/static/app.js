// The label page: keys label the current crop; every change is POSTed at once, in order, and the server
// rewrites labels.csv atomically, so closing the tab loses nothing.
"use strict";
const MASK_KEYS = { "1": "wear", "2": "incorrect", "3": "not_wear" };
const CYCLE = { gender: ["", "male", "female"], age: ["", "<30", "30-59", ">=60"] };
let items = [], cursor = 0, onlyUnsure = false, queue = Promise.resolve();

function visible() { return items.filter((it) => !onlyUnsure || it.unsure); }
function done(it) { return it.discarded || it.mask !== ""; }
function setStatus(text) { document.getElementById("status").textContent = text; }

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                body: JSON.stringify(body) });
  const data = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
  if (!r.ok || data.error) throw new Error(data.error || r.statusText);
  return data;
}

function apply(state) {
  const it = items.find((x) => x.file === state.file);
  if (it) for (const k of ["mask", "gender", "age", "discarded"]) it[k] = state[k];
}

function render() {
  const vis = visible();
  cursor = Math.max(0, Math.min(cursor, vis.length - 1));
  const grid = document.getElementById("grid");
  grid.replaceChildren(...vis.map((it, i) => card(it, i === cursor, i)));
  const labelled = items.filter(done).length;
  document.getElementById("progress").textContent =
    `labelled ${labelled} / left ${items.length - labelled}` + (onlyUnsure ? ` (showing ${vis.length} unsure)` : "");
  const cur = grid.children[cursor];
  if (cur) cur.scrollIntoView({ block: "nearest" });
}

function card(it, current, i) {
  const div = document.createElement("div");
  div.className = "card" + (current ? " current" : "") + (it.discarded ? " discarded" : "") + (it.mask ? " " + it.mask : "");
  div.dataset.file = it.file;
  div.dataset.mask = it.discarded ? "discarded" : it.mask;
  const img = document.createElement("img");
  img.src = "/crop/" + encodeURIComponent(it.file);
  img.alt = it.file;
  const info = document.createElement("div");
  info.className = "info";
  const guess = it.guess ? `model: ${it.guess}` + (it.top !== null ? ` ${it.top.toFixed(2)}` : "") : "model: -";
  const label = it.discarded ? "discarded" : [it.mask, it.gender, it.age].filter(Boolean).join(", ") || "unlabelled";
  info.innerHTML = "";
  for (const [cls, text] of [["name", it.file], ["guess", guess + (it.unsure ? " (unsure)" : "")], ["label", label]]) {
    const s = document.createElement("div");
    s.className = cls;
    s.textContent = text;
    info.appendChild(s);
  }
  div.append(img, info);
  div.addEventListener("click", () => { cursor = i; render(); });
  return div;
}

function nextUnlabelled() {
  const vis = visible();
  for (let k = 1; k <= vis.length; k++) {
    const j = (cursor + k) % vis.length;
    if (!done(vis[j])) return j;
  }
  return Math.min(cursor + 1, vis.length - 1);
}

function send(path, body, after) {
  // one request at a time, in key order
  queue = queue.then(() => post(path, body)).then((state) => { setStatus(""); after(state); render(); })
    .catch((e) => setStatus("not saved: " + e.message));
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const vis = visible();
  const it = vis[cursor];
  const k = ev.key;
  if (k === "ArrowRight" || k === "j") { cursor = Math.min(cursor + 1, vis.length - 1); render(); return; }
  if (k === "ArrowLeft" || k === "k") { cursor = Math.max(cursor - 1, 0); render(); return; }
  if (k === "f") { onlyUnsure = !onlyUnsure; document.getElementById("unsure").checked = onlyUnsure; cursor = 0; render(); return; }
  if (k === "u") {
    send("/api/undo", {}, (state) => {
      if (!state.file) { setStatus("nothing to undo"); return; }
      apply(state);
      const j = visible().findIndex((x) => x.file === state.file);
      if (j >= 0) cursor = j;
    });
    return;
  }
  if (!it) return;
  if (k in MASK_KEYS || k === "x") {
    const body = k === "x" ? { file: it.file, key: "discard" } : { file: it.file, key: "mask", value: MASK_KEYS[k] };
    // optimistic: move on at once, so fast typing labels consecutive crops
    if (k === "x") it.discarded = true; else { it.mask = MASK_KEYS[k]; it.discarded = false; }
    cursor = nextUnlabelled();
    render();
    send("/api/label", body, apply);
  } else if (k === "g" || k === "a") {
    const key = k === "g" ? "gender" : "age";
    const values = CYCLE[key];
    const value = values[(values.indexOf(it[key]) + 1) % values.length];
    it[key] = value;
    render();
    send("/api/label", { file: it.file, key, value }, apply);
  }
}

async function load() {
  const r = await fetch("/api/items");
  if (!r.ok) { setStatus("cannot load the crops: " + r.status); return; }
  const data = await r.json();
  items = data.items;
  const first = items.findIndex((it) => !done(it));
  cursor = first >= 0 ? first : 0;
  render();
  document.body.dataset.ready = "1";
}

document.addEventListener("keydown", onKey);
document.getElementById("unsure").addEventListener("change", (ev) => { onlyUnsure = ev.target.checked; cursor = 0; render(); });
load();
