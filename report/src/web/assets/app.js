// tradeflow live view: polls /api/snapshot (and the chosen symbol's /api/candles)
// every 2 s and updates the SVG in place (elements are created once and then only
// their attributes change, so nothing flickers). No dependencies.
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
  markChosen();
}
// The charted symbol's tile carries data-chosen (outlined).
function markChosen() {
  const sym = chartSymbol();
  for (const [k, t] of tiles) {
    if (k === sym) t.g.setAttribute("data-chosen", "true");
    else t.g.removeAttribute("data-chosen");
  }
}

// ---- candlesticks of one symbol: picked on the treemap, kept in the URL hash ----
const CANDLES = 60;
const CANDLE_MS = { "1m": 60000, "5m": 300000, "15m": 900000, "1h": 3600000 };
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const iv = p.get("interval");
  return { symbol: p.get("symbol") || null, interval: CANDLE_MS[iv] ? iv : "1m" };
}
let chosen = readHash();
let lastSnap = null;
// The symbol picked, else the one with the most trades.
function chartSymbol() {
  if (chosen.symbol) return chosen.symbol;
  const top = lastSnap && lastSnap.symbols.find((s) => s.trades > 0);
  return top ? top.symbol : null;
}
// A pick only writes the hash: the hashchange handler redraws, and a reload keeps it.
function choose(symbol, interval) {
  const p = new URLSearchParams();
  if (symbol) p.set("symbol", symbol);
  p.set("interval", interval);
  location.hash = p.toString();
}
$("treemap").addEventListener("click", (e) => {
  const g = e.target.closest("g.tile");
  const sym = g && g.getAttribute("data-symbol");
  if (sym) choose(sym, chosen.interval);
});
$("intervals").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-interval]");
  if (b) choose(chosen.symbol, b.getAttribute("data-interval"));
});
window.addEventListener("hashchange", () => {
  chosen = readHash();
  markChosen();
  loadCandles();
});

let candleSeq = 0; // an answer to an older request is dropped
async function loadCandles() {
  const sym = chartSymbol(), iv = chosen.interval;
  for (const b of $("intervals").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.getAttribute("data-interval") === iv));
  }
  if (!sym) return;
  const seq = ++candleSeq;
  try {
    const q = `symbol=${encodeURIComponent(sym)}&interval=${iv}&limit=${CANDLES}`;
    const r = await fetch(`/api/candles?${q}`, { cache: "no-store" });
    const body = await r.json();
    if (seq !== candleSeq) return;
    if (!r.ok) {
      drawCandles(sym, iv, []);
      setText($("candle-note"), body.error || `HTTP ${r.status}`);
      return;
    }
    drawCandles(sym, iv, body);
  } catch (e) {
    if (seq === candleSeq) setText($("candle-note"), `Server unreachable: ${e.message || e}`);
  }
}

