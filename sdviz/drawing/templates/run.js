const steps = DATA.steps, slider = document.getElementById("slider");
document.getElementById("noise-caption").textContent = DATA.prediction || "predicted noise";
slider.max = steps.length - 1; slider.value = steps.length - 1;
const shape = s => s.join(" × ");
[["text", say("diagram.text"), say("page.token_embeddings"), DATA.shapes.token_embeddings],
 ["unet", DATA.denoiser, say("page.latents"), DATA.shapes.latents],
 ["vae", say("page.decoder"), say("page.image"), DATA.shapes.image]].forEach(([cls, name, what, dims], k) => {
  const box = el("div", undefined, "box " + cls); box.appendChild(el("b", name)); box.appendChild(el("code", shape(dims)));
  box.appendChild(el("div", what)); const diagram = document.getElementById("diagram");
  if (k) diagram.appendChild(el("div", "→", "arrow")); diagram.appendChild(box); });
const strip = document.getElementById("filmstrip"), thumbs = [];
if (DATA.noise) { const f = el("figure"); const img = el("img"); picture(img, DATA.noise); f.appendChild(img);
  f.appendChild(el("figcaption", say("filmstrip.noise"))); strip.appendChild(f); }
DATA.filmstrip.forEach(k => { const f = el("figure"); const img = el("img"); picture(img, steps[k].x_t);
  f.appendChild(img); f.appendChild(el("figcaption", say("filmstrip.step", {step: steps[k].index + 1}))); f.dataset.k = k;
  f.addEventListener("click", () => { slider.value = k; show(); }); strip.appendChild(f); thumbs.push(f); });
const table = document.getElementById("settings");
DATA.settings.forEach(([name, value]) => { const tr = el("tr"); tr.appendChild(el("td", name)); tr.appendChild(el("td", value));
  table.appendChild(tr); });
const chips = document.getElementById("chips"), heat = DATA.heat, canvas = document.getElementById("heat");
let word = -1;
DATA.slots.forEach(([token, kind]) => chips.appendChild(el("span", token, kind)));
if (DATA.padding) chips.appendChild(el("span", say("page.padding", {count: DATA.padding})));
const words = Array.from(chips.querySelectorAll(".word"));
words.forEach((chip, w) => chip.addEventListener("click", () => { word = word === w ? -1 : w; show(); }));
const mapBytes = heat ? Uint8Array.from(atob(heat.maps), c => c.charCodeAt(0)) : null;
document.getElementById("heat-note").textContent = say(heat ? "page.heat_note" : "page.no_heat");
const JET = [[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]];
function drawHeat(k) {
  const on = heat && word >= 0; canvas.style.display = on ? "block" : "none";
  words.forEach((chip, w) => chip.classList.toggle("on", w === word));
  if (!on) return;
  const [h, w] = heat.size, size = h * w, offset = (k * heat.words.length + word) * size;
  canvas.width = w; canvas.height = h; const ctx = canvas.getContext("2d"), image = ctx.createImageData(w, h);
  for (let i = 0; i < size; i++) {
    const v = mapBytes[offset + i] / 255, p = v * (JET.length - 1), lo = Math.min(Math.floor(p), JET.length - 2), f = p - lo;
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = JET[lo][c] * (1 - f) + JET[lo + 1][c] * f;
    image.data[4 * i + 3] = 255 * 0.55 * (0.35 + 0.65 * v);
  }
  ctx.putImageData(image, 0, 0);
}
const noiseFigure = document.getElementById("noise-figure");
const guided = steps.some(s => s.x0_uncond);
document.getElementById("guidance-section").style.display = guided ? "" : "none";
let moveMark = null;
if (DATA.distance) {
  const d = DATA.distance, xs = steps.map((s, k) => k / Math.max(steps.length - 1, 1));
  moveMark = curves(document.getElementById("distance"), [
    {name: say("explore.x0"), colour: "#d62728", points: d.x0.map((y, k) => [xs[k], y])},
    {name: "x_t", colour: "#1f77b4", points: d.x_t.map((y, k) => [xs[k], y])}]);
  document.getElementById("distance-note").textContent = say("page.distance_note") +
    (d.settled ? WORDS["sentence.gap"] + say("page.settles", {step: d.settled, total: DATA.total}) : "");
} else document.getElementById("distance-section").style.display = "none";
let markPath = null;
if (DATA.map) {  // a click on a point goes to the shown step nearest to it
  const nearest = index => steps.reduce((best, s, k) => Math.abs(s.index - index) < Math.abs(steps[best].index - index)
    ? k : best, 0);
  markPath = pathMap(document.getElementById("path"), [{name: "", colour: "#1f77b4", points: DATA.map.points,
    x0: DATA.map.x0_points}], DATA.map.explained, (run, index) => { slider.value = nearest(index); show(); });
} else document.getElementById("path-section").style.display = "none";
function show() {
  const k = +slider.value, s = steps[k];
  picture(document.getElementById("x_t"), s.x_t); picture(document.getElementById("x0"), s.x0);
  noiseFigure.style.display = s.noise ? "" : "none"; if (s.noise) picture(document.getElementById("noise"), s.noise);
  if (guided) { picture(document.getElementById("x0_uncond"), s.x0_uncond); picture(document.getElementById("x0_cond"), s.x0_cond); }
  document.getElementById("step-label").textContent = say("page.step_label", {step: s.index + 1, total: DATA.total,
    timestep: +s.timestep.toFixed(2), sigma: s.sigma.toFixed(4)});
  thumbs.forEach(f => f.classList.toggle("on", +f.dataset.k === k));
  drawHeat(k); if (moveMark) moveMark(k / Math.max(steps.length - 1, 1));
  if (markPath) markPath([s.index]);
}
let timer = null;
document.getElementById("play").addEventListener("click", () => {
  if (timer) { clearInterval(timer); timer = null; return; }
  if (+slider.value === steps.length - 1) slider.value = 0;
  timer = setInterval(() => { if (+slider.value >= steps.length - 1) { clearInterval(timer); timer = null; return; }
    slider.value = +slider.value + 1; show(); }, 250);
});
slider.addEventListener("input", show);
show();
