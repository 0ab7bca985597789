// DTP dashboard: live refresh and confirmations. No library; pages work without it.
//
// Live: every 2 s while the tab is visible, the page is fetched again and each element marked
// `data-live` is replaced by its namesake (same id) from the new page, unless the reader is in
// it (a field has focus or was edited: a half-typed limit is not wiped). A page slow to answer
// is asked less often (ten times its answer time at least), so a heavy page does not pile up
// requests on the server. A hidden tab does not poll; it refreshes at once when shown again.
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var timer = null;
  var inFlight = false;
  var nextAllowed = 0;
  var status = document.getElementById("live-status");

  function setStatus(text, state) {
    if (!status) return;
    status.textContent = text;
    status.className = "live" + (state ? " " + state : "");
  }

  // Whether the reader is working in `element`: focus inside, or a field changed from the page.
  function inUse(element) {
    if (element.contains(document.activeElement) && document.activeElement !== document.body) return true;
    var fields = element.querySelectorAll("input, select, textarea");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") continue;
      if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j++) if (f.options[j].selected !== f.options[j].defaultSelected) return true;
      } else if (f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    if (inFlight || document.hidden || Date.now() < nextAllowed) return;
    var targets = document.querySelectorAll("[data-live][id]");
    if (targets.length === 0) return;
    inFlight = true;
    var started = Date.now();
    // A refresh that never answers must not stop the next ones.
    var abort = new AbortController();
    var deadline = window.setTimeout(function () { abort.abort(); }, 15000);
    fetch(window.location.href, { headers: { "X-DTP-Live": "1" }, credentials: "same-origin", cache: "no-store", signal: abort.signal })
      .then(function (response) {
        if (response.redirected || !response.ok) throw new Error("status " + response.status);
        return response.text();
      })
      .then(function (text) {
        var next = new DOMParser().parseFromString(text, "text/html");
        targets.forEach(function (old) {
          var fresh = next.getElementById(old.id);
          if (fresh && fresh.innerHTML !== old.innerHTML && !inUse(old)) {
            keepOpenDetails(old, fresh);
            old.replaceWith(fresh);
          }
        });
        setStatus("live", "");
      })
      .catch(function () { setStatus("offline", "stale"); })
      .finally(function () {
        window.clearTimeout(deadline);
        inFlight = false;
        nextAllowed = Date.now() + 10 * (Date.now() - started);
      });
  }

  // A JSON block the reader folded or unfolded stays as they left it.
  function keepOpenDetails(old, fresh) {
    var before = old.querySelectorAll("details");
    var after = fresh.querySelectorAll("details");
    for (var i = 0; i < before.length && i < after.length; i++) after[i].open = before[i].open;
  }

  function start() {
    if (timer === null) timer = window.setInterval(refresh, PERIOD_MS);
    setStatus("live", "");
  }

  function stop() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    setStatus("paused", "paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { start(); refresh(); }
  });

  // Buttons whose form says `data-confirm` ask first.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  if (!document.hidden) start(); else stop();
})();
