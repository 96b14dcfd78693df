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
let moveMark = () => {};
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
}
slider.addEventListener("input", show);
by.addEventListener("change", () => { plot(); show(); });
plot(); show();
