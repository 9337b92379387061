// The live network view: a scrolling spike raster, E and I firing rates over the same time axis,
// and the E->E weight histogram. Frames are queued as they arrive and painted once per animation
// frame; when the tab falls behind (or is hidden) the oldest queued frames are dropped.
import { request } from "./api.js";
import { $, h } from "./dom.js";
import { decodeSpikes, excitatoryCount, firedUnits, rates } from "./spikes.js";

const STEP_CSS_PX = 5; // width of one time step in the raster, in CSS pixels
const FALLBACK_STEPS = 600; // history kept while the canvas is hidden (width unknown)
const TARGET_RATE = 0.1; // H_IP, the rate intrinsic plasticity steers E units towards
const COLORS = {
  background: "#0f1521", grid: "#2a3447", text: "#9aa8bf",
  e: "#52a8ff", i: "#ff8a4c", gap: "#3b4a66", bar: "#7fd1b9",
};

/** Size a canvas's backing store to its CSS box times devicePixelRatio; false if hidden. */
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * ratio);
  const height = Math.round(canvas.clientHeight * ratio);
  if (!width || !height) return false;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return true;
}

function clear(ctx) {
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
}

/** Draw `text` at (x, y), optionally on a background box so that it stays readable. */
function label(ctx, text, x, y, align = "left", boxed = false) {
  const ratio = window.devicePixelRatio || 1;
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  if (boxed) {
    const width = ctx.measureText(text).width + 6 * ratio;
    ctx.fillStyle = COLORS.background;
    const left = align === "right" ? x - width + 3 * ratio : x - 3 * ratio;
    ctx.fillRect(left, y - ratio, width, 14 * ratio);
  }
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = align;
  ctx.textBaseline = "top";
  ctx.fillText(text, x, y);
}

export class NetworkView {
  constructor(root) {
    this.raster = $("#raster", root);
    this.rates = $("#rates", root);
    this.histogram = $("#histogram", root);
    this.statsList = $("#network-stats", root);
    this.activity = $("#network-activity", root);
    this.pending = []; // decoded frames not yet painted
    // painted steps, oldest first: {step, neurons, neuronsE, units, rateE, rateI}
    this.history = [];
    this.neuronsE = 0; // from stats when the server sends it; else the 4:1 default
    this.dropped = 0; // frames dropped because the page fell behind
    this.dirty = true;
    this.lastStats = null;
    this.statsShown = 0; // payloads shown so far
    this.frameRequested = false;
    new ResizeObserver(() => this.invalidate()).observe(this.raster);
    new ResizeObserver(() => this.drawHistogram()).observe(this.histogram);
  }

  /** Queue one binary `spikes` frame (ArrayBuffer or typed array). */
  addFrame(buffer) {
    let frame;
    try {
      frame = decodeSpikes(buffer);
    } catch (error) {
      console.warn("ignored spike frame:", error.message);
      return;
    }
    this.pending.push(frame);
    this.trimPending();
    this.activity.classList.add("on");
    clearTimeout(this.activityTimer);
    this.activityTimer = setTimeout(() => this.activity.classList.remove("on"), 1200);
    this.invalidate();
  }

  /** Ask the server for the stats and show them, unless an event brought newer ones while
   * the answer was on its way (it was computed before them: showing it would put an older
   * count back, and the panel would wait for the next turn). */
  async fetchStats() {
    const shownBefore = this.statsShown;
    const stats = await request("GET", "/api/network");
    if (this.statsShown === shownBefore) this.setStats(stats);
  }

  /** Show a `stats` payload (an event, or the answer of GET /api/network: see fetchStats). */
  setStats(stats) {
    if (!stats) return;
    this.statsShown += 1;
    this.lastStats = stats;
    this.neuronsE = stats.neurons_e ?? this.neuronsE;
    const pct = (x) => (typeof x === "number" ? (100 * x).toFixed(1) + " %" : "–");
    const num = (x, digits = 0) => (typeof x === "number"
      ? x.toLocaleString(undefined, { maximumFractionDigits: digits }) : "–");
    const rows = [
      ["Memories", num(stats.episodes)], ["Synapses E→E", num(stats.synapses)],
      ["Rate E", pct(stats.rate_e)], ["Rate I", pct(stats.rate_i)],
      ["Mean weight", num(stats.mean_weight, 4)], ["Connectivity", pct(stats.connection_fraction)],
      ["Step", num(stats.step)],
    ];
    this.statsList.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    this.drawHistogram();
  }

