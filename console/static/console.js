// Trellis console: small enhancements only; every page works without this script.
(function () {
  "use strict";
  // Ask before a rollback or apply form is sent twice by a double click.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sent === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "1";
    setTimeout(function () { form.dataset.sent = ""; }, 3000);
  });
  // Tab in the YAML editor inserts two spaces instead of leaving the field; Escape then Tab
  // leaves it, so keyboard users are never trapped.
  var escaped = false;
  document.addEventListener("keydown", function (event) {
    var field = event.target;
    if (field.id !== "yaml") return;
    if (event.key === "Escape") { escaped = true; return; }
    if (event.key === "Tab" && !event.shiftKey && !escaped) {
      event.preventDefault();
      var start = field.selectionStart;
      field.setRangeText("  ", start, field.selectionEnd, "end");
    }
    if (event.key !== "Escape") escaped = false;
  });
})();

// ---- Live tap (engineer H): fills the Proxies tap table from /proxies/tap/events. ----
// Each `request` event's data is a table row the server rendered (and escaped); `dropped`
// carries the total dropped so far; `end` says why the tap stopped (no automatic reconnect).
(function () {
  "use strict";
  var rows = document.getElementById("tap-rows");
  if (!rows || !window.EventSource) return;
  var status = document.getElementById("tap-status");
  var dropped = document.getElementById("tap-dropped");
  var max = parseInt(rows.dataset.tapMax, 10) || 200;
  var say = function (text, state) {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state;
  };
  var source = new EventSource(rows.dataset.tapSrc);
  say("Live: new requests appear at the top.", "live");
  // The stream starts by replaying recent requests: they replace the rows rendered for no-script.
  var fresh = true;
  source.addEventListener("request", function (event) {
    if (fresh) { rows.textContent = ""; fresh = false; }
    rows.insertAdjacentHTML("afterbegin", event.data);
    while (rows.rows.length > max) rows.deleteRow(rows.rows.length - 1);
  });
  source.addEventListener("dropped", function (event) {
    if (dropped) dropped.textContent = event.data;
  });
  source.addEventListener("end", function (event) {
    source.close();
    say("Tap stopped: " + event.data + ". Press Start tap to watch again.", "ended");
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) say("The tap connection closed; press Start tap to retry.", "ended");
    else say("The tap connection dropped; reconnecting…", "retrying");
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
// ---- end of live tap ----
