"use strict";
const DATA = JSON.parse(document.getElementById("sdviz-data").textContent);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; }
const WORDS = DATA.words;  // the page's words in its language (sdviz's message catalogue)
const say = (key, fields) => WORDS[key].replace(/\{(\w+)\}/g, (_, name) => fields[name]);
function picture(img, uri) { img.src = (typeof uri === "string" && uri.startsWith("data:image/")) ? uri : ""; }
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) { const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]); return e; }
function curves(box, series, marker) {
  // series: [{name, colour, points: [[x in 0..1, y]]}]; returns a function that moves the marker to x in 0..1
  const W = +box.getAttribute("width"), H = +box.getAttribute("height"), L = 44, B = 24, T = 8;
  const ys = series.flatMap(s => s.points.map(p => p[1])); const top = Math.max(...ys, 1e-6);
  const X = x => L + x * (W - L - 8), Y = y => T + (1 - y / top) * (H - T - B);
  box.appendChild(svg("line", {x1: L, y1: H - B, x2: W - 8, y2: H - B, stroke: "#999"}));
  box.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}));
  const label = (x, y, text, anchor) => { const t = svg("text", {x: x, y: y, "text-anchor": anchor}); t.textContent = text;
    box.appendChild(t); };
  label(L - 4, T + 8, top.toFixed(3), "end"); label(L - 4, H - B, "0", "end");
  label(L, H - 6, say("page.axis_noise"), "start"); label(W - 8, H - 6, say("page.axis_image"), "end");
  series.forEach((s, k) => {
    box.appendChild(svg("polyline", {points: s.points.map(p => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none",
      stroke: s.colour, "stroke-width": 2}));
    label(W - 10, T + 12 + 13 * k, s.name, "end"); box.lastChild.setAttribute("fill", s.colour);
  });
  const mark = svg("line", {y1: T, y2: H - B, stroke: "#000", "stroke-dasharray": "3 3"}); box.appendChild(mark);
  return x => { mark.setAttribute("x1", X(x)); mark.setAttribute("x2", X(x)); };
}
function pathMap(box, runs, explained, pick) {
  // runs: [{name, colour, points: [[x, y]] (the start, then x_t after each step), x0: [[x, y]] (each step's)}];
  // a click on a point calls pick(run, step index); returns a function that rings each run's point at its step
  const W = +box.getAttribute("width"), H = +box.getAttribute("height"), L = 22, B = 22, T = 10, R = 10, P = 10;
  const all = runs.flatMap(r => r.points.concat(r.x0)), xs = all.map(p => p[0]), ys = all.map(p => p[1]);
  const low = [Math.min(...xs), Math.min(...ys)], span = [Math.max(...xs) - low[0] || 1, Math.max(...ys) - low[1] || 1];
  const X = x => L + P + (x - low[0]) / span[0] * (W - L - R - 2 * P);
  const Y = y => T + P + (1 - (y - low[1]) / span[1]) * (H - T - B - 2 * P);
  box.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"}));
  box.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#999"}));
  const axis = k => explained.length ? say("page.map_axis", {axis: k + 1, percent: (100 * explained[k]).toFixed(1)})
    : say("page.map_umap_axis", {axis: k + 1});
  const label = (x, y, text, attrs) => { const t = svg("text", {x: x, y: y, ...attrs}); t.textContent = text;
    box.appendChild(t); return t; };
  label(W - R, H - 6, axis(0), {"text-anchor": "end"});
  label(14, T, axis(1), {"text-anchor": "end", transform: "rotate(-90 14 " + T + ")"});
  const dot = (p, r, attrs, run, step, title) => { const c = svg("circle", {cx: X(p[0]), cy: Y(p[1]), r: r, ...attrs});
    c.classList.add("point"); c.dataset.run = run; c.dataset.step = step;
    const t = svg("title", {}); t.textContent = title; c.appendChild(t);
    c.addEventListener("click", () => pick(run, step)); box.appendChild(c); return c; };
  const rings = runs.map((r, n) => {
    box.appendChild(svg("polyline", {points: r.points.map(p => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none",
      stroke: r.colour, "stroke-width": 1.5}));
    r.x0.forEach((p, k) => dot(p, 3, {fill: r.colour, "fill-opacity": 0.4}, n, k,
      say("explore.x0") + " · " + say("filmstrip.step", {step: k + 1})));
    r.points.forEach((p, k) => k ? dot(p, 3, {fill: r.colour}, n, k - 1, "x_t · " + say("filmstrip.step", {step: k}))
      : dot(p, 6, {fill: "#fff", stroke: r.colour, "stroke-width": 2}, n, 0, say("page.map_start")));
    if (r.name) label(W - R - 4, T + 12 + 14 * n, r.name, {"text-anchor": "end", fill: r.colour});
    const ring = () => { const c = svg("circle", {r: 7, fill: "none", stroke: "#000", "stroke-width": 2,
      "pointer-events": "none"}); box.appendChild(c); return c; };
    return [ring(), ring()];
  });
  return steps => rings.forEach(([xt, x0], n) => { const k = steps[n], on = k !== null && k !== undefined;
    xt.style.display = x0.style.display = on ? "" : "none"; if (!on) return;
    const p = runs[n].points[k + 1], q = runs[n].x0[k];
    xt.setAttribute("cx", X(p[0])); xt.setAttribute("cy", Y(p[1])); x0.setAttribute("cx", X(q[0])); x0.setAttribute("cy", Y(q[1])); });
}
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
document.getElementById("prompt").textContent = DATA.prompt || "(no prompt)";