  invalidate() {
    this.dirty = true;
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.paint();
    });
  }

  /** Steps the raster can show at its current width. */
  capacity() {
    const width = this.raster.clientWidth;
    return width ? Math.ceil(width / STEP_CSS_PX) : FALLBACK_STEPS;
  }

  trimPending() {
    let steps = this.pending.reduce((sum, f) => sum + f.steps, 0);
    while (this.pending.length > 1 && steps - this.pending[0].steps >= this.capacity()) {
      steps -= this.pending.shift().steps;
      this.dropped += 1;
    }
  }

  paint() {
    if (!this.dirty) return;
    this.trimPending();
    for (const frame of this.pending.splice(0)) {
      const neuronsE = excitatoryCount(frame.neurons, this.neuronsE);
      for (let s = 0; s < frame.steps; s++) {
        const units = firedUnits(frame, s);
        const [rateE, rateI] = rates(units, frame.neurons, neuronsE);
        this.history.push({
          step: frame.firstStep + s, neurons: frame.neurons, neuronsE, units, rateE, rateI,
        });
      }
    }
    const excess = this.history.length - Math.max(this.capacity(), 1);
    if (excess > 0) this.history.splice(0, excess);
    if (fitCanvas(this.raster)) this.drawRaster();
    if (fitCanvas(this.rates)) this.drawRates();
    this.dirty = false;
  }

  drawRaster() {
    const ctx = this.raster.getContext("2d");
    clear(ctx);
    const { width, height } = this.raster;
    const column = STEP_CSS_PX * (window.devicePixelRatio || 1);
    const x0 = width - this.history.length * column;
    const paths = { e: new Path2D(), i: new Path2D(), gap: new Path2D() };
    this.history.forEach((entry, j) => {
      const x = x0 + j * column;
      const previous = this.history[j - 1];
      if (previous && previous.step + 1 !== entry.step) paths.gap.rect(x, 0, 1, height);
      const rowHeight = height / entry.neurons;
      for (const unit of entry.units) {
        const y = Math.floor(unit * rowHeight);
        const rowEnd = Math.max(y + 1, Math.floor((unit + 1) * rowHeight));
        (unit < entry.neuronsE ? paths.e : paths.i).rect(x, y, Math.max(1, column - 1), rowEnd - y);
      }
    });
    ctx.fillStyle = COLORS.gap;
    ctx.fill(paths.gap);
    ctx.fillStyle = COLORS.e;
    ctx.fill(paths.e);
    ctx.fillStyle = COLORS.i;
    ctx.fill(paths.i);
    const last = this.history.at(-1);
    if (last) {
      const boundary = Math.round((last.neuronsE * height) / last.neurons);
      ctx.fillStyle = COLORS.grid;
      ctx.fillRect(0, boundary, width, 1);
      const dropped = this.dropped ? ` · ${this.dropped} frames dropped` : "";
      label(ctx, `step ${last.step.toLocaleString()}${dropped}`, width - 4, 4, "right", true);
    } else {
      label(ctx, "Waiting for spikes: send a message.", 8, 8);
    }
    this.raster.dataset.steps = String(this.history.length);
  }

  drawRates() {
    const ctx = this.rates.getContext("2d");
    clear(ctx);
    const { width, height } = this.rates;
    const column = STEP_CSS_PX * (window.devicePixelRatio || 1);
    const x0 = width - this.history.length * column;
    const ratio = window.devicePixelRatio || 1;
    const top = Math.max(0.3, ...this.history.map((e) => Math.max(e.rateE, e.rateI)));
    const y = (r) => height - 2 * ratio - (r / top) * (height - 18 * ratio);
    ctx.strokeStyle = COLORS.text;
    ctx.lineWidth = ratio;
    ctx.setLineDash([4 * ratio, 4 * ratio]);
    ctx.beginPath();
    ctx.moveTo(0, Math.round(y(TARGET_RATE)));
    ctx.lineTo(width, Math.round(y(TARGET_RATE)));
    ctx.stroke();
    ctx.setLineDash([]);
    const title = `firing rate (top ${(100 * top).toFixed(0)} %) · dashed: H_IP ${TARGET_RATE}`;
    label(ctx, title, 6, 2);
    for (const [key, color] of [["rateI", COLORS.i], ["rateE", COLORS.e]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2 * ratio;
      ctx.beginPath();
      let smooth = null;
      this.history.forEach((entry, j) => {
        smooth = smooth === null ? entry[key] : 0.8 * smooth + 0.2 * entry[key];
        const point = [x0 + (j + 0.5) * column, y(smooth)];
        if (j === 0) ctx.moveTo(...point);
        else ctx.lineTo(...point);
      });
      ctx.stroke();
    }
  }

  drawHistogram() {
    if (!fitCanvas(this.histogram)) return;
    const ctx = this.histogram.getContext("2d");
    clear(ctx);
    const { width, height } = this.histogram;
    const histogram = this.lastStats?.weight_histogram;
    const counts = histogram?.counts ?? [];
    if (!counts.length) {
      label(ctx, "Weight histogram appears with the first network stats.", 8, 8);
      return;
    }
    const edges = histogram.edges ?? [];
    const top = Math.log10(1 + Math.max(...counts));
    const ratio = window.devicePixelRatio || 1;
    const barWidth = width / counts.length;
    const plot = height - 16 * ratio; // bars end here; the axis labels go below
    ctx.fillStyle = COLORS.bar;
    counts.forEach((count, k) => {
      const barHeight = top > 0 ? (Math.log10(1 + count) / top) * (plot - 16 * ratio) : 0;
      ctx.fillRect(k * barWidth, plot - barHeight, Math.max(1, barWidth - 1), barHeight);
    });
    const logBins = edges.length > 2 && edges[0] > 0
      && Math.abs(edges[2] / edges[1] - edges[1] / edges[0]) < 1e-6 * (edges[1] / edges[0]);
    label(ctx, `E→E weights${logBins ? " (log axis)" : ""} · height: log count`, 6, 2);
    const edge = (x) => (typeof x === "number" ? x.toPrecision(2) : "");
    label(ctx, edge(edges[0]), 2, plot + 2 * ratio);
    label(ctx, edge(edges.at(-1)), width - 2, plot + 2 * ratio, "right");
  }
}
