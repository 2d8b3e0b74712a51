// matchcast live client: keeps a spectator page (or the streaming overlay) in step with its WebSocket room.
//
// The page is rendered on the server; this script connects with the token the page carries,
// answers pings, applies events in id order (a jump in ids means something was missed, so it
// resumes with ?last_event_id=), reconnects with exponential backoff and jitter after a drop,
// and shows the connection state. User data is only ever set as text (textContent), never HTML.
(function () {
  "use strict";

  var root = document.getElementById("live");
  if (!root || !("WebSocket" in window)) return;

  var KIND = root.dataset.kind; // "tournament" | "match"
  var ROOM_ID = Number(root.dataset.id);
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var RANK = { scheduled: 0, live: 1, completed: 2, cancelled: 2 };

  var token = root.dataset.token;
  var state = null; // the room's snapshot, kept current by the events
  var lastId = null; // id of the last event applied
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var watchdog = null;
  var silenceMs = 60000; // replaced by the server's heartbeat_timeout
  var stopped = false;

  // -- connection -------------------------------------------------------------------------

  function showConnection(text) {
    var el = document.getElementById("connection-state");
    if (!el) return;
    el.hidden = false;
    el.textContent = text;
    el.dataset.state = text;
    document.body.dataset.connection = text;
  }

  function roomUrl() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + location.host + "/ws/" + KIND + "/" + ROOM_ID + "/?token=" + encodeURIComponent(token);
    if (lastId !== null) url += "&last_event_id=" + lastId;
    return url;
  }

  function connect() {
    retryTimer = null;
    var resumed = lastId !== null;
    var ws = new WebSocket(roomUrl());
    socket = ws;
    resetWatchdog(ws); // a handshake that hangs counts as silence too
    ws.onmessage = function (message) {
      if (ws === socket) receive(ws, message.data, resumed);
    };
    ws.onclose = function (event) {
      if (ws !== socket) return; // replaced on purpose
      socket = null;
      closed(event.code);
    };
  }

  function drop(ws) {
    if (ws === socket) socket = null;
    try { ws.close(1000); } catch (e) { /* already closing */ }
  }

  function reconnectSoon() {
    if (stopped || retryTimer !== null) return;
    showConnection("reconnecting");
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    attempt += 1;
    var delay = ceiling / 2 + Math.random() * ceiling / 2; // jitter: spread reconnecting crowds
    retryTimer = setTimeout(connect, delay);
  }

  function resyncNow(ws) {
    // Something was missed: reconnect at once and resume from the last event applied.
    drop(ws);
    showConnection("reconnecting");
    if (retryTimer === null) retryTimer = setTimeout(connect, 0);
  }

  function closed(code) {
    clearTimeout(watchdog);
    if (code === 4404) {
      stopped = true;
      showConnection("not found");
    } else if (code === 4001) {
      renewToken().then(reconnectSoon, reconnectSoon); // the page's token expired
    } else {
      reconnectSoon();
    }
  }

  function renewToken() {
    return fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("live");
        if (fresh && fresh.dataset.token) token = fresh.dataset.token;
      });
  }

  function resetWatchdog(ws) {
    clearTimeout(watchdog);
    watchdog = setTimeout(function () { if (ws === socket) { drop(ws); reconnectSoon(); } }, silenceMs);
  }

  function send(ws, frame) {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function receive(ws, text, resumed) {
    var frame;
    try { frame = JSON.parse(text); } catch (e) { return; }
    if (!frame || typeof frame.type !== "string") return;
    resetWatchdog(ws);
    if (frame.type === "ping") {
      send(ws, { type: "pong", timestamp: frame.timestamp });
      return;
    }
    if (frame.type === "connection_established") {
      established(frame.data, resumed);
      return;
    }
    if (typeof frame.id !== "number" || state === null) return; // pong, error
    if (frame.id <= lastId) return; // already applied
    if (frame.id !== lastId + 1) {
      resyncNow(ws);
      return;
    }
    lastId = frame.id;
    apply(frame.type, frame.data || {});
    render();
  }

  function established(data, resumed) {
    attempt = 0;
    if (data.heartbeat_timeout) silenceMs = data.heartbeat_timeout * 1000 + 5000;
    // A complete resume replays what we missed next; otherwise the snapshot is the truth.
    var complete = resumed && data.replay === "complete" && state !== null && data.last_event_id >= lastId;
    if (!complete) {
      state = data.state;
      lastId = data.last_event_id;
      render();
    }
    showConnection("live");
  }

  // -- state ----------------------------------------------------------------------------------

  function findMatch(id) {
    if (KIND === "match") return state.id === id ? state : null;
    for (var i = 0; i < state.matches.length; i++) {
      if (state.matches[i].id === id) return state.matches[i];
    }
    return null;
  }

  function apply(type, d) {
    if (type === "bracket_updated") {
      if (KIND === "tournament") applyBracket(d.bracket);
      return;
    }
    var m = findMatch(d.match_id);
    if (m === null && type === "match_scheduled" && KIND === "tournament") {
      m = { id: d.match_id, tournament_id: d.tournament_id, round: d.round, position: 0, status: "scheduled",
            is_bye: false, participant1_score: 0, participant2_score: 0, sequence: 0, winner_id: null, disputes: [] };
      state.matches.push(m);
    }
    if (m === null) return;
    switch (type) {
      case "score_updated":
        if (d.sequence > (m.sequence || 0)) { // coalesced or late updates never step back
          m.participant1_score = d.participant1_score;
          m.participant2_score = d.participant2_score;
          m.sequence = d.sequence;
        }
        break;
      case "match_started":
        m.status = "live";
        break;
      case "match_cancelled":
        m.status = "cancelled";
        break;
      case "match_completed":
        m.status = "completed";
        m.winner_id = d.winner_id;
        m.participant1_score = d.participant1_score;
        m.participant2_score = d.participant2_score;
        break;
      case "match_scheduled":
        m.participant1 = d.participant1;
        m.participant2 = d.participant2;
        break;
      case "dispute_created":
        m.disputes = (m.disputes || []).filter(function (x) { return x.id !== d.dispute_id; });
        m.disputes.push({ id: d.dispute_id, reason: d.reason, reported_by_id: d.reported_by_id, status: "open" });
        break;
      case "dispute_resolved":
        m.disputes = (m.disputes || []).filter(function (x) { return x.id !== d.dispute_id; });
        break;
    }
  }

  function applyBracket(bracket) {
    // The bracket is the structure; its per-match fields are a snapshot taken when it was built,
    // so they only ever move a match forward, never back past newer events.
    state.bracket = bracket;
    bracket.rounds.forEach(function (column, index) {
      column.matches.forEach(function (b) {
        var m = findMatch(b.id);
        if (m === null) {
          m = { id: b.id, round: index + 1, sequence: 0, disputes: [] };
          Object.keys(b).forEach(function (key) { m[key] = b[key]; });
          state.matches.push(m);
          return;
        }
        m.position = b.position;
        m.is_bye = b.is_bye;
        if (!m.participant1 && b.participant1) m.participant1 = b.participant1;
        if (!m.participant2 && b.participant2) m.participant2 = b.participant2;
        if ((RANK[b.status] || 0) > (RANK[m.status] || 0)) {
          m.status = b.status;
          m.winner_id = b.winner_id;
          m.participant1_score = b.participant1_score;
          m.participant2_score = b.participant2_score;
        }
      });
    });
    state.matches.sort(function (a, b) { return a.round - b.round || a.position - b.position; });
  }

  // -- rendering (the same markup as templates/_macros.html) ---------------------------------

  function el(tag, className, children) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function player(m, n) { return m["participant" + n] || null; }

  function playerName(m, n) {
    var p = player(m, n);
    return p ? String(p.name) : (m.is_bye ? "bye" : "TBD");
  }

  function sideClass(m, n) {
    var p = player(m, n);
    var cls = "";
    if (m.winner_id && p) cls += p.id === m.winner_id ? " winner" : " loser";
    if (!p) cls += " tbd";
    return cls;
  }

  function score(m, n, blank) {
    var shown = (m.status === "live" || m.status === "completed") && !m.is_bye;
    return shown ? String(m["participant" + n + "_score"]) : blank;
  }

  function statusLabel(m) { return m.is_bye ? "bye" : String(m.status); }

  function matchCard(m) {
    var disputed = m.disputes && m.disputes.length > 0;
    var meta = [el("span", "match-status", [statusLabel(m)])];
    if (disputed) meta.push(el("span", "flag", ["disputed"]));
    var card = el("a", "match status-" + m.status + (disputed ? " disputed" : ""), [
      el("span", "slot" + sideClass(m, 1), [el("span", "name", [playerName(m, 1)]), el("span", "score", [score(m, 1, "")])]),
      el("span", "slot" + sideClass(m, 2), [el("span", "name", [playerName(m, 2)]), el("span", "score", [score(m, 2, "")])]),
      el("span", "match-meta", meta),
    ]);
    card.href = "/matches/" + m.id;
    card.dataset.matchId = String(m.id);
    return card;
  }

  function roundNames() {
    var names = {};
    state.bracket.rounds.forEach(function (column, index) { names[index + 1] = String(column.name); });
    return names;
  }

  function renderTournament() {
    var bracket = document.getElementById("bracket");
    var rounds = state.bracket.rounds.map(function (column) {
      var cards = column.matches.map(function (b) { return matchCard(findMatch(b.id) || b); });
      return el("div", "round", [el("h3", "", [String(column.name)]), el("div", "round-matches", cards)]);
    });
    if (rounds.length === 0) rounds = [el("p", "empty", ["The bracket is not seeded yet."])];
    bracket.replaceChildren.apply(bracket, rounds);

    var names = roundNames();
    var list = document.getElementById("match-list");
    var rows = state.matches.filter(function (m) { return !m.is_bye; }).map(function (m) {
      var status = [el("span", "match-status", [statusLabel(m)])];
      if (m.disputes && m.disputes.length) status.push(" ", el("span", "flag", ["disputed"]));
      var link = el("a", "", ["watch"]);
      link.href = "/matches/" + m.id;
      var row = el("tr", "status-" + m.status, [
        el("td", "", [names[m.round] || "Round " + m.round]),
        el("td", sideClass(m, 1).trim(), [playerName(m, 1)]),
        el("td", "score", [score(m, 1, "–") + " : " + score(m, 2, "–")]),
        el("td", sideClass(m, 2).trim(), [playerName(m, 2)]),
        el("td", "", status),
        el("td", "", [link]),
      ]);
      row.dataset.matchId = String(m.id);
      return row;
    });
    list.replaceChildren.apply(list, rows);

    var status = document.getElementById("tournament-status");
    var final = state.matches.filter(function (m) { return !m.next_match_id && m.round === state.bracket.rounds.length; });
    var done = final.length === 1 && final[0].status === "completed";
    var text = done ? "completed" : (state.matches.length ? "running" : String(state.status));
    status.textContent = text;
    status.className = "badge status-" + text;
  }

  function renderMatch() {
    var m = state;
    var board = document.getElementById("match");
    board.className = "scoreboard status-" + m.status;
    board.replaceChildren(
      el("div", "side side-1" + sideClass(m, 1), [el("span", "name", [playerName(m, 1)]), el("span", "score", [score(m, 1, "–")])]),
      el("div", "versus", [el("span", "match-status", [statusLabel(m)])]),
      el("div", "side side-2" + sideClass(m, 2), [el("span", "name", [playerName(m, 2)]), el("span", "score", [score(m, 2, "–")])])
    );
    var list = document.getElementById("disputes");
    if (!list) return; // the streaming overlay shows the scoreboard only
    var names = {};
    [m.participant1, m.participant2].forEach(function (p) { if (p) names[p.id] = String(p.name); });
    var items = (m.disputes || []).map(function (d) {
      var item = el("li", "", [
        el("span", "reason", [String(d.reason)]), " ",
        el("span", "by", ["reported by " + (names[d.reported_by_id] || "user " + d.reported_by_id)]),
      ]);
      item.dataset.disputeId = String(d.id);
      return item;
    });
    if (items.length === 0) items = [el("li", "empty", ["No open disputes."])];
    list.replaceChildren.apply(list, items);
  }

  function render() {
    if (state === null) return;
    if (KIND === "tournament") renderTournament(); else renderMatch();
  }

  window.addEventListener("online", function () {
    if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; connect(); }
  });

  showConnection("connecting");
  connect();
})();
