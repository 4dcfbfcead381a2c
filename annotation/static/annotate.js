// The annotation page: sign in with a token (kept in sessionStorage, sent as a Bearer header),
// show the next image, record (MediaRecorder) or pick a file, play it back, submit.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "curate-annotate-token";
  let current = null;     // {id, url, ...} from /api/next
  let clip = null;        // Blob or File to submit
  let clipName = null;
  let recorder = null;
  let ticking = null;

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
    clip = null; clipName = null;
    $("playback").removeAttribute("src");
    $("playback").load();
    $("submit").disabled = true;
    $("file").value = "";
  }

  function setClip(blob, name) {
    clip = blob; clipName = name;
    $("playback").src = URL.createObjectURL(blob);
    $("submit").disabled = false;
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
    $("done").hidden = true;
    $("work").hidden = false;
    $("image").src = current.url;
    $("image").dataset.imageId = current.id;
  }

  function signedIn() {
    $("signin-form").hidden = true;
    $("signout").hidden = false;
    loadNext();
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
      setClip(new Blob(chunks, { type: type }), "recording." + ext);
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
    if (f) { setClip(f, f.name); status("File chosen. Play it back, then submit.", "ok"); }
  });

  $("submit").addEventListener("click", async () => {
    if (!clip || !current) return;
    $("submit").disabled = true;
    status("Uploading...", "");
    const form = new FormData();
    form.append("image_id", current.id);
    form.append("file", clip, clipName || "recording");
    const r = await api("/api/clips", { method: "POST", body: form });
    if (r.status === 201 || r.status === 200) {
      status("Saved clip " + r.body.id + " (" + r.body.duration_s.toFixed(1) + " s).", "ok");
      $("record").textContent = "\u25CF Record";
      await loadNext();
    } else if (r.status !== 401) {
      let msg = "Not saved: " + detail(r.body);
      if (r.status === 429) msg += " (retry after " + r.headers.get("Retry-After") + " s)";
      status(msg, "error");
      $("submit").disabled = false;
    }
  });

  if (sessionStorage.getItem(KEY)) signedIn();
})();
