// The live approvals queue: the list is fetched again every few seconds
// (same origin, the session's cookie) unless the reviewer is typing in it
// or pointing at it; new requests come last (oldest first).
"use strict";
(function () {
  const queue = document.getElementById("queue");
  if (!queue) return;
  const url = queue.dataset.refresh;
  let pointer = false; // never move a button from under the reviewer's pointer
  queue.addEventListener("pointerenter", function () { pointer = true; });
  queue.addEventListener("pointerleave", function () { pointer = false; });
  setInterval(async function () {
    if (pointer) return;
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
