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