const CH = 300, CL = 84, CR = 10, CT = 10, CB = 24;
const candleEls = [];
let candleAxis = null;
let candleDraws = 0; // exposed on <body> for tests
const price = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 8 });
function stamp(ms, iv) {
  const iso = new Date(ms).toISOString();
  return iv === "1h" ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 16);
}
// rows: Binance kline arrays [open time, open, high, low, close, volume, close time,
// quote volume, trades, …], decimals as strings (kept exact in data-* attributes).
function drawCandles(sym, iv, rows) {
  const svg = $("candles"), ms = CANDLE_MS[iv];
  // Laid out in CSS pixels (as the treemap): the chart spans the card, text unstretched.
  const CW = Math.round(svg.clientWidth) || 1000;
  const vb = `0 0 ${CW} ${CH}`;
  if (svg.getAttribute("viewBox") !== vb) svg.setAttribute("viewBox", vb);
  if (!candleAxis) {
    candleAxis = { x: el("line", "axis", svg), hi: el("text", "lbl", svg), lo: el("text", "lbl", svg),
      start: el("text", "lbl", svg), end: el("text", "lbl", svg) };
  }
  attrs(candleAxis.x, { x1: CL, y1: CH - CB, x2: CW - CR, y2: CH - CB });
  attrs(candleAxis.hi, { x: 4, y: CT + 10 });
  attrs(candleAxis.lo, { x: 4, y: CH - CB });
  attrs(candleAxis.start, { x: CL, y: CH - 6 });
  attrs(candleAxis.end, { x: CW - CR - 90, y: CH - 6 });
  // The window ends at the interval of the symbol's newest trade, as the server's does.
  const s = lastSnap && lastSnap.symbols.find((x) => x.symbol === sym);
  const newest = s && s.last_time_ms != null ? s.last_time_ms : lastSnap ? lastSnap.server_time_ms : Date.now();
  let end = newest - (newest % ms);
  if (rows.length) end = Math.max(end, rows[rows.length - 1][0]);
  const start = end - (CANDLES - 1) * ms;
  const vis = rows.filter((k) => k[0] >= start);
  let hi = -Infinity, lo = Infinity;
  for (const k of vis) {
    hi = Math.max(hi, Number(k[2]));
    lo = Math.min(lo, Number(k[3]));
  }
  if (!vis.length) { hi = 1; lo = 0; }
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.001 || 1;
  hi += pad; lo -= pad;
  const slot = (CW - CL - CR) / CANDLES, bw = Math.max(1, slot * 0.7);
  const y = (p) => CT + ((hi - Number(p)) / (hi - lo)) * (CH - CT - CB);
  vis.forEach((k, i) => {
    let c = candleEls[i];
    if (!c) {
      const g = el("g", null, svg);
      c = { g, wick: el("line", "wick", g), body: el("rect", "body", g), tip: el("title", null, g) };
      candleEls[i] = c;
    }
    const x = CL + ((k[0] - start) / ms + 0.5) * slot;
    const yo = y(k[1]), yc = y(k[4]);
    c.g.setAttribute("class", Number(k[4]) >= Number(k[1]) ? "candle up" : "candle down");
    attrs(c.g, { "data-open-time": k[0], "data-open": k[1], "data-high": k[2], "data-low": k[3],
      "data-close": k[4], "data-volume": k[5], "data-trades": k[8] });
    attrs(c.wick, { x1: x.toFixed(1), x2: x.toFixed(1), y1: y(k[2]).toFixed(1), y2: y(k[3]).toFixed(1) });
    attrs(c.body, { x: (x - bw / 2).toFixed(1), y: Math.min(yo, yc).toFixed(1), width: bw.toFixed(1),
      height: Math.max(1, Math.abs(yo - yc)).toFixed(1) });
    setText(c.tip, `${stamp(k[0], iv)} UTC · O ${k[1]} H ${k[2]} L ${k[3]} C ${k[4]} · ${fmt.format(k[8])} trades`);
  });
  while (candleEls.length > vis.length) candleEls.pop().g.remove();
  setText(candleAxis.hi, vis.length ? price.format(hi) : "");
  setText(candleAxis.lo, vis.length ? price.format(lo) : "");
  setText(candleAxis.start, stamp(start, iv) + " UTC");
  setText(candleAxis.end, stamp(end, iv) + " UTC");
  attrs(svg, { "data-symbol": sym, "data-interval": iv, "data-candles": String(vis.length) });
  setText($("candle-title"), `Candles · ${sym} · ${iv}`);
  const trades = vis.reduce((a, k) => a + k[8], 0);
  setText($("candle-note"), vis.length
    ? `${fmt.format(trades)} trades in the last ${CANDLES} intervals (UTC; intervals without a trade are empty) · click a tile to switch`
    : `No trades of ${sym} in the last ${CANDLES} intervals`);
  candleDraws += 1;
  document.body.dataset.candleDraws = String(candleDraws);
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
    lastSnap = snap;
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    notice(null);
    drawTreemap(snap);
    drawMinutes(snap);
    drawUsd(snap);
    drawFresh(snap);
    await loadCandles();
  } catch (e) {
    notice(`Server unreachable: ${e.message || e}`);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
