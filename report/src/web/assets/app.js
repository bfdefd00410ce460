// tradeflow live view: polls /api/snapshot every 2 s and updates the SVG in place
// (elements are created once per symbol and then only their attributes change, so
// nothing flickers). No dependencies.
"use strict";

const NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 2000;
const TREEMAP_MAX = 150; // tiles beyond this are summed into one "others" tile
const USD_ROWS = 12;
const fmt = new Intl.NumberFormat("en-US");
const $ = (id) => document.getElementById(id);

function el(tag, cls, parent) {
  const e = document.createElementNS(NS, tag);
  if (cls) e.setAttribute("class", cls);
  if (parent) parent.appendChild(e);
  return e;
}
function attrs(e, a) {
  for (const k in a) e.setAttribute(k, a[k]);
}
function setText(e, t) {
  if (e.textContent !== t) e.textContent = t;
}

// ---- squarified treemap (Bruls, Huizing, van Wijk) ----
function worst(sum, max, min, side) {
  const s2 = side * side, sum2 = sum * sum;
  return Math.max((s2 * max) / sum2, sum2 / (s2 * min));
}
// items: [{key, value}] sorted by value, descending, all > 0. Returns [{key,x,y,w,h}].
function squarify(items, x, y, w, h) {
  const out = [];
  const total = items.reduce((s, i) => s + i.value, 0);
  if (!total || w <= 0 || h <= 0) return out;
  const scale = (w * h) / total;
  let i = 0;
  while (i < items.length) {
    const side = Math.min(w, h);
    let j = i + 1, sum = items[i].value * scale, max = sum, min = sum;
    let best = worst(sum, max, min, side);
    while (j < items.length) {
      const a = items[j].value * scale;
      const nw = worst(sum + a, Math.max(max, a), Math.min(min, a), side);
      if (nw > best) break;
      sum += a; max = Math.max(max, a); min = Math.min(min, a); best = nw; j++;
    }
    if (w >= h) {
      const rw = sum / h;
      let yy = y;
      for (let k = i; k < j; k++) {
        const rh = (items[k].value * scale) / rw;
        out.push({ key: items[k].key, x, y: yy, w: rw, h: rh });
        yy += rh;
      }
      x += rw; w -= rw;
    } else {
      const rh = sum / w;
      let xx = x;
      for (let k = i; k < j; k++) {
        const rw = (items[k].value * scale) / rh;
        out.push({ key: items[k].key, x: xx, y, w: rw, h: rh });
        xx += rw;
      }
      y += rh; h -= rh;
    }
    i = j;
  }
  return out;
}

