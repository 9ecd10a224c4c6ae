// valle2 web page: consent (record or upload), enrol, pick a voice, synthesize, download, detect.
"use strict";

const $ = (id) => document.getElementById(id);
let consentBlob = null;   // the recording or uploaded file to enrol with
let recorder = null;

function show(id, text, isError) {
  $(id).textContent = text;
  $(id).classList.toggle("error", Boolean(isError));
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return `${resp.status}: ${body.error.message}`;
  } catch (e) {
    return `${resp.status}: ${resp.statusText}`;
  }
}

async function getPhrase() {
  const resp = await fetch("/v1/voices/phrases", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ name: $("speaker-name").value }),
  });
  if (!resp.ok) { show("enroll-status", await errorText(resp), true); return; }
  const phrase = await resp.json();
  $("phrase").textContent = phrase.text;
  $("phrase").dataset.phraseId = phrase.phrase_id;
  $("record-start").disabled = !window.MediaRecorder;
  show("enroll-status", "Phrase issued; record it or upload a recording.");
}

async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
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
  const resp = await fetch("/v1/voices", { method: "POST", headers: authHeaders(), body: form });
  if (!resp.ok) { show("enroll-status", await errorText(resp), true); return; }
  const voice = await resp.json();
  await refreshVoices(voice.voice_id);
  $("enroll-status").dataset.voiceId = voice.voice_id;
  show("enroll-status", `Enrolled ${voice.name}: voice id ${voice.voice_id}`);
}

async function refreshVoices(select) {
  if (!$("api-key").value.trim()) { show("speak-status", "Enter an API key to see its voices.", true); return; }
  const resp = await fetch("/v1/voices", { headers: authHeaders() });
  if (!resp.ok) { show("speak-status", await errorText(resp), true); return; }
  show("speak-status", "");
  const { voices } = await resp.json();
  const menu = $("voice");
  menu.replaceChildren();
  for (const v of voices.filter((v) => v.revoked === null)) {
    const opt = document.createElement("option");
    opt.value = v.voice_id;
    opt.textContent = `${v.name} (${v.kind}, ${v.voice_id})`;
    menu.append(opt);
  }
  if (select) menu.value = select;
}

async function synthesize() {
  const fmt = $("format").value;
  show("speak-status", "Synthesizing…");
  const resp = await fetch("/v1/audio/speech", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ model: "valle2", input: $("text").value, voice: $("voice").value, response_format: fmt }),
  });
  if (!resp.ok) { show("speak-status", await errorText(resp), true); return; }
  const blob = await resp.blob();
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
  const resp = await fetch(`/v1/voices/${encodeURIComponent(id)}/revoke`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ reason: "revoked from the web page" }),
  });
  if (!resp.ok) { show("speak-status", await errorText(resp), true); return; }
  show("speak-status", `Revoked ${id}.`);
  await refreshVoices();
}

async function detectFile() {
  const file = $("detect-file").files[0];
  if (!file) { show("detect-status", "Choose a file first.", true); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  show("detect-status", "Checking…");
  const resp = await fetch("/v1/detect", { method: "POST", headers: authHeaders(), body: form });
  if (!resp.ok) { show("detect-status", await errorText(resp), true); return; }
  const report = await resp.json();
  const w = report.watermark;
  $("detect-status").dataset.present = String(w.present);
  show("detect-status", w.present
    ? `Watermark PRESENT (score ${w.score}, payload ${w.payload}) in ${report.seconds} s of audio.`
    : `No watermark found (score ${w.score}) in ${report.seconds} s of audio.`);
}

$("get-phrase").addEventListener("click", getPhrase);
$("record-start").addEventListener("click", startRecording);
$("record-stop").addEventListener("click", stopRecording);
$("consent-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) setConsent(file, file.name);
});
$("enroll").addEventListener("click", enroll);
$("refresh-voices").addEventListener("click", () => refreshVoices());
$("revoke").addEventListener("click", revoke);
$("synthesize").addEventListener("click", synthesize);
$("detect").addEventListener("click", detectFile);
$("api-key").addEventListener("change", () => refreshVoices());
refreshVoices();
