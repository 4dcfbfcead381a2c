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
  let recordedSeconds = null;  // the length of a microphone recording (null: a chosen file)
  let listening = null;        // the level meter's audio graph while recording
  const work = () => $("work").dataset;
  const clock = (s) => Math.floor(s / 60) + ":" + String(Math.floor(s) % 60).padStart(2, "0");

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

  // the status line sits under Submit while an image is shown, under the sign-in form otherwise
  function status(text, kind) {
    const st = $("status");
    const home = $("work").hidden ? $("signin-form") : $("submit").parentNode;
    if (st.previousElementSibling !== home) home.after(st);
    st.textContent = text;
    st.className = kind || "";
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
    clip = null; clipName = null; clipImage = null; recordedSeconds = null;
    $("playback").removeAttribute("src");
    $("playback").load();
    $("submit").disabled = true;
    $("retry").hidden = true;
    $("file").value = "";
    $("length").textContent = "";
    showTime(0);
  }

  function setClip(blob, name, imageId, seconds) {
    clip = blob; clipName = name; clipImage = imageId; recordedSeconds = seconds === undefined ? null : seconds;
    $("playback").src = URL.createObjectURL(blob);
    $("submit").disabled = false;
    keepClip({ blob: blob, name: name, imageId: imageId, seconds: recordedSeconds, keptAt: Date.now() });
    showLength(blob);
  }

  // the timer and the meter toward the target: red under the shortest recording asked for,
  // amber under the target, green inside it, amber past it
  function showTime(s) {
    const d = work();
    const lo = parseFloat(d.targetMin), hi = parseFloat(d.targetMax), least = parseFloat(d.minRecording);
    $("timer").textContent = clock(s);
    $("timer").className = s === 0 ? "" : s < least ? "short" : s < lo ? "under" : s <= hi ? "target" : "over";
    $("target").value = Math.min(s, hi);
  }

  // a browser's WebM recording declares no duration (the player shows none): decode it instead
  async function showLength(blob) {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
      ctx.close();
      $("length").textContent = "length " + clock(audio.duration);
      $("length").dataset.seconds = audio.duration.toFixed(2);
    } catch (e) {
      $("length").textContent = "";
    }
  }

  // the input level while recording, and a warning when the microphone stays silent
  function listen(stream) {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    const started = Date.now();
    let loudest = 0;
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (let i = 0; i < data.length; i++) sum += data[i] * data[i];
      const level = Math.min(1, Math.sqrt(sum / data.length) * 4);
      loudest = Math.max(loudest, level);
      $("level").value = level;
      if (Date.now() - started > 3000 && loudest < 0.01 && !$("status").classList.contains("error")) {
        status("No sound from the microphone: check that it is not muted and that the right one is chosen.", "error");
      }
    }, 100);
    return { stop: () => { clearInterval(timer); ctx.close(); $("level").value = 0; } };
  }

  async function restoreUnsent() {
    const entry = await keptClip();
    if (!entry || !entry.blob) return;
    setClip(entry.blob, entry.name, entry.imageId, entry.seconds === null ? undefined : entry.seconds);
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
    $("figure").classList.remove("zoomed");
    $("image").classList.remove("small");
    $("image").src = current.url;
    $("image").dataset.imageId = current.id;
  }

  async function signedIn() {
    $("signin-form").hidden = true;
    $("signout").hidden = false;
    await loadNext();
    await restoreUnsent();
    await showMine();
  }

  // "My clips": the annotator's own clips, each playable, and the last one can be recorded again
  // (a new clip of the same image; the server keeps both)
  async function showMine() {
    const r = await api("/api/clips");
    if (r.status !== 200) return;
    const clips = r.body.clips;
    $("mine").hidden = false;
    $("mine-count").textContent = String(clips.length);
    const list = $("mine-list");
    list.textContent = "";
    clips.forEach((c, i) => {
      const li = document.createElement("li");
      li.textContent = new Date(c.submitted_at).toLocaleString() + ", " + c.duration_s.toFixed(1) + " s ";
      const play = document.createElement("button");
      play.type = "button";
      play.className = "play-mine";
      play.textContent = "Play";
      play.setAttribute("aria-label", "play clip " + (i + 1));
      play.addEventListener("click", () => playMine(c.id, play));
      li.appendChild(play);
      if (i === clips.length - 1) {
        const again = document.createElement("button");
        again.type = "button";
        again.id = "again";
        again.textContent = "Record this image again";
        again.addEventListener("click", () => recordAgain(c.image_id));
        li.appendChild(again);
      }
      list.appendChild(li);
    });
  }

  async function playMine(clipId, button) {
    const res = await fetch("/api/clips/" + encodeURIComponent(clipId) + "/audio",
                            { headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) } });
    if (!res.ok) { status("Could not load that clip (" + res.status + ").", "error"); return; }
    const audio = $("mine-player") || Object.assign(document.createElement("audio"), { id: "mine-player" });
    audio.src = URL.createObjectURL(await res.blob());
    button.after(audio);
    audio.controls = true;
    await audio.play().catch(() => {});
  }

  async function recordAgain(imageId) {
    const r = await api("/api/images/" + encodeURIComponent(imageId));
    if (r.status !== 200) { status("Could not load that image: " + detail(r.body), "error"); return; }
    resetClip();
    current = r.body;
    $("done").hidden = true;
    $("work").hidden = false;
    $("image").src = current.url;
    $("image").dataset.imageId = current.id;
    status("Recording this image again: your new clip is kept besides the first one.", "ok");
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    $("mine").hidden = true;
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
    const started = Date.now();
    listening = listen(stream);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      const type = recorder.mimeType || mime || "audio/webm";
      const ext = type.indexOf("ogg") >= 0 ? "ogg" : type.indexOf("mp4") >= 0 ? "m4a" : "webm";
      setClip(new Blob(chunks, { type: type }), "recording." + ext, current ? current.id : null, (Date.now() - started) / 1000);
      status("Recorded. Play it back, then submit or record again.", "ok");
    };
    recorder.start(1000);
    showTime(0);
    ticking = setInterval(() => showTime((Date.now() - started) / 1000), 250);
    $("record").disabled = true;
    $("record").classList.add("on");
    $("stop").disabled = false;
    status("Recording...", "");
  });

  $("stop").addEventListener("click", () => {
    if (recorder && recorder.state !== "inactive") recorder.stop();
    if (listening) { listening.stop(); listening = null; }
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
    const least = parseFloat(work().minRecording);
    if (recordedSeconds !== null && recordedSeconds < least &&
        !window.confirm("This recording is only " + Math.round(recordedSeconds) + " s long; the aim is " +
                        work().targetMin + "\u2013" + work().targetMax + " s. Submit it anyway?")) {
      status("Not sent: record again, or submit it as it is.", "");
      return;
    }
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
      await showMine();
      return;
    }
    if (result.final) {  // refused for what it is (not audio, too long...): another try cannot help
      if (result.msg) {
        await forgetClip();
        status("Not saved: " + result.msg + ". Record again or choose another file.", "error");
      }
      $("submit").disabled = false;
      return;
    }
    status("Not saved: " + result.msg + ". Your recording is kept in this browser: press Retry when the " +
           "connection is back (a reload keeps it too).", "error");
    $("submit").disabled = false;
    $("retry").hidden = false;
  }

  $("submit").addEventListener("click", send);
  $("retry").addEventListener("click", send);

  // small images are scaled up without blurring; a click (or Z) zooms in and out
  $("image").addEventListener("load", () => {
    $("image").classList.toggle("small", $("image").naturalWidth < 320);
  });
  const zoom = () => $("figure").classList.toggle("zoomed");
  $("image").addEventListener("click", zoom);

  // keys: R record / stop, Space play / pause, Enter submit, Z zoom (not while typing)
  document.addEventListener("keydown", (ev) => {
    if ($("work").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || (tag === "BUTTON" && (ev.key === " " || ev.key === "Enter"))) return;
    if (ev.key === "r" || ev.key === "R") {
      ev.preventDefault();
      (recorder && recorder.state === "recording" ? $("stop") : $("record")).click();
    } else if (ev.key === " ") {
      ev.preventDefault();
      const a = $("playback");
      if (a.src) { if (a.paused) a.play(); else a.pause(); }
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      if (!$("submit").disabled) send();
    } else if (ev.key === "z" || ev.key === "Z") {
      zoom();
    }
  });

  if (sessionStorage.getItem(KEY)) signedIn();
})();
