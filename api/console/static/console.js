// disputeflow console: a little script on top of server-rendered pages. Everything works without it
// but the countdowns, the phone check as it is typed, and the board's updating by itself.
(function () {
  "use strict";
  var csrf = document.body.dataset.csrf;
  var zh = document.body.dataset.lang === "zh";

  // A form marked data-once sends once: a double click does not send it twice (and if it did,
  // its Idempotency-Key would make the second send find the first's case).
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.setAttribute("aria-disabled", "true"); });
    });
  });

  // Countdowns: "2 h 05 min left" / "overdue by 3 min", every second.
  function span(ms) {
    var m = Math.floor(Math.abs(ms) / 60000), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), min = m % 60;
    var parts = [];
    if (d) parts.push(d + (zh ? "天" : " d"));
    if (h || d) parts.push(h + (zh ? "小时" : " h"));
    parts.push(min + (zh ? "分" : " min"));
    return parts.join(" ");
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (el) {
      var due = Date.parse(el.getAttribute("datetime"));
      if (isNaN(due)) return;
      if (!el.dataset.local) el.dataset.local = el.textContent;
      var left = due - now;
      var words = left >= 0 ? (zh ? "剩余 " + span(left) : span(left) + " left") : (zh ? "已超时 " + span(left) : "overdue by " + span(left));
      el.textContent = el.dataset.local + " (" + words + ")";
    });
  }
  tick();
  setInterval(tick, 1000);

  // Intake: the phone number checked as it is typed, with the open cases from it (POST: the
  // number never appears in a URL).
  var phone = document.querySelector("[data-check-phone]");
  if (phone) {
    var live = document.getElementById("phone-live"), dups = document.getElementById("duplicates"), timer = null;
    phone.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var value = phone.value.trim();
        if (value.length < 7) { live.hidden = true; dups.textContent = ""; return; }
        fetch(phone.dataset.checkPhone, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify({ phone: value })
        }).then(function (r) { return r.ok ? r.json() : null; }).then(function (answer) {
          if (!answer) return;
          live.hidden = answer.valid; live.textContent = answer.message;
          dups.textContent = "";
          if (answer.duplicates.length) {
            var p = document.createElement("p"); p.textContent = dups.dataset.title; dups.appendChild(p);
            var ul = document.createElement("ul");
            answer.duplicates.forEach(function (d) {
              var li = document.createElement("li"), a = document.createElement("a");
              a.href = "/console/cases/" + encodeURIComponent(d.case_id); a.textContent = d.case_id;
              li.appendChild(a); li.appendChild(document.createTextNode(" · " + d.stage)); ul.appendChild(li);
            });
            dups.appendChild(ul);
          }
        });
      }, 250);
    });
  }

  // The board: its tables again every second, without a reload. The server answers 304 (and
  // renders nothing) while the tables are those shown, named by their ETag.
  var board = document.getElementById("board-live");
  if (board) {
    var stamp = document.getElementById("board-updated"), shown = null;
    setInterval(function () {
      var headers = shown ? { "If-None-Match": shown } : {};
      fetch(board.dataset.live, { credentials: "same-origin", headers: headers }).then(function (r) {
        if (r.status === 304) { stamp.textContent = new Date().toLocaleTimeString(); return null; }
        if (r.redirected || !r.ok) return null;
        shown = r.headers.get("ETag");
        return r.text();
      }).then(function (html) {
        if (html === null || html === undefined) return;
        board.innerHTML = html;
        stamp.textContent = new Date().toLocaleTimeString();
        tick();
      }).catch(function () {});
    }, 1000);
  }

  // A forecast's page: its progress every second, the whole page again once it is done.
  var progress = document.getElementById("forecast-progress");
  if (progress && progress.dataset.poll) {
    var poll = setInterval(function () {
      fetch(progress.dataset.poll, { credentials: "same-origin" }).then(function (r) {
        if (r.redirected || !r.ok) return null;
        return r.text();
      }).then(function (html) {
        if (html === null || html === undefined) return;
        progress.innerHTML = html;
        var status = progress.querySelector("[data-status]");
        if (status && status.dataset.status !== "running") {
          clearInterval(poll);
          window.location.reload();
        }
      }).catch(function () {});
    }, 1000);
  }
})();
