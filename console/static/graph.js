// Trellis graph page: live refresh and pan/zoom. The server draws the whole graph and the page
// reads fully without this script; the script only adds:
//  - a "Live" toggle and interval select: every few seconds it fetches `/graph/fragment?…` (the
//    summary, drawing and details for the same query) and swaps it in, keeping the user's pan/zoom
//    and keyboard focus. It pauses while the tab is hidden or a drag is in progress.
//  - pan by drag, zoom by wheel / pinch / the +, -, 0 keys and buttons, by changing the SVG's
//    viewBox (so text and lines stay sharp at every zoom).
(function () {
  "use strict";
  var live = document.getElementById("graph-live");
  if (!live || !window.fetch || !live.dataset.fragment) return;

  var MIN_SCALE = 0.03, MAX_SCALE = 8;
  var store = function (area) { try { return window[area]; } catch (e) { return null; } };
  var local = store("localStorage"), session = store("sessionStorage");
  // The view is remembered per query (focus left out), so opening a node's details, which
  // reloads the page, keeps the pan/zoom.
  var viewKey = "trellis.graph.view:" + location.search.replace(/([?&])focus=[^&]*&?/, "$1");

  // ---- The view: centre (in drawing units) and scale (pixels per unit). ----
  var view = null;          // {cx, cy, scale}; null until the first drawing is set up
  var drawing = null;       // {svg, w, h}: the current SVG and its full size in units

  function box() {
    var r = drawing.svg.getBoundingClientRect();
    return { w: r.width || 1, h: r.height || 1, left: r.left, top: r.top };
  }
  function clampScale(s) { return Math.min(MAX_SCALE, Math.max(MIN_SCALE, s)); }
  // The whole drawing, never magnified past 1:1.
  function fit() {
    var b = box();
    return { cx: drawing.w / 2, cy: drawing.h / 2,
             scale: clampScale(Math.min(b.w / drawing.w, b.h / drawing.h, 1)) };
  }
  // Below this scale labels are too small to read: hiding them (a class the SVG's own style
  // knows) keeps panning a 1,000-node drawing quick.
  var LABEL_SCALE = 0.55;
  function apply() {
    if (!drawing || !view) return;
    var b = box(), w = b.w / view.scale, h = b.h / view.scale;
    drawing.svg.classList.toggle("zoomed-out", view.scale < LABEL_SCALE);
    drawing.svg.setAttribute("viewBox",
      [view.cx - w / 2, view.cy - h / 2, w, h].map(function (n) { return n.toFixed(1); }).join(" "));
    if (session) session.setItem(viewKey, JSON.stringify(view));
  }
  // Zoom by `factor` keeping the drawing point under (px, py) (pixels in the box) in place.
  function zoomAt(factor, px, py) {
    var b = box();
    if (px === undefined) { px = b.w / 2; py = b.h / 2; }
    var ux = view.cx + (px - b.w / 2) / view.scale, uy = view.cy + (py - b.h / 2) / view.scale;
    view.scale = clampScale(view.scale * factor);
    view.cx = ux - (px - b.w / 2) / view.scale;
    view.cy = uy - (py - b.h / 2) / view.scale;
    apply();
  }
  function panBy(dxPixels, dyPixels) {
    view.cx -= dxPixels / view.scale;
    view.cy -= dyPixels / view.scale;
    apply();
  }

  // Takes over the SVG the server sent: a fixed box on the page, the viewBox doing the rest.
  function setUpDrawing() {
    var svg = live.querySelector("svg.graph-svg");
    if (!svg) { drawing = null; return; }
    var vb = (svg.getAttribute("viewBox") || "").split(/[\s,]+/).map(Number);
    drawing = { svg: svg, w: vb[2] || 1, h: vb[3] || 1 };
    svg.removeAttribute("width");
    svg.style.width = "100%";
    svg.style.height = Math.round(Math.max(320, Math.min(window.innerHeight * 0.72, drawing.h + 40))) + "px";
    svg.style.cursor = "grab";
    svg.style.touchAction = "none";
    svg.setAttribute("height", svg.style.height);
    if (!view) {
      var saved = session && session.getItem(viewKey);
      try { view = saved ? JSON.parse(saved) : null; } catch (e) { view = null; }
      if (!view || !(view.scale > 0)) view = fit();
    }
    apply();
  }

  // ---- Pointer: drag pans, two pointers pinch-zoom; a drag never counts as a click. ----
  var pointers = {}, dragged = false, pinch = null;
  function count() { return Object.keys(pointers).length; }
  live.addEventListener("pointerdown", function (event) {
    if (!drawing || !drawing.svg.contains(event.target) || event.button > 0) return;
    pointers[event.pointerId] = { x: event.clientX, y: event.clientY };
    dragged = false;
    pinch = null;
    drawing.svg.style.cursor = "grabbing";
  });
  live.addEventListener("pointermove", function (event) {
    var p = pointers[event.pointerId];
    if (!p || !drawing) return;
    var dx = event.clientX - p.x, dy = event.clientY - p.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return; // a click, so far
    if (!dragged && drawing.svg.setPointerCapture) drawing.svg.setPointerCapture(event.pointerId);
    dragged = true;
    p.x = event.clientX;
    p.y = event.clientY;
    var ids = Object.keys(pointers);
    if (ids.length === 2) {
      var a = pointers[ids[0]], c = pointers[ids[1]];
      var distance = Math.hypot(a.x - c.x, a.y - c.y) || 1, b = box();
      if (pinch) zoomAt(distance / pinch, (a.x + c.x) / 2 - b.left, (a.y + c.y) / 2 - b.top);
      pinch = distance;
    } else if (ids.length === 1) {
      panBy(dx, dy);
    }
  });
  function release(event) {
    delete pointers[event.pointerId];
    pinch = null;
    if (drawing && count() === 0) drawing.svg.style.cursor = "grab";
  }
  live.addEventListener("pointerup", release);
  live.addEventListener("pointercancel", release);
  live.addEventListener("click", function (event) {
    if (dragged && drawing && drawing.svg.contains(event.target)) {
      event.preventDefault();
      dragged = false;
    }
  }, true);
  live.addEventListener("wheel", function (event) {
    if (!drawing || !drawing.svg.contains(event.target)) return;
    event.preventDefault();
    var b = box(), lines = event.deltaMode === 1 ? 30 : 1;
    zoomAt(Math.exp(-event.deltaY * lines * 0.0015), event.clientX - b.left, event.clientY - b.top);
  }, { passive: false });

  // ---- Keyboard: + / - / 0 zoom and reset, arrows pan (on the drawing itself, not its links);
  // a node or edge reached by Tab is brought into view. ----
  live.addEventListener("keydown", function (event) {
    if (!drawing || !drawing.svg.contains(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    var step = 60, handled = true;
    switch (event.key) {
      case "+": case "=": zoomAt(1.25); break;
      case "-": case "_": zoomAt(0.8); break;
      case "0": view = fit(); apply(); break;
      case "ArrowLeft": panBy(step, 0); break;
      case "ArrowRight": panBy(-step, 0); break;
      case "ArrowUp": panBy(0, step); break;
      case "ArrowDown": panBy(0, -step); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });
  live.addEventListener("focusin", function (event) {
    if (!drawing || !drawing.svg.contains(event.target) || !event.target.getBBox) return;
    var r = event.target.getBBox(), b = box();
    var halfW = b.w / 2 / view.scale, halfH = b.h / 2 / view.scale;
    var x = r.x + r.width / 2, y = r.y + r.height / 2;
    if (Math.abs(x - view.cx) > halfW * 0.9 || Math.abs(y - view.cy) > halfH * 0.9) {
      view.cx = x;
      view.cy = y;
      apply();
    }
  });

  // ---- Controls: made here, since without the script they would do nothing. ----
  var controls = document.createElement("div");
  controls.className = "graph-live-controls filters";
  controls.setAttribute("role", "group");
  controls.setAttribute("aria-label", "Live refresh and zoom");
  controls.style.cssText = "display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin:.5rem 0";
  controls.innerHTML =
    '<label><input type="checkbox" name="live"> Live</label>' +
    '<label>Every <select name="every">' +
    [5, 10, 15, 30, 60].map(function (s) { return '<option value="' + s + '">' + s + " s</option>"; }).join("") +
    "</select></label>" +
    '<span><button type="button" data-zoom="in" aria-label="Zoom in">+</button> ' +
    '<button type="button" data-zoom="out" aria-label="Zoom out">\u2212</button> ' +
    '<button type="button" data-zoom="fit">Fit</button></span>' +
    '<span class="live-status" role="status" aria-live="polite"></span>' +
    '<span class="hint">Drag to pan; wheel, pinch or + / \u2212 / 0 on the drawing to zoom.</span>';
  live.parentNode.insertBefore(controls, live);
  var toggle = controls.querySelector('input[name="live"]');
  var every = controls.querySelector('select[name="every"]');
  var status = controls.querySelector(".live-status");
  toggle.checked = !local || local.getItem("trellis.graph.live") !== "off";
  every.value = (local && local.getItem("trellis.graph.every")) || "5";
  if (!every.value) every.value = "5";
  controls.addEventListener("click", function (event) {
    var zoom = event.target.dataset && event.target.dataset.zoom;
    if (!zoom || !drawing) return;
    if (zoom === "fit") { view = fit(); apply(); } else zoomAt(zoom === "in" ? 1.25 : 0.8);
  });

  // ---- Live refresh: one request at a time, the next scheduled when it ends. ----
  var timer = null, inflight = null, lastRefresh = Date.now();
  function say(text) { status.textContent = text; }
  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!toggle.checked || document.hidden) return; // resumes on visibilitychange / toggle
    timer = setTimeout(refresh, Number(every.value) * 1000);
  }
  // The link the user is on (node, edge or details link), so it can be focused again after the swap.
  function focusedHref() {
    var a = document.activeElement && document.activeElement.closest && document.activeElement.closest("a");
    return a && live.contains(a) ? a.getAttribute("href") : null;
  }
  function swap(html) {
    var href = focusedHref();
    var details = live.querySelector(".graph-details");
    var detailsScroll = details ? details.scrollTop : 0;
    live.innerHTML = html;
    setUpDrawing();
    var newDetails = live.querySelector(".graph-details");
    if (newDetails) newDetails.scrollTop = detailsScroll;
    if (href) {
      var links = live.querySelectorAll("a");
      for (var i = 0; i < links.length; i++) {
        if (links[i].getAttribute("href") === href) { links[i].focus({ preventScroll: true }); break; }
      }
    }
  }
  // Returns the request's promise (resolved once swapped or failed), or nothing when skipped.
  function refresh() {
    timer = null;
    if (!toggle.checked || document.hidden || inflight) return schedule();
    if (count() > 0) return schedule(); // never swap the drawing under a drag
    inflight = window.AbortController ? new AbortController() : null;
    return fetch(live.dataset.fragment, { cache: "no-store", signal: inflight && inflight.signal })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(text || "HTTP " + response.status);
          return text;
        });
      })
      .then(function (html) {
        swap(html);
        lastRefresh = Date.now();
        say("Updated " + new Date(lastRefresh).toLocaleTimeString());
      })
      .catch(function (error) {
        if (error.name !== "AbortError") say("Refresh failed (" + error.message + "); retrying.");
      })
      .then(function () { inflight = null; schedule(); });
  }
  toggle.addEventListener("change", function () {
    if (local) local.setItem("trellis.graph.live", toggle.checked ? "on" : "off");
    say(toggle.checked ? "Live" : "Paused");
    if (toggle.checked) refresh(); else schedule();
  });
  every.addEventListener("change", function () {
    if (local) local.setItem("trellis.graph.every", every.value);
    schedule();
  });
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); timer = null; return; }
    if (toggle.checked && Date.now() - lastRefresh >= Number(every.value) * 1000) refresh();
    else schedule();
  });
  window.addEventListener("pagehide", function () {
    clearTimeout(timer);
    if (inflight) inflight.abort();
  });
  window.addEventListener("resize", apply);

  setUpDrawing();
  say(toggle.checked ? "Live" : "Paused");
  schedule();
  // For benchmarks and tests: refresh now, resolving when the new drawing is in.
  window.trellisGraph = {
    refresh: function () { clearTimeout(timer); return refresh(); },
    zoomAt: function (f) { zoomAt(f); },
    panBy: panBy,
  };
})();
