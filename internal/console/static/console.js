// The live approvals queue: the list is fetched again every few seconds
// (same origin, the session's cookie) unless the reviewer is typing in it.
"use strict";
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const url = queue.dataset.refresh;
  setInterval(async function () {
    if (queue.contains(document.activeElement) && document.activeElement.tagName !== "BODY") return;
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!r.ok) return;
      const html = await r.text();
      const doc = new DOMParser().parseFromString(html, "text/html");
      const next = doc.body;
      queue.replaceChildren(...next.childNodes);
    } catch (e) { /* the next tick tries again */ }
  }, 3000);
})();
