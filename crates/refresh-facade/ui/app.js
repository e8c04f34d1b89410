// oauth-refresh status page: keeps every <time data-rel> relative to now
// ("in 5 min", "3 h ago") without a reload. Served from /ui/app.js under
// a CSP that allows no inline script.
(function () {
  "use strict";
  function phrase(seconds) {
    var abs = Math.abs(seconds), n, unit;
    if (abs < 60) { n = Math.round(abs); unit = "s"; }
    else if (abs < 3600) { n = Math.round(abs / 60); unit = "min"; }
    else if (abs < 172800) { n = Math.round(abs / 3600); unit = "h"; }
    else { n = Math.round(abs / 86400); unit = "d"; }
    return seconds >= 0 ? "in " + n + " " + unit : n + " " + unit + " ago";
  }
  function update() {
    var now = Date.now();
    var items = document.querySelectorAll("time[data-rel]");
    for (var i = 0; i < items.length; i++) {
      var at = Date.parse(items[i].getAttribute("datetime"));
      if (!isNaN(at)) {
        items[i].textContent = phrase((at - now) / 1000);
      }
    }
    document.documentElement.setAttribute("data-rel-updated", String(now));
  }
  update();
  setInterval(update, 30000);
})();
