// argen serve's page: runs a method (or every method, Compare) and draws each decode step as it streams in.
"use strict";

const GREY = "#606060";  // positions not decoded yet (the server renders them in the same grey)
const NEW = "#f2b705";   // decoded positions whose pixels come with the next render
const FIELDS = ["guidance", "temperature", "top_k", "top_p", "seed", "images"];

const byId = (id) => document.getElementById(id);
const form = byId("controls"), statusLine = byId("status"), runs = byId("runs");
let catalog = null;  // /api/methods
window.argenEvents = [];  // every event received, for tests and curious users: {method, type, ...data}

function say(text, error = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", error);
}

function method(name) {
  return catalog.methods.find((m) => m.name === name);
}

function fillClasses() {
  const chosen = method(byId("method").value), select = byId("class"), label = select.value;
  select.replaceChildren(...chosen.classes.map((name, index) => new Option(name, index)));
  if (label && label < select.options.length) select.value = label;
  // Left empty, guidance and temperature are the method's own (chosen on a validation split when it was shipped).
  for (const [name, own] of Object.entries(chosen.sampling)) byId(name).placeholder = byId(name).title = `own: ${own}`;
}

function settings() {
  const values = {class: Number(byId("class").value)};
  for (const name of FIELDS) {
    if (byId(name).value !== "") values[name] = Number(byId(name).value);
    else if (catalog.defaults[name] !== null) values[name] = catalog.defaults[name];
  }
  return values;
}

// One run's panel: a canvas (and prologue strip) per image, its counters, its downloads, and after the run a
// slider that replays its steps (a run of a small model is over in a blink).
class Panel {
  constructor(spec, count) {
    this.spec = spec;
    this.root = document.createElement("figure");
    this.root.className = "run";
    this.root.dataset.method = spec.name;
    const caption = document.createElement("figcaption");
    caption.textContent = spec.name;
    this.images = document.createElement("div");
    this.images.className = "images";
    this.stats = document.createElement("div");
    this.stats.className = "stats";
    this.root.append(caption, this.images, this.stats);
    this.history = [];  // {frame, pictures: the frame's images once loaded}, one per step and the finished one
    this.shown = -1;  // the history index on the canvases
    this.slots = [];
    for (let index = 0; index < count; index++) {
      const slot = document.createElement("div");
      slot.className = "image";
      const prologue = document.createElement("div");
      prologue.className = "prologue";
      for (let p = 0; p < spec.prologue; p++) prologue.append(document.createElement("span"));
      const canvas = document.createElement("canvas");
      canvas.width = spec.grid[1] * 8;  // resized to the images once the first one arrives
      canvas.height = spec.grid[0] * 8;
      slot.append(prologue, canvas);
      this.images.append(slot);
      this.slots.push({slot, prologue, canvas});
    }
    this.state("waiting");
    runs.append(this.root);
  }

  state(name) {
    this.root.dataset.state = name;
  }

  // Draw history[at]: its decoded positions over the latest picture rendered at or before it.
  draw(at) {
    this.shown = at;
    const {frame} = this.history[at], [rows, columns] = this.spec.grid;
    this.root.dataset.step = frame.step;
    this.slots.forEach(({prologue, canvas}, index) => {
      const ids = frame.prologue ? frame.prologue[index] : [];
      [...prologue.children].forEach((cell, p) => {
        cell.style.background = p < ids.length ? `hsl(${(ids[p] * 137.5) % 360} 55% 60%)` : GREY;
        cell.title = p < ids.length ? `prologue id ${ids[p]}` : "";
      });
      let source = at;
      while (source >= 0 && !this.history[source].pictures[index]) source--;
      const picture = source >= 0 ? this.history[source].pictures[index] : null;
      const drawn = source >= 0 ? this.history[source].frame.decoded : "";
      if (picture && canvas.width !== picture.width) [canvas.width, canvas.height] = [picture.width, picture.height];
      const context = canvas.getContext("2d"), width = canvas.width / columns, height = canvas.height / rows;
      context.fillStyle = GREY;
      context.fillRect(0, 0, canvas.width, canvas.height);
      if (picture) context.drawImage(picture, 0, 0);
      context.fillStyle = NEW;
      for (let cell = 0; cell < rows * columns; cell++) {
        if (frame.decoded[cell] === "1" && drawn[cell] !== "1") {
          context.fillRect((cell % columns) * width, Math.floor(cell / columns) * height, width, height);
        }
      }
    });
    const speed = `${frame.ms_per_step.toFixed(1)} ms/step · ${frame.images_per_s.toFixed(2)} images/s`;
    this.stats.textContent = frame.stage === "done"
      ? `${frame.steps} steps · ${frame.wall.toFixed(2)} s wall · ${speed}`
      : `step ${frame.step}/${frame.steps} (${frame.stage}) · ${speed}`;
  }

