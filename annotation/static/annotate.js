// The annotation page: sign in with a token (kept in sessionStorage, sent as a Bearer header),
// show the next image, record (MediaRecorder) or pick a file, play it back, submit.
//
// A recording is never lost: from the moment it stops (or a file is chosen) until the server
// acknowledges it (201/200 with its SHA-256) it is kept in the browser (IndexedDB). An upload that
// fails (no network, the server down, 429/5xx) is retried with backoff (429: after its
// Retry-After), then a Retry button stays; a reload of the page offers the unsent recording again.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "curate-annotate-token";
  const RETRIES = 3;      // automatic tries after the first, 1 s, 2 s, 4 s apart (429: Retry-After)
  let current = null;     // {id, url, ...} from /api/next
  let clip = null;        // Blob or File to submit
  let clipName = null;
  let clipImage = null;   // the image the clip describes (a restored clip keeps its own)
  let recorder = null;
  let ticking = null;

  // ---- the unsent clip, kept in IndexedDB until the server has it --------------------------
  function kept(mode, action) {
    return new Promise((resolve) => {
      if (!window.indexedDB) { resolve(null); return; }
      const open = indexedDB.open("curate-annotate", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("unsent");
      open.onerror = () => resolve(null);
      open.onsuccess = () => {
        const tx = open.result.transaction("unsent", mode);
        const req = action(tx.objectStore("unsent"));
        tx.oncomplete = () => { open.result.close(); resolve(req && req.result !== undefined ? req.result : null); };
        tx.onerror = () => { open.result.close(); resolve(null); };
      };
    });
  }
  const keepClip = (entry) => kept("readwrite", (st) => st.put(entry, "clip"));
  const keptClip = () => kept("readonly", (st) => st.get("clip"));
  const forgetClip = () => kept("readwrite", (st) => st.delete("clip"));

  function status(text, kind) {
    $("status").textContent = text;
    $("status").className = kind || "";
  }

  async function api(path, options) {
    const opts = options || {};
    opts.headers = Object.assign({}, opts.headers, { Authorization: "Bearer " + sessionStorage.getItem(KEY) });
    const res = await fetch(path, opts);
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 401) { signOut("Your token was not accepted: " + detail(body)); }
    return { status: res.status, body: body, headers: res.headers };
  }

  function detail(body) {
    if (!body || body.detail === undefined) return "no details";
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  }

  function showProgress(p) {
    if (p) $("progress").textContent = p.done + " of " + p.total + " done";
  }

  function resetClip() {
    clip = null; clipName = null; clipImage = null;
    $("playback").removeAttribute("src");
    $("playback").load();
    $("submit").disabled = true;
    $("retry").hidden = true;
    $("file").value = "";
    $("timer").textContent = "0:00";
  }

  function setClip(blob, name, imageId) {
    clip = blob; clipName = name; clipImage = imageId;
    $("playback").src = URL.createObjectURL(blob);
    $("submit").disabled = false;
    keepClip({ blob: blob, name: name, imageId: imageId, keptAt: Date.now() });
  }

  async function restoreUnsent() {
    const entry = await keptClip();
    if (!entry || !entry.blob) return;
    setClip(entry.blob, entry.name, entry.imageId);
    status("A recording you made was not sent yet: it is restored. Play it back, then submit it.", "ok");
  }

  async function loadNext() {
    const r = await api("/api/next");
    if (r.status !== 200) { if (r.status !== 401) status("Could not load the next image: " + detail(r.body), "error"); return; }
    showProgress(r.body.progress);
    resetClip();
    if (r.body.done) {
      current = null;
      $("work").hidden = true;
      $("done").hidden = false;
      $("done").textContent = r.body.detail;
      return;
    }
    current = r.body;
    $("record").textContent = "\u25CF Record";
    $("done").hidden = true;
    $("work").hidden = false;
    $("image").src = current.url;
    $("image").dataset.imageId = current.id;
  }

  async function signedIn() {
    $("signin-form").hidden = true;
    $("signout").hidden = false;
    await loadNext();
    await restoreUnsent();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    $("signin-form").hidden = false;
    $("signout").hidden = true;
    $("work").hidden = true;
    $("progress").textContent = "";
    status(message || "", message ? "error" : "");
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    const r = await api("/api/progress");
    if (r.status === 200) { status("Signed in as " + r.body.annotator + ".", "ok"); signedIn(); }
  });
  $("signout").addEventListener("click", () => signOut());

  function pickMime() {
    const kinds = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
    for (const k of kinds) { if (window.MediaRecorder && MediaRecorder.isTypeSupported(k)) return k; }
    return "";
  }

  $("record").addEventListener("click", async () => {
    resetClip();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      status("No microphone: " + e.message + ". Upload a file instead.", "error");
      return;
    }
    const mime = pickMime();
    recorder = mime ? new MediaRecorder(stream, { mimeType: mime }) : new MediaRecorder(stream);
    const chunks = [];
    recorder.ondataavailable = (ev) => { if (ev.data && ev.data.size) chunks.push(ev.data); };
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      const type = recorder.mimeType || mime || "audio/webm";
      const ext = type.indexOf("ogg") >= 0 ? "ogg" : type.indexOf("mp4") >= 0 ? "m4a" : "webm";
      setClip(new Blob(chunks, { type: type }), "recording." + ext, current ? current.id : null);
      status("Recorded. Play it back, then submit or record again.", "ok");
    };
    recorder.start(1000);
    const started = Date.now();
    $("timer").textContent = "0:00";
    ticking = setInterval(() => {
      const s = Math.floor((Date.now() - started) / 1000);
      $("timer").textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }, 250);
    $("record").disabled = true;
    $("record").classList.add("on");
    $("stop").disabled = false;
    status("Recording...", "");
  });

  $("stop").addEventListener("click", () => {
    if (recorder && recorder.state !== "inactive") recorder.stop();
    clearInterval(ticking);
    $("record").disabled = false;
    $("record").classList.remove("on");
    $("record").textContent = "\u25CF Record again";
    $("stop").disabled = true;
  });

  $("file").addEventListener("change", () => {
    const f = $("file").files[0];
    if (f) { setClip(f, f.name, current ? current.id : null); status("File chosen. Play it back, then submit.", "ok"); }
  });

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // one try: {ok, final, wait, msg}; a network failure or 429/5xx may succeed on another try
  async function sendOnce() {
    const form = new FormData();
    form.append("image_id", clipImage || current.id);
    form.append("file", clip, clipName || "recording");
    let r;
    try {
      r = await api("/api/clips", { method: "POST", body: form });
    } catch (e) {
      return { ok: false, final: false, wait: 0, msg: "the server could not be reached (" + e.message + ")" };
    }
    if ((r.status === 201 || r.status === 200) && r.body && r.body.sha256) return { ok: true, body: r.body };
    if (r.status === 401) return { ok: false, final: true, msg: "" };
    const retryAfter = parseFloat(r.headers.get("Retry-After") || "");
    const transient = r.status === 429 || r.status >= 500;
    return { ok: false, final: !transient, wait: isNaN(retryAfter) ? 0 : retryAfter * 1000,
             msg: detail(r.body) + (r.status === 429 ? " (busy)" : "") };
  }

  async function send() {
    if (!clip || (!current && !clipImage)) return;
    $("submit").disabled = true;
    $("retry").hidden = true;
    let result = null;
    for (let attempt = 0; attempt <= RETRIES; attempt++) {
      status(attempt ? "Uploading again (try " + (attempt + 1) + ")..." : "Uploading...", "");
      result = await sendOnce();
      if (result.ok || result.final) break;
      if (attempt < RETRIES) await sleep(Math.max(result.wait, 1000 * Math.pow(2, attempt)));
    }
    if (result.ok) {
      await forgetClip();
      status("Saved clip " + result.body.id + " (" + result.body.duration_s.toFixed(1) + " s).", "ok");
      await loadNext();
      return;
    }
    if (result.msg) {
      status("Not saved: " + result.msg + ". Your recording is kept in this browser: press Retry" +
             (result.final ? " after fixing it, or record again." : " when the connection is back (a reload keeps it too)."), "error");
    }
    $("submit").disabled = false;
    $("retry").hidden = false;
  }

  $("submit").addEventListener("click", send);
  $("retry").addEventListener("click", send);

  if (sessionStorage.getItem(KEY)) signedIn();
})();
