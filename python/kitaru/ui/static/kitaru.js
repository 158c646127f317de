// kitaru dashboard: live refresh, outputs loaded when opened, confirmations. No framework:
// pages are rendered by the server and work without this file; it only keeps them fresh.
"use strict";
(function () {
  const token = document.body.dataset.token;
  const visible = () => document.visibilityState === "visible";
  const get = (url) => fetch(url, { credentials: "same-origin", headers: { "X-Kitaru-Token": token } });

  // The executions list: its rows again every 2 s while "live" is ticked.
  const table = document.getElementById("executions");
  if (table) {
    const live = document.getElementById("live");
    setInterval(async () => {
      if (!visible() || (live && !live.checked)) return;
      const r = await get(table.dataset.refresh);
      if (r.ok) table.tBodies[0].innerHTML = await r.text();
    }, 2000);
  }

  // An execution: reload when it changed, unless someone is filling in a form.
  const ex = document.getElementById("execution");
  if (ex) {
    let seen = null, editing = false;
    document.querySelectorAll("form.answer").forEach((f) => f.addEventListener("input", () => { editing = true; }));
    const poll = async () => {
      if (!visible()) return;
      const r = await get(`/executions/${encodeURIComponent(ex.dataset.exec)}/state`);
      if (!r.ok) return;
      const s = await r.json();
      if (seen === null) seen = s.fingerprint;
      else if (s.fingerprint !== seen && !editing) location.replace(location.pathname);
    };
    poll();
    setInterval(poll, 1500);
    document.querySelectorAll("li[data-job]").forEach((li) => {
      const tick = async () => {
        const r = await get(`/jobs/${li.dataset.job}`);
        if (!r.ok) return;
        const j = await r.json();
        li.querySelector(".job-state").textContent = j.state;
        const where = li.querySelector(".job-exec");
        if (where && j.execution && !where.querySelector("a")) {
          const a = document.createElement("a");
          a.href = `/executions/${encodeURIComponent(j.execution)}`;
          a.textContent = j.execution;
          where.replaceChildren(a);
        }
        if (j.state === "running" || (li.dataset.action === "replay" && !j.execution)) setTimeout(tick, 1000);
      };
      tick();
    });
  }

  // Outputs and artifacts are read when their section is opened.
  document.querySelectorAll("details[data-src]").forEach((d) => {
    d.addEventListener("toggle", async () => {
      if (!d.open || d.dataset.loaded || d.dataset.none) return;
      d.dataset.loaded = "1";
      const r = await get(d.dataset.src);
      d.querySelector(".loaded").innerHTML = await r.text();
    });
  });

  document.querySelectorAll("form.confirm").forEach((f) => {
    f.addEventListener("submit", (ev) => { if (!confirm(f.dataset.confirm)) ev.preventDefault(); });
  });
})();
