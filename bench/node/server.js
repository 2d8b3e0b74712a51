'use strict';
// The Node.js baseline of `make bench`: what a team building its own fan-out would pick, `ws` 8.23
// (pinned in package.json, installed by `npm ci`). Same paths and frame shapes as matchcast and the
// Python baselines (bench/baseline_frames.py), the same limits (64 KiB frames, no deflate, no
// protocol pings of its own). A `score_update` from any socket is encoded once into one Buffer,
// and that Buffer is sent to every socket of the room with `ws.send`: the idiomatic broadcast.
//
//     node bench/node/server.js --host 127.0.0.1 --port 8765

const http = require('node:http');
const { parseArgs } = require('node:util');
const { WebSocket, WebSocketServer } = require('ws');

const MATCH_PATH = /^\/ws\/match\/(\d+)\/?$/;
const MAX_MESSAGE_BYTES = 65536; // matchcast's MATCHCAST_MAX_MESSAGE_BYTES default

const rooms = new Map();
let sequence = 0;

function welcome(matchId) {
  const data = {
    room: `match_${matchId}`,
    user_id: null,
    role: 'spectator',
    heartbeat_interval: 25,
    heartbeat_timeout: 50,
    server_time: Date.now(),
    last_event_id: 0,
    replay: 'complete',
    state: { id: matchId },
  };
  return JSON.stringify({ type: 'connection_established', data });
}

function scoreFrame(matchId, fields) {
  sequence += 1;
  const data = {
    match_id: matchId,
    participant1_score: fields.participant1_score ?? null,
    participant2_score: fields.participant2_score ?? null,
    sequence,
  };
  return JSON.stringify({ type: 'score_updated', id: sequence, data });
}

function join(ws, matchId) {
  let room = rooms.get(matchId);
  if (room === undefined) {
    room = new Set();
    rooms.set(matchId, room);
  }
  ws.send(welcome(matchId));
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let message;
    try {
      message = JSON.parse(data.toString());
    } catch {
      return; // as the other baselines: no answer to a frame that is not JSON
    }
    if (message !== null && message.type === 'score_update') {
      const frame = Buffer.from(scoreFrame(matchId, message)); // encoded once ...
      for (const peer of room) {
        if (peer.readyState === WebSocket.OPEN) peer.send(frame, { binary: false }); // ... sent to all
      }
    }
  });
  ws.on('close', () => room.delete(ws));
  ws.on('error', () => room.delete(ws));
}

function main() {
  const { values } = parseArgs({
    options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '8765' } },
  });
  const sockets = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE_BYTES,
    clientTracking: false, // the rooms track their sockets
  });
  const server = http.createServer((request, response) => {
    response.writeHead(404).end();
  });
  server.on('upgrade', (request, socket, head) => {
    const found = MATCH_PATH.exec(request.url.split('?', 1)[0]);
    if (found === null) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    sockets.handleUpgrade(request, socket, head, (ws) => join(ws, Number(found[1])));
  });
  server.listen({ host: values.host, port: Number(values.port), backlog: 2048 }, () => {
    console.error(`INFO bench.node: serving on ${values.host}:${values.port} (node ${process.version})`);
  });
  process.on('SIGTERM', () => {
    server.close();
    for (const room of rooms.values()) for (const ws of room) ws.terminate();
    process.exit(0);
  });
}

main();
