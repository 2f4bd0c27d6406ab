// Trellis Overview: live cards. The page reads fully without this script; with it, the element
// marked `data-live="SECONDS"` is re-fetched from this same URL every SECONDS and swapped in, so
// health, rates and proxy states stay current. Paused while the tab is hidden; one request at a
// time; a failed refresh keeps the last cards and says so.
(function () {
  "use strict";
  var region = document.querySelector("[data-live][id]");
  if (!region || !window.fetch || !window.DOMParser) return;
  var seconds = Math.max(2, parseInt(region.dataset.live, 10) || 10);
  var status = document.createElement("p");
  status.className = "live-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  status.textContent = "Live: updates every " + seconds + " s.";
  region.parentNode.insertBefore(status, region);

  var timer = null, inflight = null, last = Date.now();
  function schedule() {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(refresh, seconds * 1000);
  }
  function refresh() {
    timer = null;
    if (document.hidden || inflight) return;
    inflight = window.AbortController ? new AbortController() : null;
    fetch(location.href, { cache: "no-store", signal: inflight && inflight.signal })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (!fresh) throw new Error("the page came back without its cards");
        // Keep keyboard focus on the same link (e.g. a namespace's Graph link) across the swap.
        var active = document.activeElement;
        var href = active && region.contains(active) ? active.getAttribute("href") : null;
        region.innerHTML = fresh.innerHTML;
        if (href) {
          var again = region.querySelector('a[href="' + href.replace(/["\\]/g, "\\$&") + '"]');
          if (again) again.focus({ preventScroll: true });
        }
        last = Date.now();
        status.textContent = "Live: updated " + new Date(last).toLocaleTimeString() + ".";
      })
      .catch(function (error) {
        if (error.name !== "AbortError") status.textContent = "Refresh failed (" + error.message + "); retrying.";
      })
      .then(function () { inflight = null; schedule(); });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); timer = null; }
    else if (Date.now() - last >= seconds * 1000) refresh();
    else schedule();
  });
  window.addEventListener("pagehide", function () {
    clearTimeout(timer);
    if (inflight) inflight.abort();
  });
  schedule();
})();
