// valle2 web page: consent (record or upload), enrol, add a research voice, pick a voice (the demo
// voice among them), synthesize, download, detect.  Every refusal is shown as the server's message
// plus what to do next, never as raw JSON.
"use strict";

const $ = (id) => document.getElementById(id);
const DEMO_VOICE = "demo";   // the shipped demo voice's id (GET /v1/voices lists it, kind "shipped", for every key)
let consentBlob = null;   // the recording or uploaded file to enrol with
let recorder = null;
let voices = [];          // the key's voices as GET /v1/voices last listed them

function show(id, text, isError) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(isError));
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

// A refused or failed call; its message is for people: what went wrong and what to do.
class Problem extends Error {}

function sentence(text) {
  const t = text.trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

// What a person can do about a refusal, by its HTTP status.
function nextStep(resp) {
  const retry = resp.headers.get("Retry-After");
  switch (resp.status) {
    case 401: return "Check the API key above: paste the whole key as `valle2 keys create` printed it.";
    case 404: return "Press Refresh to list the voices this key may use, and pick one of them.";
    case 413: return "Send a smaller file.";
    case 422: return "Check the fields above and try again.";
    case 429: return `Try again in ${retry || "a few"} seconds.`;
    case 503: return `The server is busy or shutting down: try again in ${retry || "a few"} seconds.`;
    default: return "";
  }
}

// fetch() with the API key; resolves to the response when it is OK, else throws a Problem.
async function call(path, init = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...init, headers: { ...(init.headers || {}), ...authHeaders() } });
  } catch (e) {
    throw new Problem("Could not reach the server: check that `valle2 serve` is still running, then try again.");
  }
  if (resp.ok) return resp;
  let error = {};
  try {
    error = (await resp.json()).error || {};
  } catch (e) {
    // not the API's JSON (a proxy's error page, say): the status line is all there is
  }
  const said = error.message ? sentence(error.message) : `The server answered ${resp.status} ${resp.statusText}.`;
  throw new Problem(`${said} ${nextStep(resp)}`.trim());
}

function postJson(path, body) {
  return call(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// Run `work`; a Problem it throws is shown in the status line `statusId`.
async function guarded(statusId, work) {
  try {
    await work();
  } catch (p) {
    show(statusId, p instanceof Problem ? p.message : `Something went wrong in this page: ${p.message}`, true);
  }
}

async function getPhrase() {
  if (!$("speaker-name").value.trim()) { show("enroll-status", "Type the speaker's full name first.", true); return; }
  const phrase = await (await postJson("/v1/voices/phrases", { name: $("speaker-name").value })).json();
  $("phrase").textContent = phrase.text;
  $("phrase").dataset.phraseId = phrase.phrase_id;
  $("record-start").disabled = !window.MediaRecorder;
  show("enroll-status", "Phrase issued; record it or upload a recording.");
}

async function startRecording() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    throw new Problem(`The browser gave no microphone (${e.name}): allow it for this page, or upload a recording.`);
  }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    setConsent(new Blob(chunks, { type: recorder.mimeType }), "consent.webm");
  };
  recorder.start();
  $("record-start").disabled = true;
  $("record-stop").disabled = false;
}

function stopRecording() {
  recorder.stop();
  $("record-stop").disabled = true;
  $("record-start").disabled = false;
}

function setConsent(blob, name) {
  consentBlob = { blob, name };
  $("consent-audio").src = URL.createObjectURL(blob);
  $("enroll").disabled = false;
}

async function enroll() {
  const form = new FormData();
  form.append("name", $("speaker-name").value);
  form.append("phrase_id", $("phrase").dataset.phraseId);
  form.append("file", consentBlob.blob, consentBlob.name);
  show("enroll-status", "Checking the consent recording…");
  const voice = await (await call("/v1/voices", { method: "POST", body: form })).json();
  await refreshVoices(voice.voice_id);
  $("enroll-status").dataset.voiceId = voice.voice_id;
  show("enroll-status", `Enrolled ${voice.name}: voice id ${voice.voice_id}`);
}

// A shell word for `name`: as it is when it needs no quoting, else in single quotes.
function shellWord(name) {
  return /^[\w.\/-]+$/.test(name) ? name : `'${name.replace(/'/g, "'\\''")}'`;
}

async function addResearchVoice() {
  const file = $("research-file").files[0];
  const transcript = $("research-transcript").value.trim();
  $("attest-help").hidden = true;
  if (!file) { show("research-status", "Choose the recording to add first.", true); return; }
  if (!transcript) { show("research-status", "Type the transcript, exactly what is said in the recording, first.", true); return; }
  const form = new FormData();
  form.append("transcript", transcript);
  form.append("file", file, file.name);
  show("research-status", `Adding ${file.name}…`);
  try {
    const voice = await (await call("/v1/voices/research", { method: "POST", body: form })).json();
    await refreshVoices(voice.voice_id);
    show("research-status", `Added research voice ${voice.voice_id}; it is selected in 2. Speak.`);
  } catch (p) {
    if (!/no attested research corpus/.test(p.message)) throw p;
    show("research-status", `The server refused ${file.name}: it is in no research corpus attested on this server, `
         + "and only such files may become research voices.", true);
    $("attest-command").textContent =
      `valle2 corpus attest --name "NAME OF THE CORPUS" --licence "ITS LICENCE" ${shellWord(file.name)}`;
    $("attest-help").hidden = false;
  }
}