  show(frame) {
    const at = this.history.push({frame, pictures: []}) - 1;
    this.load(at, frame.images || []);
    this.draw(at);
  }

  // A replay frame: the pictures of an earlier step, rendered after the run.
  keyframe(frame) {
    const at = this.history.findIndex((entry) => entry.frame.step === frame.step && entry.frame.stage !== "done");
    if (at >= 0) this.load(at, frame.images);
  }

  // Attach the pictures of history[at] once loaded, redrawing if they belong on the canvases.
  load(at, urls) {
    urls.forEach((url, index) => {
      const picture = new Image();
      picture.onload = () => {
        this.history[at].pictures[index] = picture;
        if (this.shown >= at) this.draw(this.shown);
      };
      picture.src = url;
    });
  }

  finish(frame, settings) {
    this.show(frame);
    const label = method(this.spec.name).classes[settings.class];
    frame.images.forEach((url, index) => {
      const link = document.createElement("a");
      link.href = url;
      const name = `argen-${this.spec.name}-${label}-seed${settings.seed}-${index + 1}.png`;
      link.download = name.replace(/[^\w.+-]+/g, "_");
      link.textContent = "PNG";
      this.slots[index].slot.append(link);
    });
    const replay = document.createElement("input");
    Object.assign(replay, {type: "range", className: "replay", min: 0, max: this.history.length - 1,
                           value: this.history.length - 1, title: "replay the steps"});
    replay.addEventListener("input", () => this.draw(Number(replay.value)));
    this.root.append(replay);
    this.state("done");
  }

  fail(message) {
    this.stats.textContent = message;
    this.state("error");
  }
}

// Server-sent events from a POST: "event: NAME\ndata: JSON\n\n" blocks, read as they arrive.
async function* events(response) {
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const type = /^event: (.*)$/m.exec(block)[1], data = JSON.parse(/^data: (.*)$/m.exec(block)[1]);
      yield {type, data};
    }
  }
}

async function run(panel, settings) {
  const response = await fetch("/api/generate", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({method: panel.spec.name, ...settings}),
  });
  if (!response.ok) {
    const message = (await response.json()).error;
    panel.fail(message);
    throw new Error(message);
  }
  for await (const {type, data} of events(response)) {
    window.argenEvents.push({method: panel.spec.name, type, ...data});
    if (type === "queued") {
      panel.stats.textContent = `queued: ${data.place} run(s) ahead`;
    } else if (type === "step") {
      panel.state("running");
      panel.show(data);
    } else if (type === "done") {
      panel.finish(data, settings);
    } else if (type === "replay") {
      panel.keyframe(data);
    } else if (type === "error") {
      panel.fail(data.message);
      throw new Error(data.message);
    }
  }
}

async function start(names) {
  const values = settings();
  runs.replaceChildren();
  runs.classList.toggle("compare", names.length > 1);
  const panels = names.map((name) => new Panel(method(name), values.images));
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  const label = method(names[0]).classes[values.class];
  say(names.length > 1 ? `Comparing ${names.length} methods, class ${label}, seed ${values.seed}…` : "Running…");
  try {
    for (const panel of panels) await run(panel, values);  // one after another: the server runs one at a time
    say("Done.");
  } catch (error) {
    say(error.message, true);
  } finally {
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
}

async function load() {
  const response = await fetch("/api/methods");
  catalog = await response.json();
  byId("method").replaceChildren(...catalog.methods.map((m) => new Option(`${m.name} (${m.steps} steps)`, m.name)));
  for (const name of FIELDS) {
    byId(name).value = catalog.defaults[name] ?? "";
    if (catalog.limits[name] !== undefined) byId(name).max = catalog.limits[name];
  }
  fillClasses();
  byId("method").addEventListener("change", fillClasses);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start([byId("method").value]);
  });
  byId("compare").addEventListener("click", () => start(catalog.methods.map((m) => m.name)));
  say(`${catalog.methods.length} methods loaded.`);
}

load().catch((error) => say(`Could not load the methods: ${error.message}`, true));
