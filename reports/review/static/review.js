/* The review pages' only script: zoom, calipers and keyboard shortcuts. Served by the app
   itself (Content-Security-Policy script-src 'self'); the pages work without it as plain forms.

   The ECG drawings are SVG whose unit is one millimetre of paper at 25 mm/s and 10 mm/mV;
   each .ecg-frame carries that geometry in data- attributes, so a click's position on the
   image turns back into time (ms) and voltage (mV) at any zoom. */
(function () {
  "use strict";

  var ZOOMS = [1, 1.5, 2, 3, 4, 6, 8];  // times the width that fits the frame
  var zoomIndex = 0;
  var paperSize = false;  // true: the drawing at its nominal paper size (CSS millimetres)

  function frames() {
    return Array.prototype.slice.call(document.querySelectorAll(".ecg-frame"));
  }

  function geometry(frame) {
    var d = frame.dataset;
    return {
      widthMm: parseFloat(d.widthMm), heightMm: parseFloat(d.heightMm),
      mmPerS: parseFloat(d.mmPerS), mmPerMv: parseFloat(d.mmPerMv)
    };
  }

  // ------------------------------------------------------------------ zoom

  function applyZoom() {
    frames().forEach(function (frame) {
      var canvas = frame.querySelector(".ecg-canvas");
      if (!canvas) { return; }
      var centre = (frame.scrollLeft + frame.clientWidth / 2) / Math.max(1, canvas.offsetWidth);
      var middle = (frame.scrollTop + frame.clientHeight / 2) / Math.max(1, canvas.offsetHeight);
      var g = geometry(frame);
      if (paperSize && g.widthMm) {
        canvas.style.width = g.widthMm + "mm";
      } else {
        canvas.style.width = (ZOOMS[zoomIndex] * 100) + "%";
      }
      frame.scrollLeft = centre * canvas.offsetWidth - frame.clientWidth / 2;
      frame.scrollTop = middle * canvas.offsetHeight - frame.clientHeight / 2;
      placeCalipers(frame);
    });
    var readouts = document.querySelectorAll(".zoom-readout");
    var first = frames()[0];
    var text = "";
    if (first && first.dataset.widthMm) {
      var canvas = first.querySelector(".ecg-canvas");
      text = (canvas.offsetWidth / parseFloat(first.dataset.widthMm)).toFixed(1) + " px/mm";
    }
    Array.prototype.forEach.call(readouts, function (el) { el.textContent = text; });
  }

  function zoom(how) {
    if (how === "in") { paperSize = false; zoomIndex = Math.min(ZOOMS.length - 1, zoomIndex + 1); }
    if (how === "out") { paperSize = false; zoomIndex = Math.max(0, zoomIndex - 1); }
    if (how === "fit") { paperSize = false; zoomIndex = 0; }
    if (how === "paper") { paperSize = true; }
    applyZoom();
  }

  // ------------------------------------------------------------------ calipers

  var calipers = new Map();  // frame -> [{xMm, yMm}, ...] (at most two)

  function pointOf(frame, event) {
    var canvas = frame.querySelector(".ecg-canvas");
    var box = canvas.getBoundingClientRect();
    var g = geometry(frame);
    return {
      xMm: (event.clientX - box.left) / box.width * g.widthMm,
      yMm: (event.clientY - box.top) / box.height * g.heightMm
    };
  }

  function readoutOf(frame) {
    var next = frame.nextElementSibling;
    return next && next.classList.contains("caliper-readout") ? next : null;
  }

  function marker(canvas, className) {
    var el = document.createElement("div");
    el.className = "caliper " + className;
    canvas.appendChild(el);
    return el;
  }

  function placeCalipers(frame) {
    var canvas = frame.querySelector(".ecg-canvas");
    if (!canvas) { return; }
    Array.prototype.forEach.call(canvas.querySelectorAll(".caliper"), function (el) { el.remove(); });
    var points = calipers.get(frame) || [];
    var g = geometry(frame);
    points.forEach(function (p) {
      var line = marker(canvas, "leg");
      line.style.left = (p.xMm / g.widthMm * 100) + "%";
    });
    if (points.length === 2) {
      var a = points[0], b = points[1];
      var bar = marker(canvas, "bar");
      bar.style.left = (Math.min(a.xMm, b.xMm) / g.widthMm * 100) + "%";
      bar.style.width = (Math.abs(b.xMm - a.xMm) / g.widthMm * 100) + "%";
      bar.style.top = (a.yMm / g.heightMm * 100) + "%";
      var level = marker(canvas, "level");
      level.style.left = (Math.min(a.xMm, b.xMm) / g.widthMm * 100) + "%";
      level.style.width = (Math.abs(b.xMm - a.xMm) / g.widthMm * 100) + "%";
      level.style.top = (b.yMm / g.heightMm * 100) + "%";
    }
  }

  function describe(frame) {
    var out = readoutOf(frame);
    if (!out) { return; }
    var points = calipers.get(frame) || [];
    var g = geometry(frame);
    if (points.length < 2) {
      out.textContent = points.length ? "Calipers: click the second point." : "Calipers: click two points on the ECG.";
      delete out.dataset.ms;
      return;
    }
    var ms = Math.abs(points[1].xMm - points[0].xMm) / g.mmPerS * 1000;
    var mv = (points[0].yMm - points[1].yMm) / g.mmPerMv;  // up is positive on paper
    out.dataset.ms = ms.toFixed(1);
    out.dataset.mv = mv.toFixed(3);
    out.textContent = "Calipers: " + Math.round(ms) + " ms" +
      (ms > 0 ? " (" + (60000 / ms).toFixed(0) + " /min)" : "") +
      " · " + (mv >= 0 ? "+" : "") + mv.toFixed(2) + " mV";
  }

  function clearCalipers() {
    frames().forEach(function (frame) { calipers.set(frame, []); placeCalipers(frame); describe(frame); });
  }

  function setUpCalipers(frame) {
    if (!frame.dataset.widthMm) { return; }  // a scanned page: no known scale
    frame.classList.add("measurable");
    frame.addEventListener("click", function (event) {
      if (!event.target.closest(".ecg-canvas")) { return; }
      var points = calipers.get(frame) || [];
      if (points.length >= 2) { points = []; }
      points.push(pointOf(frame, event));
      calipers.set(frame, points);
      placeCalipers(frame);
      describe(frame);
    });
  }

  // ------------------------------------------------------------------ keyboard

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function signButton(action) {
    return document.querySelector("form.signoff button[name='action'][value='" + action + "']");
  }

  function sign(action) {
    var button = signButton(action);
    if (!button) { return; }
    var head = document.querySelector(".study-head");
    if (head && head.dataset.critical === "1" &&
        !window.confirm("This study is marked CRITICAL. Sign it as it stands?")) {
      return;
    }
    button.click();
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) { window.location.assign(link.href); }
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var handled = true;
    switch (event.key) {
      case "s": sign("sign_next"); break;
      case "S": sign("sign"); break;
      case "n": follow("nav-next"); break;
      case "p": follow("nav-prev"); break;
      case "+": case "=": zoom("in"); break;
      case "-": case "_": zoom("out"); break;
      case "0": zoom("fit"); break;
      case "1": zoom("paper"); break;
      case "Escape": clearCalipers(); break;
      case "/": var box = document.getElementById("search-box"); if (box) { box.focus(); box.select(); } break;
      case "?": var keys = document.getElementById("shortcuts"); if (keys) { keys.scrollIntoView(); } break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); }
  }

  function start() {
    frames().forEach(setUpCalipers);
    Array.prototype.forEach.call(document.querySelectorAll("[data-zoom]"), function (button) {
      button.addEventListener("click", function () { zoom(button.dataset.zoom); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-calipers='clear']"), function (button) {
      button.addEventListener("click", clearCalipers);
    });
    document.addEventListener("keydown", onKey);
    applyZoom();
    Array.prototype.forEach.call(document.querySelectorAll(".ecg-drawing"), function (img) {
      if (!img.complete) { img.addEventListener("load", applyZoom); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