const tiles = new Map(); // key -> {g, rect, name, num, tip}
function drawTreemap(snap) {
  const svg = $("treemap");
  const live = snap.symbols.filter((s) => s.trades > 0);
  const items = live.slice(0, TREEMAP_MAX).map((s) => ({ key: s.symbol, value: s.trades, label: s.symbol }));
  const rest = live.slice(TREEMAP_MAX);
  if (rest.length) {
    items.push({
      key: "\u0000others",
      value: rest.reduce((a, s) => a + s.trades, 0),
      label: `${rest.length} others`,
    });
  }
  setText($("tm-title"), `Transactions (N=${fmt.format(snap.total_trades)})`);
  const byKey = new Map(items.map((it, rank) => [it.key, { it, rank }]));
  // Lay out in CSS pixels so labels are never stretched.
  const w = Math.round(svg.clientWidth) || 1000, h = Math.round(svg.clientHeight) || 420;
  const vb = `0 0 ${w} ${h}`;
  if (svg.getAttribute("viewBox") !== vb) svg.setAttribute("viewBox", vb);
  const rects = squarify(items, 0, 0, w, h);
  const seen = new Set();
  for (const r of rects) {
    const { it, rank } = byKey.get(r.key);
    seen.add(r.key);
    let t = tiles.get(r.key);
    if (!t) {
      const g = el("g", "tile", svg);
      t = { g, rect: el("rect", null, g), tip: el("title", null, g), name: el("text", null, g), num: el("text", "n", g) };
      // Which refresh created it: tests check tiles are updated, not rebuilt.
      g.setAttribute("data-born", String(refreshes));
      tiles.set(r.key, t);
    }
    const others = r.key === "\u0000others";
    t.g.setAttribute("class", others ? "tile other" : rank < 3 ? "tile top" : "tile");
    t.g.setAttribute("data-symbol", others ? "" : r.key);
    t.g.setAttribute("data-count", String(it.value));
    attrs(t.rect, { x: r.x.toFixed(1), y: r.y.toFixed(1), width: r.w.toFixed(1), height: r.h.toFixed(1) });
    setText(t.tip, `${it.label}: ${fmt.format(it.value)} trades`);
    // Labels only where they fit; the tooltip and data attributes always hold the numbers.
    const fits = r.w > 8 * Math.max(it.label.length, 4) && r.h > 36;
    const fitsName = r.w > 7 * it.label.length && r.h > 18;
    attrs(t.name, { x: (r.x + 5).toFixed(1), y: (r.y + 17).toFixed(1) });
    attrs(t.num, { x: (r.x + 5).toFixed(1), y: (r.y + 32).toFixed(1) });
    setText(t.name, fitsName ? it.label : "");
    setText(t.num, fits ? fmt.format(it.value) : "");
  }
  for (const [k, t] of tiles) {
    if (!seen.has(k)) {
      t.g.remove();
      tiles.delete(k);
    }
  }
}

// ---- trades per minute, top symbols ----
const W = 600, H = 260, L = 46, R = 10, T = 10, B = 24;
let minuteAxis = null;
const lines = [];
const legendItems = [];
function hhmm(minute) {
  const d = new Date(minute * 60000);
  return d.toISOString().slice(11, 16);
}
function drawMinutes(snap) {
  const svg = $("minutes");
  if (!minuteAxis) {
    minuteAxis = {
      x: el("line", "axis", svg), y: el("line", "axis", svg),
      max: el("text", "lbl", svg), zero: el("text", "lbl", svg),
      start: el("text", "lbl", svg), end: el("text", "lbl", svg),
    };
    attrs(minuteAxis.x, { x1: L, y1: H - B, x2: W - R, y2: H - B });
    attrs(minuteAxis.y, { x1: L, y1: T, x2: L, y2: H - B });
    attrs(minuteAxis.max, { x: 4, y: T + 10 });
    attrs(minuteAxis.zero, { x: 4, y: H - B });
    attrs(minuteAxis.start, { x: L, y: H - 6 });
    attrs(minuteAxis.end, { x: W - R - 60, y: H - 6 });
  }
  const m = snap.minutes;
  const n = m.series.length ? m.series[0].counts.length : 60;
  let max = 1;
  for (const s of m.series) for (const c of s.counts) max = Math.max(max, c);
  setText(minuteAxis.max, fmt.format(max));
  setText(minuteAxis.zero, "0");
  setText(minuteAxis.start, m.start_minute ? hhmm(m.start_minute) + " UTC" : "");
  setText(minuteAxis.end, m.start_minute ? hhmm(m.start_minute + n - 1) + " UTC" : "");
  const sx = (W - L - R) / Math.max(n - 1, 1), sy = (H - T - B) / max;
  const legend = $("legend");
  m.series.forEach((s, i) => {
    if (!lines[i]) lines[i] = el("polyline", `line c${i % 8}`, svg);
    const pts = s.counts.map((c, k) => `${(L + k * sx).toFixed(1)},${(H - B - c * sy).toFixed(1)}`).join(" ");
    if (lines[i].getAttribute("points") !== pts) lines[i].setAttribute("points", pts);
    lines[i].setAttribute("data-symbol", s.symbol);
    if (!legendItems[i]) {
      const li = document.createElement("li");
      const sw = document.createElement("i");
      sw.className = `c${i % 8}`;
      li.appendChild(sw);
      li.appendChild(document.createTextNode(""));
      legend.appendChild(li);
      legendItems[i] = li;
    }
    const total = s.counts.reduce((a, c) => a + c, 0);
    setText(legendItems[i].lastChild, `${s.symbol} ${fmt.format(total)}/h`);
  });
  while (lines.length > m.series.length) lines.pop().remove();
  while (legendItems.length > m.series.length) legendItems.pop().remove();
}

