// Charts. The server says whether and how a result can be charted (`chart`: kind, label column,
// numeric columns; slmsql_cli/chart.py). Drawn here as SVG built with DOM calls: a few dozen
// lines, where a chart library would mean a CDN or a vendored file, and a build step.

import { $, el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const SERIES_COLOURS = ["#0b5cad", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function shortLabel(value, max = 18) {
  const text = value === null ? "NULL" : String(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function drawChart(result) {
  const box = $("chart");
  box.replaceChildren();
  const spec = result.chart;
  if (!spec) return false;
  const labels = result.rows.map((row) => row[spec.label]);
  const series = spec.values.map((i) => ({ name: result.columns[i], values: result.rows.map((row) => row[i]) }));
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const low = Math.min(0, ...all);
  const high = Math.max(0, ...all) || 1;
  const left = 150, right = 20, top = 10, width = 760;
  const plot = width - left - right;
  const x = (v) => left + ((v - low) / (high - low)) * plot;
  let chart;
  if (spec.kind === "line") {
    const height = 260, bottom = 40;
    const plotHeight = height - top - bottom;
    const y = (v) => top + plotHeight - ((v - low) / (high - low)) * plotHeight;
    // x by value when the labels are numbers or dates (gaps show as gaps), else one step per row
    const asNumbers = labels.map((l) => (typeof l === "number" ? l : Date.parse(String(l).length === 4 ? `${l}-01-01` : String(l))));
    const spaced = asNumbers.every(Number.isFinite) && asNumbers[asNumbers.length - 1] > asNumbers[0];
    const first = asNumbers[0], span = asNumbers[asNumbers.length - 1] - asNumbers[0];
    const xAt = (i) => left + (spaced ? ((asNumbers[i] - first) / span) * plot : labels.length > 1 ? (i * plot) / (labels.length - 1) : 0);
    chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Line chart of ${series.map((s) => s.name).join(", ")} by ${result.columns[spec.label]}` });
    chart.append(svg("line", { x1: left, x2: left + plot, y1: y(0), y2: y(0), class: "axis" }));
    chart.append(svg("text", { x: left - 6, y: y(high) + 4, "text-anchor": "end", class: "tick" }, String(high)));
    chart.append(svg("text", { x: left - 6, y: y(low) + 4, "text-anchor": "end", class: "tick" }, String(low)));
    const every = Math.max(1, Math.ceil(labels.length / 10));
    labels.forEach((label, i) => {
      if (i % every === 0 || i === labels.length - 1) {
        chart.append(svg("text", { x: xAt(i), y: height - bottom + 18, "text-anchor": "middle", class: "tick" }, shortLabel(label, 12)));
      }
    });
    series.forEach((s, k) => {
      const points = s.values.map((v, i) => (v === null ? null : `${xAt(i)},${y(v)}`)).filter(Boolean);
      chart.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: SERIES_COLOURS[k % SERIES_COLOURS.length], "stroke-width": 2, class: "series" }));
      s.values.forEach((v, i) => {
        if (v === null) return;
        const dot = svg("circle", { cx: xAt(i), cy: y(v), r: 3, fill: SERIES_COLOURS[k % SERIES_COLOURS.length] });
        dot.append(svg("title", {}, `${shortLabel(labels[i], 60)} · ${s.name}: ${v}`));
        chart.append(dot);
      });
    });
  } else {
    const bar = 16, gap = 6, group = series.length * bar + gap;
    const height = top + labels.length * group + 10;
    chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Bar chart of ${series.map((s) => s.name).join(", ")} by ${result.columns[spec.label]}` });
    labels.forEach((label, i) => {
      const y0 = top + i * group;
      chart.append(svg("text", { x: left - 8, y: y0 + (series.length * bar) / 2 + 4, "text-anchor": "end", class: "tick" }, shortLabel(label)));
      series.forEach((s, k) => {
        const v = s.values[i];
        if (v === null) return;
        const rect = svg("rect", { x: Math.min(x(0), x(v)), y: y0 + k * bar, width: Math.max(Math.abs(x(v) - x(0)), 1), height: bar - 2, fill: SERIES_COLOURS[k % SERIES_COLOURS.length], class: "bar" });
        rect.append(svg("title", {}, `${shortLabel(label, 60)} · ${s.name}: ${v}`));
        chart.append(rect);
      });
    });
    chart.append(svg("line", { x1: x(0), x2: x(0), y1: top, y2: height - 10, class: "axis" }));
  }
  const legend = el("figcaption", {}, ...series.map((s, k) => el("span", { className: "legend" },
    el("span", { className: "swatch", style: `background:${SERIES_COLOURS[k % SERIES_COLOURS.length]}` }),
    `${s.name}`)));
  legend.append(` by ${result.columns[spec.label]}`);
  box.append(chart, legend);
  return true;
}
