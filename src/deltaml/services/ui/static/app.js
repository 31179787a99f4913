/* DeltaML node UI: our own small script (no library). It draws the MSE charts as
 * inline SVG, keeps the live parts of a page up to date by polling the node's small
 * JSON endpoints, and marks forms busy while the node works. Every page works
 * without it too: the server renders the same numbers as a table. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var FINAL = ["FINISHED", "FAILED", "CANCELLED"];
  var M = { left: 64, right: 18, top: 16, bottom: 40 };

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined || !isFinite(value)) { return "—"; }
    return Number(value).toLocaleString("en-US", { maximumSignificantDigits: 6 });
  }

  function shortFmt(value) {
    return Number(value).toLocaleString("en-US", { maximumSignificantDigits: 4 });
  }

  /* A "nice" step (1, 2 or 5 times a power of ten) near span / count. */
  function niceStep(span, count) {
    var raw = span / Math.max(1, count);
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var unit = raw / power;
    return (unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10) * power;
  }

  /* Drawn at the size it is shown (text stays at its real size), again on resize. */
  function drawChart(figure, points, rounds) {
    var area = figure.querySelector(".chart-area");
    var caption = "Validation MSE by round";
    figure.chartPoints = points;
    figure.chartRounds = rounds;
    var W = Math.max(280, Math.round(area.clientWidth || 640));
    var H = Math.round(Math.min(320, Math.max(200, W * 0.38)));
    while (area.firstChild) { area.removeChild(area.firstChild); }
    if (!points.length) {
      var empty = document.createElement("p");
      empty.className = "chart-empty";
      empty.textContent = figure.getAttribute("data-empty") ||
        "No metric yet: the chart starts when the first evaluation is published.";
      area.appendChild(empty);
      area.setAttribute("aria-label", caption + ": no data yet");
      return;
    }
    var lastRound = points[points.length - 1].round;
    var maxX = Math.max(1, rounds || 0, lastRound);
    var values = points.map(function (p) { return p.mse; });
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
    lo = Math.max(0, lo - pad);
    hi = hi + pad;
    var step = niceStep(hi - lo, 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    var x = function (r) { return M.left + (r / maxX) * (W - M.left - M.right); };
    var y = function (v) { return M.top + (1 - (v - lo) / (hi - lo)) * (H - M.top - M.bottom); };

    var svg = el("svg", {
      viewBox: "0 0 " + W + " " + H, width: W, height: H, "aria-hidden": "true", focusable: "false"
    });
    for (var v = lo; v <= hi + step / 2; v += step) {
      el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }, svg);
      el("text", { class: "tick", x: M.left - 8, y: y(v) + 4, "text-anchor": "end" }, svg)
        .textContent = shortFmt(v);
    }
    var xStep = Math.max(1, Math.ceil(niceStep(maxX, Math.max(2, Math.floor(W / 70)))));
    for (var r = 0; r <= maxX; r += xStep) {
      el("text", { class: "tick", x: x(r), y: H - M.bottom + 18, "text-anchor": "middle" }, svg)
        .textContent = String(r);
    }
    el("text", { class: "tick", x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle" }, svg)
      .textContent = "round";
    el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }, svg);
    el("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }, svg);

    var path = points.map(function (p, i) {
      return (i ? "L" : "M") + x(p.round).toFixed(1) + "," + y(p.mse).toFixed(1);
    }).join(" ");
    var first = points[0], last = points[points.length - 1];
    el("path", {
      class: "area",
      d: path + " L" + x(last.round).toFixed(1) + "," + (H - M.bottom) +
        " L" + x(first.round).toFixed(1) + "," + (H - M.bottom) + " Z"
    }, svg);
    el("path", { class: "line", d: path }, svg);
    points.forEach(function (p, i) {
      var dot = el("circle", {
        class: "point" + (i === points.length - 1 ? " point-last" : ""),
        cx: x(p.round), cy: y(p.mse), r: 4, "data-round": p.round
      }, svg);
      el("title", {}, dot).textContent = "Round " + p.round + ": MSE " + fmt(p.mse);
    });
    area.appendChild(svg);
    area.setAttribute("aria-label", caption + ": " + points.length + " points, from " +
      fmt(first.mse) + " at round " + first.round + " to " + fmt(last.mse) + " at round " + last.round);
    figure.setAttribute("data-drawn", String(points.length));

    var body = figure.querySelector("[data-chart-table]");
    if (body) {
      while (body.firstChild) { body.removeChild(body.firstChild); }
      points.forEach(function (p) {
        var row = document.createElement("tr");
        [String(p.round), fmt(p.mse)].forEach(function (text) {
          var cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        });
        body.appendChild(row);
      });
    }
  }

  function readPoints(figure) {
    try { return JSON.parse(figure.getAttribute("data-points") || "[]"); } catch (e) { return []; }
  }

  var submitting = false;

  function userIsBusy() {
    if (submitting) { return true; }  /* a reload now would drop the form's answer */
    var active = document.activeElement;
    var tag = active && active.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return true; }
    var selection = window.getSelection && window.getSelection();
    return Boolean(selection && String(selection).length);
  }

  /* The page is out of date in more than its live numbers: reload it, unless the user
   * is in the middle of something — then say so and let them choose. */
  function changed(root) {
    if (!userIsBusy()) { window.location.reload(); return true; }
    var note = root.querySelector("[data-live-note]");
    if (note) { note.hidden = false; }
    return false;
  }

  function setField(root, name, value) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach(function (node) {
      if (name === "progress") { node.value = value; node.textContent = String(value); return; }
      if (name === "status") {
        node.textContent = (value && value.text) || String(value.code || value).replace(/_/g, " ");
        value = value.code || value;
        node.className = "badge status-" + String(value).toLowerCase();
        node.setAttribute("data-status", value);
        return;
      }
      node.textContent = value;
    });
  }

  function poll(root, every, apply) {
    var url = root.getAttribute("data-src");
    var stopped = false;
    function tick() {
      if (stopped) { return; }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); throw new Error("logged out"); }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          var wait = apply(data);
          if (wait === false) { stopped = true; return; }
          window.setTimeout(tick, wait || every);
        })
        .catch(function () { if (!stopped) { window.setTimeout(tick, every * 3); } });
    }
    window.setTimeout(tick, every);
  }

  function liveRequest(root) {
    var version = root.getAttribute("data-version");
    var figure = root.querySelector("[data-chart]");
    poll(root, 1500, function (data) {
      setField(root, "status", { code: data.status, text: data.status_text });
      setField(root, "rounds_done", String(data.rounds_done));
      setField(root, "progress", data.rounds_done);
      setField(root, "initial_text", data.initial_text);
      setField(root, "latest_text", data.latest_text);
      setField(root, "improvement_text", data.improvement_text);
      if (figure) {
        var drawn = Number(figure.getAttribute("data-drawn") || "0");
        if (drawn !== data.points.length) { drawChart(figure, data.points, data.rounds); }
      }
      if (data.version !== version && changed(root)) { return false; }
      return FINAL.indexOf(data.status) >= 0 ? 5000 : 1500;
    });
  }

  function liveList(root) {
    var version = root.getAttribute("data-version");
    poll(root, 2000, function (data) {
      if (data.version !== version && changed(root)) { return false; }
      return 2000;
    });
  }

  function busyForms() {
    document.querySelectorAll("form").forEach(function (form) {
      form.addEventListener("submit", function () { submitting = true; });
    });
    document.querySelectorAll("form[data-busy]").forEach(function (form) {
      form.addEventListener("submit", function () {
        submitting = true;
        form.setAttribute("aria-busy", "true");
        form.querySelectorAll("button[type=submit]").forEach(function (button) {
          button.disabled = true;
          button.textContent = form.getAttribute("data-busy");
        });
      });
    });
  }

  /* The feature field holds several names: offer every registered column after what is
   * typed up to the last comma (a datalist only completes a whole value). */
  function columnSuggestions() {
    var input = document.querySelector("[data-columns-input]");
    var list = document.getElementById("feature-columns");
    if (!input || !list) { return; }
    var columns;
    try { columns = JSON.parse(list.getAttribute("data-columns") || "[]"); } catch (e) { columns = []; }
    input.addEventListener("input", function () {
      var text = input.value;
      var cut = text.lastIndexOf(",");
      var prefix = cut >= 0 ? text.slice(0, cut + 1) + " " : "";
      var used = text.split(",").map(function (t) { return t.trim(); });
      while (list.firstChild) { list.removeChild(list.firstChild); }
      columns.forEach(function (name) {
        if (used.indexOf(name) >= 0) { return; }
        var option = document.createElement("option");
        option.value = prefix + name;
        list.appendChild(option);
      });
    });
  }

  /* "N owners have these columns and at least M rows", as the buyer types. */
  function marketCount() {
    var box = document.querySelector("[data-market]");
    var form = box && box.closest("form");
    if (!form) { return; }
    var timer = 0;
    function ask() {
      var params = new URLSearchParams();
      ["features", "target", "min_rows"].forEach(function (name) {
        var field = form.elements.namedItem(name);
        params.set(name, field ? field.value : "");
      });
      var owners = form.elements.namedItem("owners");
      var needed = Number(owners ? owners.value : "0");
      fetch(box.getAttribute("data-src") + "?" + params.toString(),
            { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data || !data.text) { return; }
          var text = data.text;
          var short = data.matching !== null && needed > 0 && data.matching < needed;
          if (short) { text += " The request needs " + needed + ": it would be refused."; }
          box.textContent = text;
          box.classList.toggle("market-none", Boolean(short));
          box.setAttribute("data-matching", data.matching === null ? "" : String(data.matching));
        })
        .catch(function () { /* the server checks again on submit */ });
    }
    ["features", "target", "min_rows", "owners"].forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (!field) { return; }
      field.addEventListener("input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(ask, 300);
      });
    });
    var features = form.elements.namedItem("features");
    if (features && features.value) { ask(); }
  }

  function start() {
    document.querySelectorAll("[data-chart]").forEach(function (figure) {
      drawChart(figure, readPoints(figure), Number(figure.getAttribute("data-rounds") || "0"));
    });
    document.querySelectorAll("[data-live]").forEach(liveRequest);
    document.querySelectorAll("[data-live-list]").forEach(liveList);
    document.querySelectorAll("[data-reload]").forEach(function (button) {
      button.addEventListener("click", function () { window.location.reload(); });
    });
    busyForms();
    columnSuggestions();
    marketCount();
    var resizing = 0;
    window.addEventListener("resize", function () {
      window.clearTimeout(resizing);
      resizing = window.setTimeout(function () {
        document.querySelectorAll("[data-chart]").forEach(function (figure) {
          if (figure.chartPoints) { drawChart(figure, figure.chartPoints, figure.chartRounds); }
        });
      }, 150);
    });
    var errors = document.getElementById("form-errors");
    if (errors) { errors.focus(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
