// Created and completed tasks per second over the last five minutes, drawn
// on a canvas by hand (no chart library: the page loads nothing from
// elsewhere and this is about a hundred lines).
//
// taskd's counts stream says how many tasks were created and completed since
// its previous counts event; add() spreads such a count over the span of
// wall time it covers, one-second buckets, so that rates stay per second
// whatever the event spacing.

const LINE_COLORS = { created: '--created', completed: '--completed' };
const STEP = 5; // seconds per plotted point

export class RateChart {
  constructor(canvas, { windowSeconds = 300 } = {}) {
    this.canvas = canvas;
    this.windowSeconds = windowSeconds;
    this.buckets = new Map(); // epoch second -> {created, completed}
    // Redraw sharp on resizes and on moving between screens of other DPIs.
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  // Counts that happened within (endMs - spanMs, endMs].
  add(created, completed, endMs, spanMs) {
    if (!created && !completed) return;
    const startMs = endMs - Math.max(spanMs, 1);
    for (let second = Math.floor(startMs / 1000); second * 1000 < endMs; second++) {
      const overlap = Math.min(endMs, (second + 1) * 1000) - Math.max(startMs, second * 1000);
      if (overlap <= 0) continue;
      const share = overlap / (endMs - startMs);
      const bucket = this.buckets.get(second) || { created: 0, completed: 0 };
      bucket.created += created * share;
      bucket.completed += completed * share;
      this.buckets.set(second, bucket);
    }
    this.prune(endMs);
  }

  prune(nowMs) {
    const oldest = Math.floor(nowMs / 1000) - this.windowSeconds - 1;
    for (const second of this.buckets.keys()) {
      if (second < oldest) this.buckets.delete(second);
    }
  }

  // Average rates over the last `seconds` complete seconds.
  rates(nowMs, seconds = 10) {
    const last = Math.floor(nowMs / 1000) - 1;
    let created = 0;
    let completed = 0;
    for (let s = last - seconds + 1; s <= last; s++) {
      const bucket = this.buckets.get(s);
      if (bucket) {
        created += bucket.created;
        completed += bucket.completed;
      }
    }
    return { created: created / seconds, completed: completed / seconds };
  }

  draw(nowMs = Date.now()) {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const style = getComputedStyle(canvas);
    const color = (name) => style.getPropertyValue(name).trim() || '#888';
    const font = `12px ${style.fontFamily}`;

    // Points of STEP seconds (their average rate): at the low rates of a
    // quiet day, one-second points are needles too thin to see. The
    // current second is still filling up and would always dip; it is left
    // out.
    const points = this.windowSeconds / STEP;
    const last = Math.floor(nowMs / 1000) - 1;
    const series = { created: [], completed: [] };
    let max = 0;
    for (let p = 0; p < points; p++) {
      const end = last - (points - 1 - p) * STEP;
      let created = 0;
      let completed = 0;
      for (let s = end - STEP + 1; s <= end; s++) {
        const bucket = this.buckets.get(s);
        if (bucket) {
          created += bucket.created;
          completed += bucket.completed;
        }
      }
      series.created.push(created / STEP);
      series.completed.push(completed / STEP);
      max = Math.max(max, created / STEP, completed / STEP);
    }
    const top = niceCeiling(max);

    const pad = { left: 44, right: 8, top: 8, bottom: 20 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const x = (i) => pad.left + (i / (points - 1)) * plotW;
    const y = (v) => pad.top + plotH - (v / top) * plotH;

    ctx.font = font;
    ctx.lineWidth = 1;
    ctx.strokeStyle = color('--grid');
    ctx.fillStyle = color('--muted');
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const fraction of [0, 0.5, 1]) {
      const v = top * fraction;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(formatRate(v), pad.left - 6, yy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let minute = 5; minute >= 0; minute--) {
      const i = Math.max(0, points - 1 - (minute * 60) / STEP);
      ctx.textAlign = minute === 0 ? 'right' : minute === 5 ? 'left' : 'center';
      ctx.fillText(minute === 0 ? 'now' : `-${minute}m`, x(i), pad.top + plotH + 5);
    }

    for (const name of ['created', 'completed']) {
      const values = series[name];
      const stroke = color(LINE_COLORS[name]);
      ctx.beginPath();
      values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
      ctx.strokeStyle = stroke;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.stroke();
      // A faint fill under the line, so the two series read as areas.
      ctx.lineTo(x(values.length - 1), y(0));
      ctx.lineTo(x(0), y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = stroke;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
  }
}

// 0.2, 0.5, 1, 2, 5, 10, 20, ... at or above v, so the axis labels stay
// round (and one task in a quiet minute still makes a visible bump).
function niceCeiling(v) {
  if (v <= 0.2) return 0.2;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) {
    if (v <= step * magnitude * (1 + 1e-9)) return step * magnitude;
  }
  return 10 * magnitude;
}

export function formatRate(v) {
  if (v === 0) return '0';
  if (v < 1) return v.toFixed(2).replace(/0$/, '');
  if (v < 10) return v.toFixed(1).replace(/\.0$/, '');
  return Math.round(v).toLocaleString('en-US');
}
