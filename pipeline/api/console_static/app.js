// sealscribe console: a thin client of the /v1 API. No framework, no build step.
//
// Rules kept here: the token lives in sessionStorage only (nothing persistent, no cookie) and
// never goes into a URL (the caption socket is opened with a single-use ticket); content from
// the API (transcripts, names, errors) is only ever written with textContent; the
// transcription switch shows what the server answered, never an optimistic guess.
"use strict";

(() => {
  const TOKEN_KEY = "sealscribe.token";
  const AUDIT_LIMIT = 25;
  const BOT_POLL_MS = 2000;
  const MAX_CAPTIONS = 500;
  const OPT_IN = "opt-in";

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    tenant: null,
    meetings: [],
    meeting: null, // the selected meeting, as the API last returned it
    captions: null, // {meetingId, cursor, socket, retry, timer, stopped, opened}
    botTimer: null,
    bot: null,
    seen: new Set(), // participant names heard in the selected meeting
    consent: new Map(), // participant -> their last consent change {at, verdict, actor}
    auditPage: null, // null: the newest page
    auditShown: 0, // the page on screen
    head: null, // the audit chain's head, as GET /v1/audit/head last returned it
    auditLoading: false, // an audit refresh after a change is under way
    auditAgain: false, // and another change came while it was
    busy: new WeakSet(),
  };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // ---- feedback -----------------------------------------------------------------------

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function notify(message) {
    $("notice").textContent = message;
  }

  // Runs a user action: clears old feedback, shows an API error's detail if it fails, and
  // ignores repeats of the same control while the first is still under way.
  function action(control, fn) {
    return async (event) => {
      if (event) event.preventDefault();
      if (state.busy.has(control)) return;
      state.busy.add(control);
      control.setAttribute("aria-busy", "true");
      clearError();
      try {
        await fn(event);
      } catch (err) {
        report(err);
      } finally {
        state.busy.delete(control);
        control.removeAttribute("aria-busy");
      }
    };
  }

  function report(err) {
    if (err instanceof ApiError) showError(err.message);
    else showError(`unexpected problem in the console: ${err && err.message ? err.message : err}`);
  }

  // ---- the API ------------------------------------------------------------------------

  async function api(method, path, body, raw = false) {
    const headers = { Authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the API cannot be reached (${err.message})`);
    }
    if (!resp.ok) {
      let detail = `${resp.status} ${resp.statusText}`;
      try {
        const problem = await resp.json();
        if (problem && typeof problem.detail === "string") detail = problem.detail;
      } catch (_) { /* not problem+json: keep the status line */ }
      if (resp.status === 401 && state.tenant !== null) {
        logout();
        detail = `you were logged out: ${detail}`;
      }
      throw new ApiError(resp.status, detail);
    }
    if (raw) return resp;
    if (resp.status === 204) return null;
    return resp.json();
  }

  const meetingPath = (id, rest = "") => `/v1/meetings/${encodeURIComponent(id)}${rest}`;

  // ---- formatting ---------------------------------------------------------------------

  const when = (seconds) => new Date(seconds * 1000).toLocaleString();

  function clock(ms) {
    const s = Math.floor(ms / 1000);
    const mm = String(Math.floor(s / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return `${mm}:${ss}`;
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // ---- log in / out -------------------------------------------------------------------

  async function login(token) {
    state.token = token;
    let tenant;
    try {
      tenant = await api("GET", "/v1/tenant");
    } catch (err) {
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      throw err;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.tenant = tenant;
    $("token").value = "";
    $("tenant-name").textContent = tenant.name;
    $("tenant-id").textContent = tenant.id;
    $("revoke-phrase").textContent = `revoke ${tenant.id}`;
    $("login").hidden = true;
    $("session").hidden = false;
    $("console").hidden = false;
    $("meetings-title").focus();
    showRetention(tenant.retention);
    await Promise.all([loadMeetings(), loadKeys(), loadAudit(), loadTokens(), loadWebhooks()]);
  }

  // ---- retention ----------------------------------------------------------------------

  function showRetention(r) {
    $("retention-transcripts").value = String(+(r.transcript_ttl / 86400).toFixed(4));
    $("retention-audio").value = String(+(r.audio_ttl / 60).toFixed(2));
  }

  async function saveRetention() {
    const days = Number.parseFloat($("retention-transcripts").value);
    const minutes = Number.parseFloat($("retention-audio").value);
    if (!(days > 0) || !(minutes > 0)) {
      throw new ApiError(0, "enter positive numbers of days and minutes");
    }
    const r = await api("PUT", "/v1/tenant/retention", {
      transcript_ttl: Math.max(1, Math.round(days * 86400)),
      audio_ttl: Math.max(1, Math.round(minutes * 60)),
    });
    showRetention(r);
    notify(`Retention saved: transcripts ${r.transcript_ttl} s, audio wait ${r.audio_ttl} s.`);
  }

  // ---- privacy report -----------------------------------------------------------------

  async function loadPrivacy() {
    if (!state.meeting) return;
    const id = state.meeting.id;
    const p = await api("GET", `${meetingPath(id)}/privacy`);
    rememberConsent(id, p.consent_changes);
    const audit = $("privacy-audit");
    audit.textContent = p.audit_intact ? "intact" : `BROKEN: ${p.audit_problems.join("; ")}`;
    audit.className = p.audit_intact ? "" : "bad";
    const list = (items) => items.map(([at, what, who]) => `${when(at)} ${what} by ${who}`)
      .join("; ") || "never";
    $("privacy-switches").textContent = list(p.switches);
    $("privacy-consent").textContent = list(p.consent_changes);
    const counts = (o) => Object.entries(o).map(([k, n]) => `${k}: ${n}`).join("; ") || "none";
    $("privacy-uses").textContent = counts(p.key_uses);
    $("privacy-purged").textContent = counts(p.purged);
    $("privacy-stored").textContent =
      `${p.transcript_segments} sealed transcript segments, ${p.audio_pending} sealed audio waiting`;
    $("privacy-interims").textContent = `${p.interims_transcribed} transcribed; purged ` +
      `untranscribed: ${counts(p.interims_purged)} (${p.interims_note})`;
    // the manifests: every sealed segment accounted for, or each missing one named
    const complete = $("privacy-complete");
    complete.textContent = p.complete ? "complete" : "incomplete";
    complete.className = p.complete ? "" : "bad";
    showProblems($("privacy-missing"), p.missing);
  }

  // a list of problems the API named, one item each (as text), hidden when there are none
  function showProblems(list, problems) {
    list.replaceChildren(...problems.map((text) => el("li", String(text))));
    list.hidden = problems.length === 0;
  }

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    deselect();
    state.token = null;
    state.tenant = null;
    state.meetings = [];
    state.auditPage = null;
    state.head = null;
    showHead(null);
    $("head-file").value = "";
    $("head-verify").textContent = "no saved head checked yet";
    $("head-verify").className = "verify";
    showProblems($("head-problems"), []);
    $("meeting-list").replaceChildren();
    $("audit-table").tBodies[0].replaceChildren();
    $("tokens-table").tBodies[0].replaceChildren();
    $("webhooks-table").tBodies[0].replaceChildren();
    $("new-webhook-secret").value = "";
    $("new-webhook").hidden = true;
    $("new-token-value").value = "";
    $("new-token").hidden = true;
    for (const id of ["tenant-name", "tenant-id", "revoke-phrase", "notice"]) {
      $(id).textContent = "";
    }
    $("revoke-confirm").value = "";
    $("revoke").disabled = true;
    $("console").hidden = true;
    $("session").hidden = true;
    $("login").hidden = false;
    $("token").focus();
  }

  // ---- meetings -----------------------------------------------------------------------

  async function loadMeetings() {
    const meetings = await api("GET", "/v1/meetings");
    meetings.sort((a, b) => b.created - a.created);
    state.meetings = meetings;
    renderMeetingList();
  }

  function renderMeetingList() {
    const list = $("meeting-list");
    const items = state.meetings.map((m) => {
      const button = el("button", undefined, "meeting-item");
      button.type = "button";
      button.dataset.id = m.id;
      button.append(el("code", m.id), el("span", when(m.created), "meeting-created"),
        badge(m.transcription));
      if (m.consent_mode === OPT_IN) button.append(el("span", "Opt-in", "badge optin"));
      if (state.meeting && state.meeting.id === m.id) button.setAttribute("aria-current", "true");
      button.addEventListener("click", action(button, () => select(m.id)));
      const li = el("li");
      li.append(button);
      return li;
    });
    list.replaceChildren(...items);
    $("meetings-empty").hidden = items.length > 0;
  }

  function badge(on) {
    return el("span", on ? "Transcription ON" : "Transcription OFF", on ? "badge on" : "badge off");
  }

  async function createMeeting() {
    // no transcription field: "transcription is off by default" is the API's rule, not the
    // console's; so is notice, the consent mode sent only when opt-in is chosen
    const body = {};
    if ($("new-consent-mode").value === OPT_IN) body.consent_mode = OPT_IN;
    const meeting = await api("POST", "/v1/meetings", body);
    state.meetings.unshift(meeting);
    notify(`Meeting ${meeting.id} created; transcription is off; consent mode ` +
      `${meeting.consent_mode}.`);
    await select(meeting.id);
    await refreshCustody();
  }

  async function select(id) {
    const meeting = await api("GET", meetingPath(id));
    if (!state.meeting || state.meeting.id !== id) {
      deselect();
      state.meeting = meeting;
      $("captions").replaceChildren();
      $("bot-url").value = "";
      startCaptions(id);
      startBotPoll(id);
    }
    showMeeting(meeting);
    $("meeting").hidden = false;
    $("meeting-title").focus();
    await loadConsent();
  }

  function deselect() {
    stopCaptions();
    if (state.botTimer !== null) clearInterval(state.botTimer);
    state.botTimer = null;
    state.bot = null;
    state.meeting = null;
    state.seen = new Set();
    state.consent = new Map();
    hideLink();
    $("meeting").hidden = true;
    $("captions").replaceChildren();
    delete $("captions").dataset.cursor;
    $("participants").replaceChildren();
    $("delete-confirm").hidden = true;
    renderBot(null);
  }

  function showMeeting(meeting) {
    state.meeting = meeting;
    const i = state.meetings.findIndex((m) => m.id === meeting.id);
    if (i >= 0) state.meetings[i] = meeting;
    $("meeting-id").textContent = meeting.id;
    $("delete-id").textContent = meeting.id;
    $("meeting-created").textContent = when(meeting.created);
    const on = meeting.transcription;
    const sw = $("transcription-switch");
    sw.setAttribute("aria-checked", on ? "true" : "false");
    sw.classList.toggle("on", on);
    sw.classList.toggle("off", !on);
    $("transcription-state").textContent = on ? "ON" : "OFF";
    const explain = $("transcription-explain");
    explain.textContent = on
      ? "Transcription is ON: participants' audio is sealed with your key and transcribed."
      : "Transcription is off: no audio of this meeting is stored or transcribed.";
    explain.classList.toggle("on", on);
    explain.classList.toggle("off", !on);
    const optIn = meeting.consent_mode === OPT_IN;
    $("consent-mode").textContent = meeting.consent_mode;
    $("consent-mode-explain").textContent = optIn
      ? "Opt-in: nobody's audio is kept until that participant consents."
      : "Notice: everyone is transcribed while transcription is on, unless they opt out.";
    $("consent-mode-switch").textContent = optIn ? "Switch to notice" : "Switch to opt-in";
    if ("notices" in meeting) showNotices(meeting);
    renderMeetingList();
    renderParticipants();
  }

  // Whether the room can carry the bot's notices (its chat), as GET /v1/meetings/{id} says.
  function showNotices(meeting) {
    const carried = meeting.notices === "chat";
    const line = $("room-notices");
    line.textContent = carried
      ? `Notices reach the room: ${meeting.notices_why}.`
      : `The room cannot carry notices: ${meeting.notices_why}.`;
    line.classList.toggle("bad", !carried);
  }

  async function toggleTranscription() {
    const m = state.meeting;
    const want = $("transcription-switch").getAttribute("aria-checked") !== "true";
    const updated = await api("PUT", meetingPath(m.id, "/transcription"), { enabled: want });
    if (state.meeting && state.meeting.id === updated.id) showMeeting(updated);
    notify(`Transcription switched ${updated.transcription ? "ON" : "OFF"} for ${updated.id}.`);
    auditChanged();
  }

  async function deleteMeeting() {
    const id = state.meeting.id;
    await api("DELETE", meetingPath(id));
    deselect();
    state.meetings = state.meetings.filter((m) => m.id !== id);
    renderMeetingList();
    notify(`Meeting ${id} was deleted and its keys destroyed.`);
    $("meetings-title").focus();
    await refreshCustody();
  }

  // ---- participants and consent -------------------------------------------------------

  async function switchConsentMode() {
    const m = state.meeting;
    const mode = m.consent_mode === OPT_IN ? "notice" : OPT_IN;
    const updated = await api("PUT", meetingPath(m.id, "/consent-mode"), { mode });
    if (state.meeting && state.meeting.id === updated.id) showMeeting(updated);
    notify(updated.consent_mode === OPT_IN
      ? `Meeting ${updated.id} is opt-in: nobody is kept until they consent.`
      : `Meeting ${updated.id} is notice: everyone is transcribed unless they opt out.`);
    auditChanged();
  }

  // How a participant's last choice was made: the privacy report's consent changes name the
  // actor, "participant-link@..." when they chose on their own link page.
  function how(actor) {
    if (actor.startsWith("participant-link@")) return "by their own link";
    if (actor.startsWith("participant-chat@")) return "by themselves in the meeting chat";
    return "by the owner";
  }

  // consent changes ([time, "NAME:opted-out|opted-in", actor], oldest first): the last each
  function rememberConsent(meetingId, changes) {
    if (!state.meeting || state.meeting.id !== meetingId) return;
    const last = new Map();
    for (const [at, what, actor] of changes) {
      const text = String(what);
      const i = text.lastIndexOf(":");
      if (i <= 0) continue;
      const verdict = text.slice(i + 1);
      last.set(text.slice(0, i), { at: Number(at), verdict, actor: String(actor) });
    }
    state.consent = last;
    renderParticipants();
  }

  // the consent history comes with the privacy report (read scope); without it, rows only
  // lack the "how"
  async function loadConsent() {
    const m = state.meeting;
    if (!m) return;
    let p;
    try {
      p = await api("GET", meetingPath(m.id, "/privacy"));
    } catch (err) {
      if (err.status === 403) return;
      throw err;
    }
    rememberConsent(m.id, p.consent_changes);
  }

  async function refreshParticipants() {
    const id = state.meeting.id;
    const meeting = await api("GET", meetingPath(id));
    if (state.meeting && state.meeting.id === id) showMeeting(meeting);
    await loadConsent();
  }

  // what the server says of one participant: kept (switch on) or not, in words
  function participantState(m, name) {
    if (m.opted_out.includes(name)) {
      return { on: false, label: "Opted out", text: "Opted out: nothing they say is kept" };
    }
    if (m.consent_mode === OPT_IN) {
      return m.opted_in.includes(name)
        ? { on: true, label: "Consented", text: "Consented" }
        : { on: false, label: "Waiting", text: "Waiting for consent: nothing they say is kept" };
    }
    return { on: true, label: "Transcribed", text: "Transcribed (notice given)" };
  }

  function renderParticipants() {
    const m = state.meeting;
    if (!m) return;
    const names = new Set([...state.seen, ...m.opted_out, ...m.opted_in, ...state.consent.keys()]);
    if (state.bot) for (const p of state.bot.participants) names.add(p);
    const rows = [...names].sort().map((name) => {
      const s = participantState(m, name);
      const li = el("li", undefined, "participant");
      li.dataset.participant = name;
      const info = el("div", undefined, "participant-info");
      info.append(el("span", name, "participant-name"),
        el("span", s.text, `participant-state ${s.on ? "on" : "off"}`));
      const last = state.consent.get(name);
      if (last) {
        const verb = last.verdict === "opted-in" ? "opted in" : "opted out";
        info.append(el("span", `${verb} ${how(last.actor)}, ${when(last.at)}`, "participant-how"));
      }
      const sw = el("button", undefined, `switch small ${s.on ? "on" : "off"}`);
      sw.type = "button";
      sw.setAttribute("role", "switch");
      sw.setAttribute("aria-checked", s.on ? "true" : "false");
      sw.setAttribute("aria-label", `Transcribe ${name}`);
      sw.append(el("span", undefined, "knob"), el("span", s.label, "switch-text"));
      sw.querySelector(".knob").setAttribute("aria-hidden", "true");
      sw.addEventListener("click", action(sw, () => setConsent(name, !s.on)));
      const link = el("button", "Consent link");
      link.type = "button";
      link.setAttribute("aria-label", `Consent link for ${name}`);
      link.addEventListener("click", action(link, () => makeLink(name)));
      const actions = el("div", undefined, "participant-actions");
      actions.append(sw, link);
      li.append(info, actions);
      return li;
    });
    $("participants").replaceChildren(...rows);
  }

  async function setConsent(name, transcribe) {
    const m = state.meeting;
    const path = meetingPath(m.id, `/participants/${encodeURIComponent(name)}/consent`);
    const updated = await api("PUT", path, { transcribe });
    state.seen.add(name);
    showMeeting(updated);
    let said = `${name} opted out.`;
    if (transcribe) {
      said = updated.consent_mode === OPT_IN
        ? `${name} consented.`
        : `${name} is transcribed again.`;
    }
    notify(said);
    await loadConsent();
    const again = [...$("participants").querySelectorAll("button[role=switch]")]
      .find((b) => b.getAttribute("aria-label") === `Transcribe ${name}`);
    if (again) again.focus();
    auditChanged();
  }

  // a participant name typed in the form, checked as the API's path segment needs it
  function typedParticipant() {
    const name = $("participant-name").value.trim();
    if (!name) throw new ApiError(0, "enter the participant's name as shown in the meeting");
    // the API addresses a participant by a path segment, which cannot hold a slash
    if (name.includes("/")) throw new ApiError(0, "a participant name cannot contain '/'");
    return name;
  }

  // A signed, expiring link to the participant's own consent page: shown once here, in a
  // read-only field to copy from; the console keeps no list of them.
  async function makeLink(name) {
    const m = state.meeting;
    const ttl = Number.parseInt($("consent-link-ttl").value, 10) || 86400;
    const path = meetingPath(m.id, `/participants/${encodeURIComponent(name)}/link`);
    const link = await api("POST", path, { ttl });
    if (!state.meeting || state.meeting.id !== m.id) return;
    $("consent-link-name").textContent = link.participant;
    $("consent-link-expires").textContent = when(link.expires);
    const field = $("consent-link-url");
    field.value = link.url;
    $("consent-link").hidden = false;
    if (!state.seen.has(link.participant)) {
      state.seen.add(link.participant);
      renderParticipants();
    }
    field.focus();
    field.select();
    notify(`Consent link for ${link.participant} made; it works until ${when(link.expires)}.`);
    auditChanged();
  }

  function hideLink() {
    $("consent-link-url").value = "";
    $("consent-link-name").textContent = "";
    $("consent-link-expires").textContent = "";
    $("consent-link").hidden = true;
  }

  async function copyLink() {
    const field = $("consent-link-url");
    field.focus();
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      notify("Consent link copied.");
    } catch (_) {
      notify("The consent link is selected: copy it with Ctrl+C (⌘C on a Mac).");
    }
  }

  // ---- the bot ------------------------------------------------------------------------

  function startBotPoll(id) {
    const poll = async () => {
      if (!state.meeting || state.meeting.id !== id || document.hidden) return;
      try {
        const bot = await api("GET", meetingPath(id, "/bot"));
        if (state.meeting && state.meeting.id === id) renderBot(bot);
        const meeting = await api("GET", meetingPath(id));
        if (state.meeting && state.meeting.id === id) showNotices(meeting);
      } catch (err) {
        if (err.status === 404) renderBot(null);
        // other errors: keep the last state; the next poll tries again
      }
    };
    poll();
    state.botTimer = setInterval(poll, BOT_POLL_MS);
  }

  function renderBot(bot) {
    const before = state.bot ? state.bot.participants.join("\n") : "";
    state.bot = bot;
    const stateEl = $("bot-state");
    stateEl.textContent = bot ? bot.state.replaceAll("_", " ") : "no bot sent";
    stateEl.className = bot ? `bot-${bot.state}` : "";
    $("bot-target").textContent = bot ? bot.target : "–";
    $("bot-since").textContent = bot ? when(bot.since) : "–";
    $("bot-reason").textContent = bot && bot.reason ? bot.reason : "–";
    $("bot-participants").textContent =
      bot && bot.participants.length ? bot.participants.join(", ") : "–";
    if (bot && bot.participants.join("\n") !== before) renderParticipants();
  }

  async function sendBot() {
    const url = $("bot-url").value.trim();
    if (!url) throw new ApiError(0, "enter the Janus room URL, e.g. janus://HOST:PORT/ROOM");
    const bot = await api("POST", meetingPath(state.meeting.id, "/bot"), { url });
    renderBot(bot);
    notify(`The bot is on its way to ${bot.target}.`);
    auditChanged();
  }

  async function callBotBack() {
    const bot = await api("DELETE", meetingPath(state.meeting.id, "/bot"));
    renderBot(bot);
    notify("The bot was called back.");
    auditChanged();
  }

  // ---- live captions ------------------------------------------------------------------

  function startCaptions(meetingId) {
    // lines: utterance id -> its line on screen (an interim's, until its final replaces it)
    const c = {
      meetingId, cursor: "0", socket: null, retry: 0, timer: null, stopped: false,
      lines: new Map(),
      finals: new Map(), // participant -> the highest utterance number with its final shown
    };
    state.captions = c;
    connectCaptions(c).catch(report);
  }

  function stopCaptions() {
    const c = state.captions;
    state.captions = null;
    if (!c) return;
    c.stopped = true;
    if (c.timer !== null) clearTimeout(c.timer);
    if (c.socket) c.socket.close(1000);
    $("captions-state").textContent = "not connected";
  }

  async function connectCaptions(c) {
    $("captions-state").textContent = c.retry ? "reconnecting…" : "connecting…";
    // Browsers cannot set headers on a WebSocket, and URLs get logged: the token stays in
    // the header of this request, and the socket gets a ticket good for one connection.
    let ticket;
    try {
      ticket = await api("POST", meetingPath(c.meetingId, "/captions/ticket"));
    } catch (err) {
      if (c.stopped || state.captions !== c) return;
      if (err.status === 401 || err.status === 403 || err.status === 404) {
        $("captions-state").textContent = `stopped: ${err.message}`;
        return;
      }
      retryCaptions(c);
      return;
    }
    if (c.stopped || state.captions !== c) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ cursor: c.cursor, ticket: ticket.ticket });
    const url = `${scheme}//${location.host}${meetingPath(c.meetingId, "/captions")}?${query}`;
    const ws = new WebSocket(url);
    c.socket = ws;
    c.opened = false;
    ws.addEventListener("open", () => {
      c.opened = true;
      c.retry = 0;
      if (state.captions === c) $("captions-state").textContent = "live";
    });
    ws.addEventListener("message", (event) => {
      if (state.captions !== c) return;
      let caption;
      try {
        caption = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (typeof caption.cursor === "string") {
        c.cursor = caption.cursor;
        $("captions").dataset.cursor = caption.cursor;
      }
      addCaption(c, caption);
    });
    ws.addEventListener("close", (event) => {
      if (c.stopped || state.captions !== c) return;
      captionsClosed(c, event).catch(report);
    });
  }

  async function captionsClosed(c, event) {
    // The API names a refusal with a close code (4401, 4404, 4400, 4403, 4429); a refusal
    // before the handshake reaches the browser as 1006 only, so ask the API what is wrong.
    if (event.code === 4403) { // the key was revoked, or the token lacks the scope
      $("captions-state").textContent = `stopped: ${event.reason || "the key was revoked"}`;
      return;
    }
    if (event.code === 4401 || event.code === 4404 || event.code === 4400 || !c.opened) {
      try {
        await api("GET", meetingPath(c.meetingId));
      } catch (err) {
        if (err.status === 401 || err.status === 404) {
          $("captions-state").textContent = `stopped: ${err.message}`;
          if (err.status === 404) showError(err.message);
          return;
        }
      }
      if (event.code === 4400) {
        $("captions-state").textContent = `stopped: ${event.reason || "bad cursor"}`;
        return;
      }
    }
    retryCaptions(c, event.code === 4429 ? event.reason : "");
  }

  function retryCaptions(c, why = "") {
    if (c.stopped || state.captions !== c) return;
    c.retry += 1;
    const delay = Math.min(10000, 500 * 2 ** Math.min(c.retry - 1, 5));
    $("captions-state").textContent = `${why || "disconnected"}; reconnecting in ` +
      `${Math.round(delay / 100) / 10} s`;
    c.timer = setTimeout(() => {
      c.timer = null;
      if (!c.stopped && state.captions === c) connectCaptions(c).catch(report);
    }, delay);
  }

  // One line per utterance: its interim captions (greyed, hidden from screen readers, who
  // would otherwise hear every draft) each replace the one before, and the final replaces
  // them in the same place (a new node, so the live region announces the final once).
  function addCaption(c, caption) {
    const name = String(caption.participant);
    const interim = caption.kind === "interim";
    const utterance = typeof caption.utterance === "string" ? caption.utterance : "";
    const seq = Number(utterance.slice(utterance.lastIndexOf(".") + 1));
    const part = interim ? Number(caption.part) || 0 : Infinity;
    const shown = utterance ? c.lines.get(utterance) : undefined;
    if (shown && interim && part <= Number(shown.dataset.part)) return; // older, or the final's
    if (interim && seq <= (c.finals.get(name) ?? -1)) return; // the speaker is past it
    const li = el("li", undefined, interim ? "caption interim" : "caption final");
    li.dataset.cursor = String(caption.cursor);
    li.dataset.utterance = utterance;
    li.dataset.part = String(part);
    if (interim) li.setAttribute("aria-hidden", "true");
    li.append(el("span", clock(Number(caption.start_ms) || 0), "caption-time"),
      el("span", name, "speaker"), el("span", String(caption.text), "caption-text"));
    const list = $("captions");
    if (shown) shown.replaceWith(li);
    else list.append(li);
    if (utterance) c.lines.set(utterance, li);
    if (!interim && utterance) {
      c.finals.set(name, Math.max(seq, c.finals.get(name) ?? -1));
      // a participant's final ends their earlier utterances: an interim of one still shown
      // never got a final (too short, opted out, switched off) and goes
      for (const old of list.querySelectorAll(".caption.interim")) {
        const u = old.dataset.utterance;
        if (u.slice(0, u.lastIndexOf(".")) === name
            && Number(u.slice(u.lastIndexOf(".") + 1)) < seq) {
          old.remove();
          c.lines.delete(u);
        }
      }
    }
    while (list.childElementCount > MAX_CAPTIONS) {
      c.lines.delete(list.firstElementChild.dataset.utterance);
      list.firstElementChild.remove();
    }
    if (!state.seen.has(name)) {
      state.seen.add(name);
      renderParticipants();
    }
  }

  // ---- transcript ---------------------------------------------------------------------

  async function downloadTranscript() {
    const id = state.meeting.id;
    const format = $("transcript-format").value;
    // a plain link cannot carry the bearer header: fetch it and hand over a Blob
    const resp = await api("GET", meetingPath(id, `/transcript?format=${encodeURIComponent(format)}`),
      undefined, true);
    const blob = await resp.blob();
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = `${id}.${format}`;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 30000);
    notify(`Transcript of ${id} downloaded as ${format}.`);
  }

  // ---- keys ---------------------------------------------------------------------------

  // keys, the audit log and tokens need an admin token: with another, say so in the panel
  async function adminOnly(load, where) {
    try {
      return await load();
    } catch (err) {
      if (err.status !== 403) throw err;
      $(where).textContent = "needs an admin token";
      return null;
    }
  }

  async function loadKeys() {
    return adminOnly(showKeys, "key-provider");
  }

  async function showKeys() {
    const k = await api("GET", "/v1/keys");
    $("key-provider").textContent = k.provider;
    $("key-version").textContent = String(k.primary_version);
    $("key-versions").textContent = k.versions.join(", ") || "–";
    $("key-min").textContent = String(k.min_version);
    const wrapped = Object.entries(k.wrapped_by_version).map(([v, n]) => `v${v}: ${n}`);
    $("key-wrapped").textContent = wrapped.join(", ") || "none";
    const revoked = $("key-revoked");
    revoked.textContent = k.revoked ? "YES: nothing can be opened" : "no";
    revoked.className = k.revoked ? "bad" : "";
    return k;
  }

  async function rotate() {
    const r = await api("POST", "/v1/keys/rotate");
    notify(`Key rotated to version ${r.primary_version}; ${r.rewrapped} data keys rewrapped.`);
    await refreshCustody();
  }

  async function retire() {
    const below = Number.parseInt($("retire-below").value, 10);
    if (!Number.isInteger(below) || below < 1) {
      throw new ApiError(0, "enter the version below which to retire, e.g. 2");
    }
    const r = await api("POST", "/v1/keys/retire", { below });
    notify(`Versions below ${r.retired_below} retired; oldest usable is now ${r.min_version}.`);
    await refreshCustody();
  }

  function revokeReady() {
    return state.tenant !== null && $("revoke-confirm").value === `revoke ${state.tenant.id}`;
  }

  async function revoke() {
    if (!revokeReady()) {
      throw new ApiError(0, `type "revoke ${state.tenant.id}" exactly to confirm`);
    }
    await api("POST", "/v1/keys/revoke", { confirm: $("revoke-confirm").value });
    $("revoke-confirm").value = "";
    $("revoke").disabled = true;
    notify("The key was revoked: nothing of this tenant can be opened again.");
    await refreshCustody();
  }

  // keys and audit change with most actions (new data keys, rotations, key uses)
  async function refreshCustody() {
    await Promise.all([loadKeys(), loadAudit()]);
  }

  // ---- API tokens ---------------------------------------------------------------------

  async function loadTokens() {
    return adminOnly(showTokens, "tokens-state");
  }

  async function showTokens() {
    const tokens = await api("GET", "/v1/tokens");
    $("tokens-state").textContent = plural(tokens.length, "token", "tokens");
    const rows = tokens.map((t) => {
      const tr = el("tr");
      tr.dataset.id = t.id;
      for (const value of [t.name, t.scopes.join(", "), when(t.created),
        t.expires === null ? "never" : `${when(t.expires)}${t.expired ? " (expired)" : ""}`]) {
        tr.append(el("td", String(value)));
      }
      const cell = el("td");
      const rotateButton = el("button", "Rotate");
      rotateButton.type = "button";
      rotateButton.setAttribute("aria-label", `Rotate token ${t.name}`);
      rotateButton.addEventListener("click", action(rotateButton, () => rotateToken(t)));
      const revokeButton = el("button", "Revoke", "danger");
      revokeButton.type = "button";
      revokeButton.setAttribute("aria-label", `Revoke token ${t.name}`);
      revokeButton.addEventListener("click", action(revokeButton, () => revokeToken(t)));
      cell.append(rotateButton, revokeButton);
      tr.append(cell);
      return tr;
    });
    $("tokens-table").tBodies[0].replaceChildren(...rows);
    return tokens;
  }

  function showNewToken(t) {
    $("new-token-value").value = t.token;
    $("new-token-name").textContent = t.name;
    $("new-token").hidden = false;
    $("new-token-value").focus();
    $("new-token-value").select();
  }

  async function createToken() {
    const name = $("token-name").value.trim() || "console";
    const scopes = ["admin", "meetings", "read"].filter((s) => $(`token-scope-${s}`).checked);
    if (!scopes.length) throw new ApiError(0, "choose at least one scope");
    const days = Number.parseFloat($("token-days").value);
    const body = { name, scopes };
    if (days > 0) body.expires_in = Math.max(60, Math.round(days * 86400));
    const t = await api("POST", "/v1/tokens", body);
    $("token-name").value = "";
    showNewToken(t);
    notify(`Token ${t.name} created; copy it now, it is not shown again.`);
    await loadTokens();
  }

  async function rotateToken(t) {
    const rotated = await api("POST", `/v1/tokens/${encodeURIComponent(t.id)}/rotate`);
    showNewToken(rotated);
    notify(`Token ${t.name} rotated: the old secret no longer works.`);
    await loadTokens();
  }

  async function revokeToken(t) {
    await api("DELETE", `/v1/tokens/${encodeURIComponent(t.id)}`);
    notify(`Token ${t.name} revoked.`);
    await loadTokens();
  }

  // ---- webhooks -----------------------------------------------------------------------

  async function loadWebhooks() {
    return adminOnly(showWebhooks, "webhooks-state");
  }

  async function showWebhooks() {
    const hooks = await api("GET", "/v1/webhooks");
    const disabled = hooks.filter((h) => !h.enabled);
    const stateLine = $("webhooks-state");
    stateLine.textContent = plural(hooks.length, "endpoint", "endpoints") +
      (disabled.length ? `; ${disabled.length} DISABLED after failing deliveries` : "");
    stateLine.className = disabled.length ? "hint bad" : "hint";
    const rows = hooks.map((h) => {
      const tr = el("tr");
      tr.dataset.id = h.id;
      tr.append(el("td", h.url), el("td", h.events.join(", ")));
      let status = "enabled";
      if (!h.enabled) status = `DISABLED: ${h.disabled_reason}`;
      else if (h.failing_since !== null) status = `failing since ${when(h.failing_since)}`;
      tr.append(el("td", status, h.enabled ? "" : "bad"), el("td", String(h.waiting)));
      const cell = el("td");
      const buttons = [
        [h.enabled ? "Replay" : "Re-enable", "", () => replayWebhook(h)],
        ["Rotate secret", "", () => rotateWebhook(h)],
        ["Remove", "danger", () => removeWebhook(h)],
      ];
      for (const [label, kind, fn] of buttons) {
        const b = el("button", label, kind);
        b.type = "button";
        b.setAttribute("aria-label", `${label} webhook ${h.id}`);
        b.addEventListener("click", action(b, fn));
        cell.append(b);
      }
      tr.append(cell);
      return tr;
    });
    $("webhooks-table").tBodies[0].replaceChildren(...rows);
    state.webhooksDisabled = disabled.length;
    return hooks;
  }

  // said at login, so a tenant hears of an endpoint given up on without looking for it
  function webhookWarning() {
    const n = state.webhooksDisabled || 0;
    return n ? ` ${plural(n, "webhook endpoint was", "webhook endpoints were")} disabled ` +
      "after failing deliveries: see Webhooks." : "";
  }

  function showSecret(h) {
    $("new-webhook-secret").value = h.secret;
    $("new-webhook-id").textContent = h.id;
    $("new-webhook").hidden = false;
    $("new-webhook-secret").focus();
    $("new-webhook-secret").select();
  }

  async function addWebhook() {
    const url = $("webhook-url").value.trim();
    if (!url) throw new ApiError(0, "enter the URL events are sent to");
    const h = await api("POST", "/v1/webhooks", { url });
    $("webhook-url").value = "";
    showSecret(h);
    notify(`Webhook ${h.id} added; copy its signing secret now, it is not shown again.`);
    await loadWebhooks();
  }

  async function replayWebhook(h) {
    const r = await api("POST", `/v1/webhooks/${encodeURIComponent(h.id)}/replay`, {});
    notify(`Webhook ${h.id} enabled; ${plural(r.streams, "queue", "queues")} sent again.`);
    await loadWebhooks();
  }

  async function rotateWebhook(h) {
    const rotated = await api("POST", `/v1/webhooks/${encodeURIComponent(h.id)}/rotate-secret`);
    showSecret(rotated);
    notify(`Webhook ${h.id} has a new secret; the old one also signs for 24 hours.`);
    await loadWebhooks();
  }

  async function removeWebhook(h) {
    await api("DELETE", `/v1/webhooks/${encodeURIComponent(h.id)}`);
    notify(`Webhook ${h.id} removed.`);
    await loadWebhooks();
  }

  // ---- audit --------------------------------------------------------------------------

  async function loadAudit() {
    return adminOnly(showAudit, "audit-verify");
  }

  // The audit view after a change, loaded once the change is on screen and outside the
  // control's busy time: verifying a long chain takes a while, and the control must take
  // the next click (a click on a busy control is dropped). One load at a time, in order;
  // changes made during it ask for one more.
  function auditChanged() {
    if (state.auditLoading) {
      state.auditAgain = true;
      return;
    }
    state.auditLoading = true;
    (async () => {
      try {
        do {
          state.auditAgain = false;
          if (state.token) await loadAudit(); // not after a logout
        } while (state.auditAgain);
      } catch (err) {
        report(err);
      } finally {
        state.auditLoading = false;
      }
    })();
  }

  async function showAudit() {
    const v = await api("GET", "/v1/audit/verify");
    const verify = $("audit-verify");
    if (v.ok) {
      verify.textContent = `Hash chain intact: ${plural(v.entries, "entry", "entries")} verified.`;
      verify.className = "verify ok";
    } else {
      verify.textContent =
        `Hash chain BROKEN (${plural(v.entries, "entry", "entries")}): ${v.problems.join("; ")}`;
      verify.className = "verify bad";
    }
    const pages = Math.max(1, Math.ceil(v.entries / AUDIT_LIMIT));
    let page = state.auditPage === null ? pages - 1 : Math.min(state.auditPage, pages - 1);
    page = Math.max(0, page);
    const data = await api("GET", `/v1/audit?offset=${page * AUDIT_LIMIT}&limit=${AUDIT_LIMIT}`);
    const rows = data.entries.slice().reverse().map((e) => {
      const tr = el("tr");
      for (const value of [e.seq, when(e.at), e.action, e.outcome, e.purpose ?? "–",
        e.key_version ?? "–", e.meeting ?? "–", e.actor]) {
        tr.append(el("td", String(value)));
      }
      return tr;
    });
    $("audit-table").tBodies[0].replaceChildren(...rows);
    $("audit-page").textContent = `Page ${page + 1} of ${pages}`;
    $("audit-prev").disabled = page <= 0;
    $("audit-next").disabled = page >= pages - 1;
    state.auditPage = page >= pages - 1 ? null : page; // on the newest page, stay there
    state.auditShown = page;
    await loadHead();
  }

  // ---- the audit head: kept by the customer, outside sealscribe -------------------------

  async function loadHead() {
    let head = null;
    try {
      head = await api("GET", "/v1/audit/head");
    } catch (err) {
      if (err.status !== 409) throw err; // 409: the chain has no entries yet
    }
    state.head = head;
    showHead(head);
    return head;
  }

  function showHead(h) {
    $("head-entry").textContent = h ? String(h.count - 1) : (state.token ? "no entries yet" : "–");
    $("head-at").textContent = h ? when(h.at) : "–";
    $("head-hash").textContent = h ? `${String(h.hash).slice(0, 16)}…` : "–";
    $("head-hash").title = h ? String(h.hash) : "";
    const mac = $("head-mac");
    mac.textContent = h ? (h.mac ? "yes, keyed with your tenant key" : "no (an unkeyed entry)") : "–";
    $("head-download").disabled = !h;
  }

  // the head as a JSON file (a Blob: nothing else to fetch); it holds no secret
  async function downloadHead() {
    const h = await loadHead(); // the newest, as shown
    if (!h) throw new ApiError(0, "the audit chain has no entries yet: there is no head to keep");
    const blob = new Blob([`${JSON.stringify(h, null, 2)}\n`], { type: "application/json" });
    const href = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = href;
    a.download = `audit-head-${h.tenant}-${h.count}.json`;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 30000);
    notify(`Audit head (entry ${h.count - 1}) downloaded: keep it outside sealscribe.`);
  }

  async function verifyHead() {
    const input = $("head-file");
    const file = input.files && input.files[0];
    if (!file) return;
    const result = $("head-verify");
    let since;
    try {
      since = JSON.parse(await file.text());
    } catch (_) {
      throw new ApiError(0, `${file.name} is not a saved audit head (not JSON)`);
    } finally {
      input.value = ""; // choosing the same file again checks again
    }
    if (since === null || typeof since !== "object" || Array.isArray(since)) {
      throw new ApiError(0, `${file.name} is not a saved audit head`);
    }
    result.textContent = `checking ${file.name}…`;
    result.className = "verify";
    showProblems($("head-problems"), []);
    let v;
    try {
      v = await api("POST", "/v1/audit/verify", { since });
    } catch (err) {
      result.textContent = `not checked: ${err.message}`;
      throw err;
    }
    const entries = plural(v.entries, "entry", "entries");
    if (v.ok) {
      result.textContent = `ok: the chain (${entries}) still extends the saved head ` +
        `(entry ${v.since - 1}) and verifies.`;
      result.className = "verify ok";
    } else {
      result.textContent = `NOT ok against the saved head (${entries}): ` +
        `${plural(v.problems.length, "problem", "problems")}`;
      result.className = "verify bad";
    }
    showProblems($("head-problems"), v.problems);
    notify(`${file.name} checked against the audit chain: ${v.ok ? "ok" : "problems found"}.`);
  }

  function auditStep(delta) {
    return async () => {
      state.auditPage = Math.max(0, (state.auditShown ?? 0) + delta);
      await loadAudit();
    };
  }

  // ---- wiring -------------------------------------------------------------------------

  function on(id, type, fn) {
    const node = $(id);
    node.addEventListener(type, action(node, fn));
  }

  function start() {
    on("login-form", "submit", async () => {
      const token = $("token").value.trim();
      if (!token) throw new ApiError(0, "enter your tenant API token");
      await login(token);
      notify(`Logged in as ${state.tenant.name}.${webhookWarning()}`);
    });
    $("logout").addEventListener("click", () => {
      clearError();
      logout();
      notify("Logged out; the token was removed from this tab.");
    });
    $("error-dismiss").addEventListener("click", clearError);
    on("create-meeting", "click", createMeeting);
    on("refresh-meetings", "click", loadMeetings);
    on("transcription-switch", "click", toggleTranscription);
    on("bot-form", "submit", sendBot);
    on("bot-leave", "click", callBotBack);
    on("transcript-form", "submit", downloadTranscript);
    on("consent-form", "submit", async () => {
      await setConsent(typedParticipant(), false);
      $("participant-name").value = "";
    });
    on("consent-link-make", "click", async () => {
      await makeLink(typedParticipant());
      $("participant-name").value = "";
    });
    on("consent-mode-switch", "click", switchConsentMode);
    on("participants-refresh", "click", refreshParticipants);
    on("consent-link-copy", "click", copyLink);
    $("consent-link-hide").addEventListener("click", () => {
      hideLink();
      $("consent-link-make").focus();
    });
    $("delete-start").addEventListener("click", () => {
      $("delete-confirm").hidden = false;
      $("delete-no").focus();
    });
    $("delete-no").addEventListener("click", () => {
      $("delete-confirm").hidden = true;
      $("delete-start").focus();
    });
    on("delete-yes", "click", deleteMeeting);
    on("rotate", "click", rotate);
    on("retention-form", "submit", saveRetention);
    on("privacy-refresh", "click", loadPrivacy);
    on("refresh-keys", "click", loadKeys);
    on("retire-form", "submit", retire);
    on("revoke-form", "submit", revoke);
    $("revoke-confirm").addEventListener("input", () => { $("revoke").disabled = !revokeReady(); });
    on("audit-refresh", "click", loadAudit);
    on("head-download", "click", downloadHead);
    on("head-file", "change", verifyHead);
    on("token-form", "submit", createToken);
    on("tokens-refresh", "click", loadTokens);
    on("webhook-form", "submit", addWebhook);
    on("webhooks-refresh", "click", loadWebhooks);
    $("new-webhook-done").addEventListener("click", () => {
      $("new-webhook-secret").value = "";
      $("new-webhook").hidden = true;
    });
    $("new-token-done").addEventListener("click", () => {
      $("new-token-value").value = "";
      $("new-token").hidden = true;
    });
    on("audit-prev", "click", auditStep(-1));
    on("audit-next", "click", auditStep(1));

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) login(saved).catch(report);
    else $("token").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