function voiceLabel(v) {
  return v.kind === "consent" ? `${v.name} (${v.voice_id})` : v.name;
}

function describeVoice() {
  const v = voices.find((x) => x.voice_id === $("voice").value);
  $("voice-about").textContent = !v ? "This key has no voices yet: enrol one (1.) or add a research voice (3.)."
    : v.voice_id === DEMO_VOICE ? "The demo voice ships with valle2: a recording of an attested research corpus "
      + "(CMU ARCTIC), so that you can try synthesis before enrolling anyone."
    : v.kind === "shipped" ? "Shipped with valle2: every key may use it."
    : v.kind === "consent" ? `Enrolled with the recorded consent of ${v.name}.`
    : "A file of an attested research corpus, registered by its file name.";
}

async function refreshVoices(select) {
  if (!$("api-key").value.trim()) { show("speak-status", "Enter an API key to see its voices.", true); return; }
  const keep = select || $("voice").value;
  voices = (await (await call("/v1/voices")).json()).voices.filter((v) => v.revoked === null);
  show("speak-status", "");
  const groups = [["Shipped with valle2 (the demo voice)", (v) => v.kind === "shipped"],
                  ["Enrolled with consent", (v) => v.kind === "consent"],
                  ["Research voices", (v) => v.kind === "research"]];
  const menu = $("voice");
  menu.replaceChildren();
  for (const [label, member] of groups) {
    const group = document.createElement("optgroup");
    group.label = label;
    for (const v of voices.filter(member)) {
      const opt = document.createElement("option");
      opt.value = v.voice_id;
      opt.textContent = voiceLabel(v);
      group.append(opt);
    }
    if (group.children.length) menu.append(group);
  }
  const ids = voices.map((v) => v.voice_id);
  menu.value = ids.includes(keep) ? keep : ids.includes(DEMO_VOICE) ? DEMO_VOICE : (ids[0] || "");
  describeVoice();
}

async function synthesize() {
  const fmt = $("format").value;
  if (!$("voice").value) { show("speak-status", "Pick a voice first (press Refresh if the list is empty).", true); return; }
  if (!$("text").value.trim()) { show("speak-status", "Type the text to speak first.", true); return; }
  show("speak-status", "Synthesizing…");
  const resp = await postJson("/v1/audio/speech",
                              { model: "valle2", input: $("text").value, voice: $("voice").value, response_format: fmt });
  let blob;
  try {
    blob = await resp.blob();
  } catch (e) {
    throw new Problem("The server stopped partway through the audio (the operator can find why in the server log). "
                      + "Try again.");
  }
  const url = URL.createObjectURL(blob);
  $("output-audio").src = url;
  $("download").href = url;
  $("download").download = `valle2.${fmt}`;
  $("download").hidden = false;
  show("speak-status", `Done: ${blob.size} bytes of ${fmt}.`);
}

async function revoke() {
  const id = $("voice").value;
  if (!id) return;
  if (voices.find((v) => v.voice_id === id).kind === "shipped") {
    show("speak-status", `${id} is shipped with valle2 for every key: it cannot be revoked from here.`, true);
    return;
  }
  await postJson(`/v1/voices/${encodeURIComponent(id)}/revoke`, { reason: "revoked from the web page" });
  show("speak-status", `Revoked ${id}.`);
  await refreshVoices();
}

async function detectFile() {
  const file = $("detect-file").files[0];
  if (!file) { show("detect-status", "Choose a file first.", true); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  show("detect-status", "Checking…");
  const report = await (await call("/v1/detect", { method: "POST", body: form })).json();
  const w = report.watermark;
  $("detect-status").dataset.present = String(w.present);
  show("detect-status", w.present
    ? `Watermark PRESENT (score ${w.score}, payload ${w.payload}) in ${report.seconds} s of audio.`
    : `No watermark found (score ${w.score}) in ${report.seconds} s of audio.`);
}

const on = (id, event, statusId, work) => $(id).addEventListener(event, () => guarded(statusId, work));
on("get-phrase", "click", "enroll-status", getPhrase);
on("record-start", "click", "enroll-status", startRecording);
on("record-stop", "click", "enroll-status", stopRecording);
$("consent-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) setConsent(file, file.name);
});
on("enroll", "click", "enroll-status", enroll);
on("add-research", "click", "research-status", addResearchVoice);
on("refresh-voices", "click", "speak-status", () => refreshVoices());
$("voice").addEventListener("change", describeVoice);
on("revoke", "click", "speak-status", revoke);
on("synthesize", "click", "speak-status", synthesize);
on("detect", "click", "detect-status", detectFile);
on("api-key", "change", "speak-status", () => refreshVoices());
guarded("speak-status", () => refreshVoices());