// ---- USD value per symbol, bars ----
const bars = [];
function drawUsd(snap) {
  const svg = $("usd");
  const rows = snap.symbols
    .filter((s) => s.usd_value !== null && s.usd_value !== undefined)
    .map((s) => ({ symbol: s.symbol, usd: Number(s.usd_value), text: s.usd_value }))
    .sort((a, b) => b.usd - a.usd || (a.symbol < b.symbol ? -1 : 1))
    .slice(0, USD_ROWS);
  const max = rows.length ? Math.max(rows[0].usd, 0.01) : 1;
  const rowH = 300 / USD_ROWS;
  rows.forEach((r, i) => {
    if (!bars[i]) {
      bars[i] = { name: el("text", "lbl", svg), bar: el("rect", "bar", svg), val: el("text", "val", svg) };
    }
    const b = bars[i], y = i * rowH;
    const w = Math.max(1, (r.usd / max) * 390);
    attrs(b.name, { x: 0, y: (y + rowH * 0.65).toFixed(1) });
    attrs(b.bar, { x: 112, y: (y + 3).toFixed(1), width: w.toFixed(1), height: (rowH - 6).toFixed(1) });
    b.bar.setAttribute("class", i < 3 ? "bar top" : "bar");
    b.bar.setAttribute("data-symbol", r.symbol);
    attrs(b.val, { x: (116 + w).toFixed(1), y: (y + rowH * 0.65).toFixed(1) });
    setText(b.name, r.symbol);
    setText(b.val, "$" + fmt.format(Math.trunc(r.usd)));
  });
  while (bars.length > rows.length) {
    const b = bars.pop();
    b.name.remove(); b.bar.remove(); b.val.remove();
  }
  setText($("usd-title"), `Traded value (USD, total $${fmt.format(Math.trunc(Number(snap.total_usd_value)))})`);
}

// ---- freshness and the Redis notice ----
function age(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7200000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}
function drawFresh(snap) {
  const p = $("fresh");
  const now = new Date(snap.server_time_ms).toISOString().slice(11, 19);
  if (snap.newest_trade_ms == null) {
    setText(p, `No trades yet · read ${now} UTC`);
    p.className = "fresh";
    return;
  }
  const newest = new Date(snap.newest_trade_ms).toISOString().slice(11, 19);
  setText(p, `Newest trade ${age(snap.age_ms)} ago (${newest} UTC) · ${snap.symbols.length} symbols · read ${now} UTC`);
  p.className = snap.age_ms > 60000 ? "fresh stale" : "fresh";
}
function notice(text) {
  const n = $("notice");
  if (text) {
    setText(n, text);
    n.hidden = false;
  } else {
    n.hidden = true;
  }
}

let lastGood = null;
let refreshes = 0; // successful draws, exposed on <body> for tests
async function refresh() {
  try {
    const r = await fetch("/api/snapshot", { cache: "no-store" });
    const snap = await r.json();
    if (!snap.ok) {
      const since = lastGood ? ` — showing numbers read at ${new Date(lastGood).toISOString().slice(11, 19)} UTC` : "";
      notice(`${snap.error || "Redis unreachable"}${since}`);
      if (!lastGood) setText($("fresh"), "No data: Redis cannot be read");
      return;
    }
    lastGood = snap.server_time_ms;
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    notice(null);
    drawTreemap(snap);
    drawMinutes(snap);
    drawUsd(snap);
    drawFresh(snap);
  } catch (e) {
    notice(`Server unreachable: ${e.message || e}`);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
