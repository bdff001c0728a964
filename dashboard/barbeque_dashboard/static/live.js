// Live refresh for the Barbeque console: every N seconds (body[data-refresh]) fetch the
// same page and swap the #live part, unless the tab is hidden or the user is typing.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds || !window.fetch || !window.DOMParser) { return; }
  var busy = false;
  function typing() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
  }
  function refresh() {
    if (busy || document.hidden || typing()) { return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Barbeque-Live": "1" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (next && current && next.innerHTML !== current.innerHTML) {
          var open = Array.prototype.map.call(current.querySelectorAll("details[open]"), function (d, i) { return i; });
          current.innerHTML = next.innerHTML;
          var details = current.querySelectorAll("details");
          open.forEach(function (i) { if (details[i]) { details[i].open = true; } });
          document.body.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, seconds * 1000);
}());
