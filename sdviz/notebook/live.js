// sdviz.live: the page's side of the live widget. The kernel's thread sets the traits as the run goes;
// this draws them, and the Stop button sets stop_requested. When the run has ended, `page` holds the
// finished run's explorer, shown in a sandboxed frame (its script runs in an origin of its own).
function render({ model, el }) {
  const make = (tag, className, parent) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (parent) parent.appendChild(node);
    return node;
  };
  const word = (key) => (model.get("words") || {})[key] || key;
  el.classList.add("sdviz-live");
  const live = make("div", "sdviz-live-run", el);
  const pictures = make("div", "sdviz-live-pictures", live);
  const figure = (key) => {
    const box = make("figure", "", pictures);
    const image = make("img", "", box);
    image.alt = word(key);
    make("figcaption", "", box).textContent = word(key);
    return image;
  };
  const xt = figure("explore.x_t");
  const x0 = figure("explore.x0");
  const bar = make("div", "sdviz-live-bar", live);
  const progress = make("progress", "", bar);
  const stop = make("button", "sdviz-live-stop", bar);
  stop.type = "button";
  stop.textContent = word("notebook.stop");
  const status = make("div", "sdviz-live-status", el);  // stays when the explorer takes the live view's place
  const frame = make("iframe", "sdviz-live-page", el);
  frame.setAttribute("sandbox", "allow-scripts");
  frame.hidden = true;

  function draw() {
    const state = model.get("state");
    if (model.get("x_t")) xt.src = model.get("x_t");
    if (model.get("x0")) x0.src = model.get("x0");
    progress.max = Math.max(1, model.get("total"));
    progress.value = model.get("step");
    status.textContent = model.get("status");
    stop.disabled = state !== "running";
    el.dataset.state = state;
    const page = model.get("page");
    if (page && frame.srcdoc !== page) {
      frame.srcdoc = page;
      frame.hidden = false;
      live.hidden = true;
    }
  }
  stop.addEventListener("click", () => {
    model.set("stop_requested", true);
    model.save_changes();
  });
  model.on("change", draw);
  draw();
  return () => model.off("change", draw);
}

export default { render };
