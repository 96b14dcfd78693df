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
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
document.getElementById("prompt").textContent = DATA.prompt || "(no prompt)";
