// matchcast live client: keeps a page (or the streaming overlay) in step with its WebSocket rooms.
//
// Every page is rendered on the server; this script connects to the page's rooms with the token
// the page carries, answers pings, applies events in id order (a jump in ids means something was
// missed, so it resumes with ?last_event_id=), reconnects with exponential backoff and jitter
// after a drop, and shows the connection state. The pages (data-kind on #live):
//   tournament  the bracket (or a round robin's cross table, a Swiss tournament's rounds), the
//               standings of round robin and Swiss, and the match list;
//   match       one match, plus a participant's controls, which act over the same socket;
//   me          a player's own matches: one tournament room per tournament they play in;
//   organize    the organizer's tournament page: match rows, standings, the open disputes and their forms.
// User data is only ever set as text (textContent), never HTML.
(function () {
  "use strict";

  var root = document.getElementById("live");
  if (!root) return;
  localizeClocks(document);
  if (!("WebSocket" in window)) return;

  var PAGE = root.dataset.kind;
  var USER_ID = root.dataset.userId ? Number(root.dataset.userId) : null;
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var ACTION_ANSWER_MS = 15000; // an action still unanswered after this is forgotten
  var RECENT_COMPLETED = 10; // as pages.RECENT_COMPLETED
  var RANK = { scheduled: 0, live: 1, completed: 2, cancelled: 2 };
  var BRACKETS = ["main", "winners", "losers", "grand_final"]; // as services/formats/base.BRACKETS
  // The bracket JSON's parts, titled as in double elimination (pages.PARTS): `rounds` is the
  // winners bracket there, and the only bracket (or a table's rounds) in the other formats.
  var PARTS = [["rounds", "Winners bracket"], ["losers", "Losers bracket"], ["grand_final", "Grand final"]];
  var STANDING_CLASSES = ["", "player", "", "", "", "points"]; // the cells' classes, as the standings macro
  var CONFIRMED_BY = {
    opponent: "confirmed by the opponent",
    agreement: "both players reported it",
    timeout: "confirmed at its deadline",
  };
  var ERROR_WORDS = {
    validation_error: "Check the values: ",
    forbidden: "Not allowed: ",
    invalid_state: "Not possible now: ",
    rate_limited: "Too fast: ",
  };

  var token = root.dataset.token;
  var renewing = null; // the token renewal under way, shared by the rooms
  var clockOffsetMs = 0; // the server's clock minus ours, for the countdowns
  var rooms = [];
  var actions = []; // participant actions sent and not yet answered, oldest first
  var marker = Date.now(); // timestamps of the pings that follow actions

  // -- rooms and their connections ------------------------------------------------------------

  function newRoom(kind, id) {
    return {
      kind: kind, id: id, state: null, lastId: null, socket: null, attempt: 0,
      retryTimer: null, watchdog: null, silenceMs: 60000, stopped: false, connection: "connecting",
    };
  }

  function setConnection(room, text) {
    room.connection = text;
    var el = document.getElementById("connection-state");
    if (el && rooms.length) {
      // The page is live when every room is; otherwise it shows the most pressing state.
      var states = rooms.map(function (r) { return r.connection; });
      var shown = ["reconnecting", "connecting", "not found", "live"].filter(function (s) {
        return states.indexOf(s) >= 0;
      })[0];
      el.hidden = false;
      el.textContent = shown;
      el.dataset.state = shown;
      document.body.dataset.connection = shown;
    }
    render();
  }

  function roomUrl(room) {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + location.host + "/ws/" + room.kind + "/" + room.id + "/?token=" + encodeURIComponent(token);
    if (room.lastId !== null) url += "&last_event_id=" + room.lastId;
    return url;
  }

  function connect(room) {
    room.retryTimer = null;
    var resumed = room.lastId !== null;
    var ws = new WebSocket(roomUrl(room));
    room.socket = ws;
    resetWatchdog(room, ws); // a handshake that hangs counts as silence too
    ws.onmessage = function (message) {
      if (ws === room.socket) receive(room, ws, message.data, resumed);
    };
    ws.onclose = function (event) {
      if (ws !== room.socket) return; // replaced on purpose
      room.socket = null;
      closed(room, event.code);
    };
  }

  function drop(room, ws) {
    if (ws === room.socket) room.socket = null;
    try { ws.close(1000); } catch (e) { /* already closing */ }
  }

  function reconnectSoon(room) {
    if (room.stopped || room.retryTimer !== null) return;
    setConnection(room, "reconnecting");
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, room.attempt));
    room.attempt += 1;
    var delay = ceiling / 2 + Math.random() * ceiling / 2; // jitter: spread reconnecting crowds
    room.retryTimer = setTimeout(function () { connect(room); }, delay);
  }

  function resyncNow(room, ws) {
    // Something was missed: reconnect at once and resume from the last event applied.
    drop(room, ws);
    setConnection(room, "reconnecting");
    if (room.retryTimer === null) room.retryTimer = setTimeout(function () { connect(room); }, 0);
  }

  function closed(room, code) {
    clearTimeout(room.watchdog);
    if (code === 4404) {
      room.stopped = true;
      setConnection(room, "not found");
    } else if (code === 4001) {
      var again = function () { reconnectSoon(room); };
      renewToken().then(again, again); // the page's token expired
    } else {
      reconnectSoon(room);
    }
  }

  function renewToken() {
    if (renewing === null) {
      renewing = fetch(location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var page = new DOMParser().parseFromString(html, "text/html");
          var fresh = page.getElementById("live");
          if (fresh && fresh.dataset.token) token = fresh.dataset.token;
        })
        .finally(function () { renewing = null; });
    }
    return renewing;
  }

  function resetWatchdog(room, ws) {
    clearTimeout(room.watchdog);
    room.watchdog = setTimeout(function () {
      if (ws === room.socket) { drop(room, ws); reconnectSoon(room); }
    }, room.silenceMs);
  }

  function send(ws, frame) {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function receive(room, ws, text, resumed) {
    var frame;
    try { frame = JSON.parse(text); } catch (e) { return; }
    if (!frame || typeof frame.type !== "string") return;
    resetWatchdog(room, ws);
    if (frame.type === "ping") {
      send(ws, { type: "pong", timestamp: frame.timestamp });
      return;
    }
    if (frame.type === "connection_established") {
      established(room, frame.data, resumed);
      return;
    }
    if (frame.type === "pong" || frame.type === "error") {
      answered(frame);
      return;
    }
    if (typeof frame.id !== "number" || room.state === null) return;
    if (frame.id <= room.lastId) return; // already applied
    if (frame.id !== room.lastId + 1) {
      resyncNow(room, ws);
      return;
    }
    room.lastId = frame.id;
    apply(room, frame.type, frame.data || {});
    render();
  }

  function established(room, data, resumed) {
    room.attempt = 0;
    if (data.heartbeat_timeout) room.silenceMs = data.heartbeat_timeout * 1000 + 5000;
    if (typeof data.server_time === "number") clockOffsetMs = data.server_time - Date.now();
    // A complete resume replays what we missed next; otherwise the snapshot is the truth.
    var complete = resumed && data.replay === "complete" && room.state !== null && data.last_event_id >= room.lastId;
    if (!complete) {
      room.state = data.state;
      room.lastId = data.last_event_id;
      if (room.kind === "tournament") inPlayOrder(room.state);
    }
    setConnection(room, "live"); // renders
  }

  // -- state ----------------------------------------------------------------------------------

  function findMatch(room, id) {
    if (room.kind === "match") return room.state.id === id ? room.state : null;
    for (var i = 0; i < room.state.matches.length; i++) {
      if (room.state.matches[i].id === id) return room.state.matches[i];
    }
    return null;
  }

  function apply(room, type, d) {
    if (type === "bracket_updated") {
      if (room.kind === "tournament") applyBracket(room, d.bracket);
      return;
    }
    if (type === "standings_updated") {
      if (room.kind === "tournament") room.state.standings = d.standings;
      return;
    }
    var m = findMatch(room, d.match_id);
    if (m === null && type === "match_scheduled" && room.kind === "tournament") {
      // Its bracket is known once the bracket_updated that follows is applied.
      m = { id: d.match_id, tournament_id: d.tournament_id, bracket: null, round: d.round, position: 0, status: "scheduled",
            is_bye: false, participant1_score: 0, participant2_score: 0, sequence: 0, winner_id: null,
            disputes: [], pending_report: null };
      room.state.matches.push(m);
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
        m.pending_report = null;
        break;
      case "match_completed":
        m.status = "completed";
        m.winner_id = d.winner_id;
        m.participant1_score = d.participant1_score;
        m.participant2_score = d.participant2_score;
        m.completed_at = d.completed_at;
        m.pending_report = null; // completing sets a pending report aside
        break;
      case "match_scheduled":
        m.participant1 = d.participant1;
        m.participant2 = d.participant2;
        break;
      case "result_reported":
        m.pending_report = { report_id: d.report_id, reported_by_id: d.reported_by_id, confirm_by: d.confirm_by,
                             participant1_score: d.participant1_score, participant2_score: d.participant2_score };
        break;
      case "result_confirmed":
        m.pending_report = null;
        m.confirmed_by = d.by;
        break;
      case "dispute_created":
        m.disputes = (m.disputes || []).filter(function (x) { return x.id !== d.dispute_id; });
        m.disputes.push({ id: d.dispute_id, reason: d.reason, reported_by_id: d.reported_by_id, status: "open" });
        m.pending_report = null; // a dispute (or a conflicting report) sets the pending report aside
        break;
      case "dispute_resolved":
        m.disputes = (m.disputes || []).filter(function (x) { return x.id !== d.dispute_id; });
        break;
    }
  }

  function applyBracket(room, bracket) {
    // The bracket is the structure; its per-match fields are a snapshot taken when it was built,
    // so they only ever move a match forward, never back past newer events.
    var state = room.state;
    state.bracket = bracket;
    var index = matchIndex(state);
    eachColumn(state, function (column, bracketName) {
      column.matches.forEach(function (b) {
        var m = index[b.id];
        if (!m) {
          m = { id: b.id, tournament_id: state.id, sequence: 0, disputes: [], pending_report: null };
          Object.keys(b).forEach(function (key) { m[key] = b[key]; });
          state.matches.push(m);
        }
        m.bracket = bracketName;
        m.round = column.round;
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
    inPlayOrder(state);
  }

  function inPlayOrder(state) {
    // As pages.in_play_order: bracket by bracket (the snapshot's order is alphabetical), then round.
    state.matches.sort(function (a, b) {
      return BRACKETS.indexOf(a.bracket) - BRACKETS.indexOf(b.bracket) || a.round - b.round || a.position - b.position;
    });
  }

  function bracketOf(state, key) {
    // The matches' `bracket` of the bracket JSON's part `key`.
    if (key === "rounds") return state.format === "double_elimination" ? "winners" : "main";
    return key === "losers" ? "losers" : "grand_final";
  }

  function eachColumn(state, visit) {
    PARTS.forEach(function (part) {
      (state.bracket[part[0]] || []).forEach(function (column) { visit(column, bracketOf(state, part[0])); });
    });
  }

  function matchIndex(state) {
    var index = {};
    state.matches.forEach(function (m) { index[m.id] = m; });
    return index;
  }

  // -- markup helpers (the same markup as templates/_macros.html) ------------------------------

  function el(tag, className, children) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  function player(m, n) { return m["participant" + n] || null; }

  function playerName(m, n) {
    var p = player(m, n);
    return p ? String(p.name) : (m.is_bye ? "bye" : "TBD");
  }

  function nameOf(m, userId) {
    for (var n = 1; n <= 2; n++) {
      var p = player(m, n);
      if (p && p.id === userId) return String(p.name);
    }
    return "user " + userId;
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

  function disputed(m) { return !!(m.disputes && m.disputes.length); }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function localTime(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "" : pad2(d.getHours()) + ":" + pad2(d.getMinutes());
  }

  function localizeClocks(scope) {
    Array.prototype.forEach.call(scope.querySelectorAll("time[data-clock][datetime]"), function (t) {
      t.textContent = localTime(t.getAttribute("datetime"));
    });
  }

  function clock(iso) {
    var t = el("time", "", [localTime(iso)]);
    t.setAttribute("datetime", iso);
    t.dataset.clock = "";
    return t;
  }

  function reportText(m) {
    // "A reported 2–1 · confirms at 18:40", the scores in player order, as on the scoreboard.
    var r = m.pending_report;
    var span = el("span", "report", [
      nameOf(m, r.reported_by_id) + " reported " + r.participant1_score + "–" + r.participant2_score + " · confirms at ",
      clock(r.confirm_by),
    ]);
    span.dataset.reportId = String(r.report_id);
    return span;
  }

  function resultLine(m) {
    if (m.status === "completed") {
      var how = CONFIRMED_BY[m.confirmed_by] ? " (" + CONFIRMED_BY[m.confirmed_by] + ")" : "";
      return ["Final result: " + playerName(m, 1) + " " + m.participant1_score + "–" + m.participant2_score + " " +
              playerName(m, 2) + how + "."];
    }
    if (m.status === "cancelled") return ["The match was cancelled."];
    if (disputed(m)) return ["Disputed: the organizer decides the result."];
    if (m.pending_report) return [reportText(m)];
    return [m.status === "live" ? "No result reported yet." : "The match has not started."];
  }

  function matchCard(m) {
    var meta = [el("span", "match-status", [statusLabel(m)])];
    if (disputed(m)) meta.push(el("span", "flag", ["disputed"]));
    else if (m.pending_report) meta.push(el("span", "flag reported", ["reported"]));
    var card = el("a", "match status-" + m.status + (disputed(m) ? " disputed" : ""), [
      el("span", "slot" + sideClass(m, 1), [el("span", "name", [playerName(m, 1)]), el("span", "score", [score(m, 1, "")])]),
      el("span", "slot" + sideClass(m, 2), [el("span", "name", [playerName(m, 2)]), el("span", "score", [score(m, 2, "")])]),
      el("span", "match-meta", meta),
    ]);
    card.href = "/matches/" + m.id;
    card.dataset.matchId = String(m.id);
    return card;
  }

  function link(href, text) {
    var a = el("a", "", [text]);
    a.href = href;
    return a;
  }

  function roundNames(state) {
    // "winners:2" -> "Winners round 2": the titles the bracket JSON gives each bracket's rounds.
    var names = {};
    eachColumn(state, function (column, bracketName) { names[bracketName + ":" + column.round] = String(column.name); });
    return names;
  }

  function roundName(names, m) { return names[m.bracket + ":" + m.round] || "Round " + m.round; }

  function isOver(state) {
    // Whether the format's last match is decided: then the services mark the tournament completed.
    var b = state.bracket, index = matchIndex(state);
    var done = function (m) { return m.status === "completed" || m.status === "cancelled"; };
    var lastRound = function (columns) {
      var last = columns && columns.length ? columns[columns.length - 1].matches : [];
      return last.map(function (entry) { return index[entry.id] || entry; });
    };
    if (state.format === "round_robin") return state.matches.length > 0 && state.matches.every(done);
    if (state.format === "swiss") return b.rounds.length === state.rounds && lastRound(b.rounds).every(done);
    var double = state.format === "double_elimination";
    var final = lastRound(double ? b.grand_final : b.rounds);
    if (final.length !== 1 || final[0].status !== "completed") return false;
    // A grand final won by the losers bracket's player (side 2) is followed by the reset.
    return !double || b.grand_final.length === 2 || (final[0].participant1 || {}).id === final[0].winner_id;
  }

  function tournamentStatus(state) {
    return isOver(state) ? "completed" : (state.matches.length ? "running" : String(state.status));
  }

  function showStatus(state) {
    var status = byId("tournament-status");
    if (!status) return;
    var text = tournamentStatus(state);
    status.textContent = text;
    status.className = "badge status-" + text;
  }

  // -- the tournament page --------------------------------------------------------------------

  function renderTournament(state) {
    drawBracket(state);
    drawStandings(state);
    var names = roundNames(state);
    var list = byId("match-list");
    var rows = state.matches.filter(function (m) { return !m.is_bye; }).map(function (m) {
      var status = [el("span", "match-status", [statusLabel(m)])];
      if (disputed(m)) status.push(" ", el("span", "flag", ["disputed"]));
      if (m.pending_report) status.push(" ", reportText(m));
      var row = el("tr", "status-" + m.status, [
        el("td", "", [roundName(names, m)]),
        el("td", sideClass(m, 1).trim(), [playerName(m, 1)]),
        el("td", "score", [score(m, 1, "–") + " : " + score(m, 2, "–")]),
        el("td", sideClass(m, 2).trim(), [playerName(m, 2)]),
        el("td", "", status),
        el("td", "", [link("/matches/" + m.id, "watch")]),
      ]);
      row.dataset.matchId = String(m.id);
      return row;
    });
    list.replaceChildren.apply(list, rows);
    showStatus(state);
  }

  function drawBracket(state) {
    // The markup of the drawing macro: a round robin's cross table, else the bracket's parts.
    var box = byId("bracket");
    var index = matchIndex(state);
    var double = state.format === "double_elimination";
    var parts;
    if (state.matches.length === 0) {
      parts = [el("p", "empty", ["The bracket is not seeded yet."])];
    } else if (state.format === "round_robin") {
      parts = [crossTable(state)];
    } else {
      parts = (double ? PARTS : PARTS.slice(0, 1)).filter(function (part) {
        return (state.bracket[part[0]] || []).length > 0;
      }).map(function (part) {
        var columns = state.bracket[part[0]].map(function (column) {
          var cards = column.matches.map(function (b) { return matchCard(index[b.id] || b); });
          return el("div", "round", [el("h3", "", [String(column.name)]), el("div", "round-matches", cards)]);
        });
        var node = el("div", "bracket-part", (double ? [el("h2", "", [part[1]])] : []).concat(el("div", "bracket", columns)));
        node.dataset.part = part[0];
        return node;
      });
    }
    box.replaceChildren.apply(box, parts);
  }

  function crossTable(state) {
    // Players x players in rank order; a cell is the row player's side of their meeting.
    var order = (state.standings || []).map(function (s) { return s.participant; });
    var meetings = {};
    state.matches.forEach(function (m) {
      var one = player(m, 1), two = player(m, 2);
      if (!one || !two) return;
      meetings[one.id + ":" + two.id] = [m, 1];
      meetings[two.id + ":" + one.id] = [m, 2];
    });
    var head = el("tr", "", [heading("col", "Player")].concat(order.map(function (p) { return heading("col", String(p.name)); })));
    var rows = order.map(function (p) {
      var cells = order.map(function (q) { return meeting(meetings[p.id + ":" + q.id]); });
      var row = el("tr", "", [heading("row", String(p.name))].concat(cells));
      row.dataset.participantId = String(p.id);
      return row;
    });
    return el("div", "table-scroll", [el("table", "cross-table", [el("thead", "", [head]), el("tbody", "", rows)])]);
  }

  function heading(scope, text) {
    var th = el("th", "", [text]);
    th.scope = scope;
    return th;
  }

  function meeting(found) {
    if (!found) return el("td", "blank");
    var m = found[0], n = found[1];
    var outcome = m.winner_id ? (m.winner_id === player(m, n).id ? " win" : " loss") : "";
    var played = m.status === "live" || m.status === "completed";
    var cell = el("td", "meeting status-" + m.status + outcome, [
      link("/matches/" + m.id, played ? score(m, n, "") + "–" + score(m, 3 - n, "") : "–"),
    ]);
    cell.dataset.matchId = String(m.id);
    return cell;
  }

  function drawStandings(state) {
    // Round robin and Swiss: the tiebreak columns are the ones the page's table head names.
    var body = byId("standings");
    if (!body || !state.standings || !state.standings.length) return;
    var keys = Array.prototype.map.call(body.parentNode.querySelectorAll("th[data-tiebreak]"), function (th) {
      return th.dataset.tiebreak;
    });
    var rows = state.standings.map(function (s) {
      var values = [s.rank, s.participant.name, s.played, s.wins, s.losses, s.points].concat(keys.map(function (key) {
        return key in (s.tiebreaks || {}) ? s.tiebreaks[key] : "";
      }));
      var row = el("tr", "", values.map(function (value, i) { return el("td", STANDING_CLASSES[i] || "", [String(value)]); }));
      row.dataset.participantId = String(s.participant.id);
      return row;
    });
    body.replaceChildren.apply(body, rows);
  }

  // -- the match page, and a participant's controls -------------------------------------------

  function renderMatch(m) {
    var board = byId("match");
    board.className = "scoreboard status-" + m.status;
    board.replaceChildren(
      el("div", "side side-1" + sideClass(m, 1), [el("span", "name", [playerName(m, 1)]), el("span", "score", [score(m, 1, "–")])]),
      el("div", "versus", [el("span", "match-status", [statusLabel(m)])]),
      el("div", "side side-2" + sideClass(m, 2), [el("span", "name", [playerName(m, 2)]), el("span", "score", [score(m, 2, "–")])])
    );
    var result = document.getElementById("result");
    if (!result) return; // the streaming overlay shows the scoreboard only
    result.replaceChildren.apply(result, resultLine(m));
    var list = byId("disputes");
    var items = (m.disputes || []).map(function (d) {
      var item = el("li", "", [
        el("span", "reason", [String(d.reason)]), " ",
        el("span", "by", ["reported by " + nameOf(m, d.reported_by_id)]),
      ]);
      item.dataset.disputeId = String(d.id);
      return item;
    });
    if (items.length === 0) items = [el("li", "empty", ["No open disputes."])];
    list.replaceChildren.apply(list, items);
    renderControls(m);
  }

  function controlsState(m, connected) {
    var other = 3 - Number(byId("controls").dataset.side);
    if (!connected) return "Connecting… the controls work once the page is live.";
    if (m.status === "scheduled") return "The match has not started: once the organizer starts it, report the result here.";
    if (m.status === "cancelled") return "The match was cancelled.";
    if (m.status === "completed") return "The match is over. If its result is wrong, dispute it below.";
    if (!disputed(m)) return "";
    var mine = m.disputes.some(function (d) { return d.reported_by_id === USER_ID; });
    return (mine ? "Your dispute is open" : playerName(m, other) + " disputed") +
      ": the organizer decides the result. Reporting and confirming wait until it is resolved.";
  }

  function renderControls(m) {
    var box = byId("controls");
    if (!box) return;
    var connected = rooms[0].connection === "live";
    var live = m.status === "live";
    var r = live && !disputed(m) ? m.pending_report : null;
    var myDispute = (m.disputes || []).some(function (d) { return d.reported_by_id === USER_ID; });
    var state = byId("controls-state");
    state.textContent = controlsState(m, connected);
    state.hidden = state.textContent === "";

    var mine = byId("pending-mine");
    var theirs = byId("confirm-control");
    mine.hidden = !(r && r.reported_by_id === USER_ID);
    theirs.hidden = !(r && r.reported_by_id !== USER_ID);
    if (r) [mine, theirs].forEach(function (box) { showReport(box, m, r); });

    var dispute = byId("dispute-control");
    dispute.hidden = myDispute || !(live || m.status === "completed");
    if (myDispute) dispute.elements.reason.value = ""; // sent and open: the next one starts afresh
    dispute.querySelector("label").firstChild.textContent = theirs.hidden ? "Dispute (reason) " : "Dispute this report (reason) ";
    byId("score-control").hidden = !live;
    var report = byId("report-control");
    report.hidden = !live || disputed(m);
    report.querySelector("h3").textContent = mine.hidden ? "Report the final result" : "Correct your report";
    keepScoreInputs(byId("score-control"), m);
    Array.prototype.forEach.call(box.querySelectorAll("button"), function (b) { b.disabled = !connected; });
  }

  function showReport(box, m, r) {
    box.querySelector(".report-score").textContent =
      playerName(m, 1) + " " + r.participant1_score + "–" + r.participant2_score + " " + playerName(m, 2);
    var deadline = box.querySelector(".report-deadline");
    deadline.setAttribute("datetime", r.confirm_by);
    deadline.textContent = localTime(r.confirm_by);
    box.querySelector(".countdown").dataset.deadline = String(Date.parse(r.confirm_by));
    tick();
  }

  function keepScoreInputs(form, m) {
    // The running score follows the match, unless the player is typing one.
    if (form.dataset.dirty === "1" || form.contains(document.activeElement)) return;
    form.elements.participant1_score.value = String(m.participant1_score);
    form.elements.participant2_score.value = String(m.participant2_score);
  }

  function tick() {
    var now = Date.now() + clockOffsetMs;
    Array.prototype.forEach.call(document.querySelectorAll(".countdown[data-deadline]"), function (c) {
      var left = Math.max(0, Math.round((Number(c.dataset.deadline) - now) / 1000));
      var h = Math.floor(left / 3600), min = Math.floor(left / 60) % 60, s = left % 60;
      c.textContent = (h ? h + ":" + pad2(min) : String(min)) + ":" + pad2(s);
    });
  }

  function intField(form, name) {
    var value = form.elements[name].value.trim();
    return /^\d+$/.test(value) ? Number(value) : value; // anything else: the server says what is wrong
  }

  function initControls() {
    if (!byId("controls")) return;
    onSubmit("score-control", function (form) {
      return { type: "score_update", participant1_score: intField(form, "participant1_score"),
               participant2_score: intField(form, "participant2_score") };
    });
    onSubmit("report-control", function (form) {
      return { type: "report_result", participant1_score: intField(form, "participant1_score"),
               participant2_score: intField(form, "participant2_score") };
    });
    onSubmit("confirm-control", function (form) {
      var m = rooms[0].state;
      if (!m || !m.pending_report) {
        showError(form, "There is no report to confirm any more.");
        return null;
      }
      return { type: "confirm_result", report_id: m.pending_report.report_id };
    });
    onSubmit("dispute-control", function (form) {
      return { type: "report_dispute", reason: form.elements.reason.value };
    });
    setInterval(tick, 1000);
  }

  function onSubmit(id, build) {
    var form = byId(id);
    form.addEventListener("input", function () { form.dataset.dirty = "1"; });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      showError(form, "");
      var frame = build(form);
      if (frame === null) return;
      form.dataset.dirty = "";
      act(form, frame);
    });
  }

  function act(form, frame) {
    var room = rooms[0];
    var ws = room.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN || room.connection !== "live") {
      showError(form, "Not connected right now: wait until the page is live again, then try again.");
      return;
    }
    // The server answers a connection's frames in order, and a refused one with an `error`:
    // the ping after the action marks where its answer ends, so the error finds its control.
    marker += 1;
    ws.send(JSON.stringify(frame));
    ws.send(JSON.stringify({ type: "ping", timestamp: marker }));
    actions.push({ form: form, marker: marker, at: Date.now() });
  }

  function answered(frame) {
    var now = Date.now();
    actions = actions.filter(function (a) { return now - a.at < ACTION_ANSWER_MS; });
    if (frame.type === "pong") {
      for (var i = 0; i < actions.length; i++) {
        if (actions[i].marker === frame.timestamp) { actions.splice(0, i + 1); break; }
      }
      return;
    }
    var data = frame.data || {};
    var text = (ERROR_WORDS[data.code] || "Refused: ") + String(data.message || data.code);
    if (actions.length) showError(actions[0].form, text);
    else if (byId("controls-state")) { byId("controls-state").textContent = text; byId("controls-state").hidden = false; }
  }

  function showError(form, text) {
    var box = form.querySelector(".control-error");
    if (!box) return;
    box.textContent = text;
    box.hidden = text === "";
  }

  // -- a player's own matches (/me) -----------------------------------------------------------

  function isMine(m) {
    return !m.is_bye && m.status !== "cancelled" &&
      [player(m, 1), player(m, 2)].some(function (p) { return p && p.id === USER_ID; });
  }

  function myResult(m, mine, theirs) {
    var r = m.pending_report;
    if (disputed(m)) return [el("span", "flag", ["disputed"]), " the organizer decides"];
    if (!r) return [];
    var s = r["participant" + mine + "_score"], o = r["participant" + theirs + "_score"];
    var word = s > o ? "a win" : "a loss";
    if (r.reported_by_id === USER_ID) {
      return ["You reported " + s + "–" + o + ", " + word + " · waiting for " + playerName(m, theirs) +
              " · confirms at ", clock(r.confirm_by)];
    }
    return [el("strong", "", [playerName(m, theirs) + " reported " + s + "–" + o + ", " + word + " for you"]),
            " · confirm or dispute by ", clock(r.confirm_by)];
  }

  function myMatchRow(m, tournamentName) {
    var mine = player(m, 1) && player(m, 1).id === USER_ID ? 1 : 2;
    var theirs = 3 - mine;
    var status = [el("span", "match-status", [String(m.status)])];
    if (m.winner_id) status.push(" ", el("span", "outcome", [m.winner_id === USER_ID ? "won" : "lost"]));
    var row = el("tr", "status-" + m.status + (disputed(m) ? " disputed" : ""), [
      el("td", "", [link("/matches/" + m.id, "vs " + playerName(m, theirs))]),
      el("td", "tournament", [String(tournamentName)]),
      el("td", "score", [score(m, mine, "–") + " : " + score(m, theirs, "–")]),
      el("td", "", status),
      el("td", "result", myResult(m, mine, theirs)),
    ]);
    row.dataset.matchId = String(m.id);
    row.dataset.tournamentId = String(m.tournament_id);
    row.dataset.status = String(m.status);
    row.dataset.completedAt = m.completed_at || "";
    row.dataset.round = String(m.round);
    return row;
  }

  var keptRows = null; // server-rendered rows of tournaments not followed (over: they do not change)

  function renderMe() {
    var list = byId("my-matches");
    if (keptRows === null) {
      var followed = rooms.map(function (r) { return String(r.id); });
      keptRows = Array.prototype.filter.call(list.querySelectorAll("tr[data-match-id]"), function (row) {
        return followed.indexOf(row.dataset.tournamentId) < 0;
      });
    }
    if (rooms.some(function (r) { return r.state === null; })) return; // until every room is known
    var rows = keptRows.slice();
    rooms.forEach(function (room) {
      room.state.matches.filter(isMine).forEach(function (m) { rows.push(myMatchRow(m, room.state.name)); });
    });
    var order = { live: 0, scheduled: 1, completed: 2 };
    rows.sort(function (a, b) {
      var x = a.dataset, y = b.dataset;
      if (x.status !== y.status) return order[x.status] - order[y.status];
      if (x.status === "completed") return x.completedAt < y.completedAt ? 1 : (x.completedAt > y.completedAt ? -1 : 0);
      return Number(x.tournamentId) - Number(y.tournamentId) || Number(x.round) - Number(y.round);
    });
    var completed = 0;
    rows = rows.filter(function (row) { return row.dataset.status !== "completed" || ++completed <= RECENT_COMPLETED; });
    if (rows.length === 0) {
      var cell = el("td", "", ["You have no matches yet: they appear here once an organizer seeds a bracket you play in."]);
      cell.colSpan = 5;
      rows = [el("tr", "empty", [cell])];
    }
    list.replaceChildren.apply(list, rows);
  }

  // -- the organizer's tournament page ---------------------------------------------------------

  function postForm(action, className, children) {
    var csrf = el("input");
    csrf.type = "hidden";
    csrf.name = "csrf_token";
    csrf.value = root.dataset.csrf;
    var form = el("form", className, [csrf].concat(children));
    form.method = "post";
    form.action = action;
    return form;
  }

  function input(name, type, value, label) {
    var node = el("input");
    node.name = name;
    node.type = type;
    if (type === "number") node.min = "0";
    if (value !== null) node.value = String(value);
    if (label) node.setAttribute("aria-label", label);
    return node;
  }

  function button(text, className) {
    var node = el("button", className || "", [text]);
    node.type = "submit";
    return node;
  }

  function matchActions(m) {
    var base = "/organize/matches/" + m.id + "/";
    var forms = [];
    if (m.status === "scheduled" && m.participant1 && m.participant2) {
      forms.push(postForm(base + "start", "inline start", [button("Start")]));
    }
    if (m.status === "live") {
      var one = input("participant1_score", "number", m.participant1_score, playerName(m, 1) + " score");
      var two = input("participant2_score", "number", m.participant2_score, playerName(m, 2) + " score");
      one.required = two.required = true;
      forms.push(postForm(base + "score", "inline score-form", [one, two, button("Set score")]));
      var winner = el("select", "", [el("option", "", ["winner by score"])]);
      winner.name = "winner_id";
      winner.setAttribute("aria-label", "Winner");
      winner.options[0].value = "";
      [1, 2].forEach(function (n) {
        var option = el("option", "", [playerName(m, n)]);
        option.value = String(player(m, n).id);
        winner.appendChild(option);
      });
      forms.push(postForm(base + "complete", "inline complete-form", [winner, button("Complete")]));
    }
    if (m.status === "scheduled" || m.status === "live") {
      forms.push(postForm(base + "cancel", "inline cancel-form", [button("Cancel", "danger")]));
    }
    return forms;
  }

  function rowKey(m) {
    var p1 = player(m, 1), p2 = player(m, 2);
    return m.status + ":" + (p1 ? p1.id : "") + ":" + (p2 ? p2.id : "");
  }

  function matchCells(m) {
    var result = [];
    if (disputed(m)) result.push(el("span", "flag", ["disputed"]));
    if (m.pending_report) result.push(reportText(m));
    return [
      el("td", "", [el("span", sideClass(m, 1).trim(), [playerName(m, 1)]), " ",
        el("strong", "score", [score(m, 1, "–") + " : " + score(m, 2, "–")]), " ",
        el("span", sideClass(m, 2).trim(), [playerName(m, 2)])]),
      el("td", "", [el("span", "match-status", [String(m.status)])]),
      el("td", "result", result),
    ];
  }

  function manageRow(m, names) {
    var cells = [el("td", "", [String(m.id)]), el("td", "", [roundName(names, m)])];
    var row = el("tr", "", cells.concat(matchCells(m), [el("td", "actions", matchActions(m))]));
    row.id = "match-" + m.id;
    row.dataset.matchId = String(m.id);
    row.dataset.key = rowKey(m);
    return row;
  }

  function disputeForm(m, d) {
    var resolution = input("resolution", "text", null, null);
    resolution.maxLength = 500;
    resolution.required = true;
    var children = [
      el("p", "", [el("strong", "", ["Match " + m.id]), " (" + playerName(m, 1) + " vs " + playerName(m, 2) + "): ",
        el("span", "reason", [String(d.reason)]), " ", el("span", "by", ["reported by " + nameOf(m, d.reported_by_id)])]),
      el("label", "", ["Resolution ", resolution]),
    ];
    if (m.status === "live") children.push(finalScore(m));
    children.push(button("Resolve"));
    var form = postForm("/organize/disputes/" + d.id + "/resolve", "card dispute", children);
    form.id = "dispute-" + d.id;
    form.dataset.disputeId = String(d.id);
    form.dataset.matchId = String(m.id);
    return form;
  }

  function finalScore(m) {
    return el("fieldset", "final-score", [
      el("legend", "", ["Final score (optional: the match completes with it)"]),
      el("label", "", [playerName(m, 1) + " ", input("participant1_score", "number", null, null)]),
      el("label", "", [playerName(m, 2) + " ", input("participant2_score", "number", null, null)]),
    ]);
  }

  function renderOrganize(state) {
    var names = roundNames(state);
    var body = byId("manage-matches");
    var open = [];
    state.matches.forEach(function (m) {
      (m.disputes || []).forEach(function (d) { open.push([m, d]); });
      if (m.is_bye || !body) return;
      var row = byId("match-" + m.id);
      if (!row) {
        body.appendChild(manageRow(m, names));
      } else if (row.dataset.key !== rowKey(m)) {
        row.replaceWith(manageRow(m, names)); // other actions fit now
      } else {
        var cells = row.children;
        cells[1].textContent = roundName(names, m); // a match first known from match_scheduled gets its bracket's title
        matchCells(m).forEach(function (cell, i) { cells[2 + i].replaceWith(cell); });
      }
      byId("match-" + m.id).className = "status-" + m.status + (disputed(m) ? " disputed" : "");
    });
    renderDisputes(open);
    drawStandings(state);
    showStatus(state);
  }

  function renderDisputes(open) {
    var box = byId("dispute-forms");
    var wanted = {};
    open.forEach(function (pair) { wanted[pair[1].id] = pair[0]; });
    Array.prototype.forEach.call(box.querySelectorAll("form[data-dispute-id]"), function (form) {
      var m = wanted[form.dataset.disputeId];
      if (!m) form.remove(); // resolved
      else if (m.status !== "live" && form.querySelector(".final-score")) form.querySelector(".final-score").remove();
    });
    open.forEach(function (pair) {
      if (!byId("dispute-" + pair[1].id)) box.appendChild(disputeForm(pair[0], pair[1])); // typed text stays
    });
    var count = byId("dispute-count");
    count.textContent = open.length + " open dispute" + (open.length === 1 ? "" : "s");
    count.hidden = open.length === 0;
    byId("no-disputes").hidden = open.length > 0;
  }

  // -- the page ---------------------------------------------------------------------------------

  function render() {
    if (PAGE === "me") { renderMe(); return; }
    var state = rooms.length ? rooms[0].state : null;
    if (state === null) {
      if (PAGE === "match" && byId("controls")) renderControlsWaiting();
      return;
    }
    if (PAGE === "tournament") renderTournament(state);
    else if (PAGE === "match") renderMatch(state);
    else if (PAGE === "organize") renderOrganize(state);
    localizeClocks(root);
  }

  function renderControlsWaiting() {
    var state = byId("controls-state");
    state.textContent = "Connecting… the controls work once the page is live.";
    state.hidden = false;
  }

  function start() {
    if (PAGE === "me") {
      (root.dataset.rooms || "").split(" ").filter(Boolean).forEach(function (id) {
        rooms.push(newRoom("tournament", Number(id)));
      });
    } else {
      rooms.push(newRoom(PAGE === "match" ? "match" : "tournament", Number(root.dataset.id)));
    }
    if (PAGE === "match") initControls();
    window.addEventListener("online", function () {
      rooms.forEach(function (room) {
        if (room.retryTimer !== null) { clearTimeout(room.retryTimer); room.retryTimer = null; connect(room); }
      });
    });
    rooms.forEach(function (room) { setConnection(room, "connecting"); connect(room); });
  }

  start();
})();
