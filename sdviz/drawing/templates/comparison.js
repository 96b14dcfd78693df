const variants = DATA.variants, slider = document.getElementById("slider"), by = document.getElementById("by");
by.value = DATA.by;
const columns = variants.map((v, n) => {
  const f = el("figure"); f.appendChild(el("div", (n + 1) + ": " + v.label, "label"));
  const xt = el("img"), x0 = el("img"); xt.alt = "x_t"; x0.alt = "predicted x0"; f.appendChild(xt); f.appendChild(x0);
  const cap = el("figcaption"); f.appendChild(cap); document.getElementById("variants").appendChild(f);
  const g = el("figure"); g.appendChild(el("div", (n + 1) + ": " + v.label, "label")); const fin = el("img");
  picture(fin, v.final); g.appendChild(fin); document.getElementById("finals").appendChild(g);
  return {xt, x0, cap};
});
let moveMark = () => {}, markPath = null, moveParting = null;
if (DATA.map) {  // a click on a variant's point moves the shared slider to that step of it
  const runs = DATA.map.runs;
  markPath = pathMap(document.getElementById("path"), runs.map(r => ({name: (r.variant + 1) + ": " +
    variants[r.variant].label, colour: COLOURS[r.variant % COLOURS.length], points: r.points, x0: r.x0_points})),
    DATA.map.explained, (run, index) => {
      slider.value = Math.round(100 * DATA.positions[by.value][runs[run].variant][index]); show(); });
} else document.getElementById("path-section").style.display = "none";
if (DATA.parting && DATA.parting.length) {
  const partings = DATA.parting, text = document.getElementById("parting-text");
  partings.forEach(p => text.appendChild(el("p", p.parted_at
    ? say("page.parts_at", {variant: p.variant + 1, against: p.against + 1, step: p.parted_at, threshold: p.threshold})
    : say("page.never_parts", {variant: p.variant + 1, against: p.against + 1, threshold: p.threshold}))));
  const threshold = partings[0].threshold;
  moveParting = curves(document.getElementById("parting"), partings.map(p => ({
    name: say("page.versus", {variant: p.variant + 1, against: p.against + 1}),
    colour: COLOURS[p.variant % COLOURS.length], points: p.x0.map((y, k) => [k / Math.max(p.x0.length - 1, 1), y])}))
    .concat([{name: say("page.threshold"), colour: "#999", points: [[0, threshold], [1, threshold]]}]));
} else document.getElementById("parting-section").style.display = "none";
function plot() {
  const box = document.getElementById("distance"); while (box.firstChild) box.removeChild(box.firstChild);
  moveMark = curves(box, variants.map((v, n) => ({name: (n + 1) + ": " + v.label, colour: COLOURS[n % COLOURS.length],
    points: (v.distance || []).map((y, k) => [DATA.positions[by.value][n][k], y])})));
}
function show() {
  const p = +slider.value, indices = DATA.at[by.value][p];
  variants.forEach((v, n) => { const k = indices[n], c = columns[n];
    if (k === null) { c.cap.textContent = say("page.not_run"); return; }
    picture(c.xt, v.steps[k].x_t); picture(c.x0, v.steps[k].x0);
    c.cap.textContent = say("page.variant_step", {step: k + 1, total: v.total, sigma: +v.steps[k].sigma.toPrecision(3)}); });
  document.getElementById("step-label").textContent = say("page.position", {percent: p, by: by.value});
  moveMark(p / 100);
  if (markPath) markPath(DATA.map.runs.map(r => indices[r.variant]));
  if (moveParting) moveParting(p / 100);
}
slider.addEventListener("input", show);
by.addEventListener("change", () => { plot(); show(); });
plot(); show();
