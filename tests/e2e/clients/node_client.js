// A JSON-RPC 2.0 client in plain Node.js (no npm packages): newline-delimited JSON over a UNIX
// socket, answers matched to calls by id. Run: node node_client.js SOCKET_PATH
// Prints one JSON object with what it saw; tests/test_e2e_node.py checks it.
"use strict";

const net = require("net");

const path = process.argv[2];
if (!path) {
  console.error("usage: node node_client.js SOCKET_PATH");
  process.exit(2);
}

// Never hang: a broken server makes this client fail, not wait forever.
const watchdog = setTimeout(() => {
  console.error("timed out");
  process.exit(3);
}, 10000);

class Client {
  constructor(socket) {
    this.socket = socket;
    this.nextId = 1;
    this.pending = new Map(); // id -> resolve
    this.batches = []; // resolvers of batch answers, in order
    this.unmatched = [];
    this.arrivals = []; // ids of single answers, in the order they arrived
    this.buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => this.onData(chunk));
  }

  onData(chunk) {
    this.buffer += chunk;
    let nl;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const answer = JSON.parse(line);
      if (Array.isArray(answer)) {
        const resolve = this.batches.shift();
        if (resolve) resolve(answer);
        else this.unmatched.push(answer);
      } else if ((this.arrivals.push(answer.id), this.pending.has(answer.id))) {
        const resolve = this.pending.get(answer.id);
        this.pending.delete(answer.id);
        resolve(answer);
      } else {
        this.unmatched.push(answer);
      }
    }
  }

  send(obj) {
    this.socket.write(JSON.stringify(obj) + "\n");
  }

  call(method, params, id) {
    if (id === undefined) id = this.nextId++;
    const request = { jsonrpc: "2.0", method, id };
    if (params !== undefined) request.params = params;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.send(request);
    });
  }

  notify(method, params) {
    const request = { jsonrpc: "2.0", method };
    if (params !== undefined) request.params = params;
    this.send(request);
  }

  batch(requests) {
    return new Promise((resolve) => {
      this.batches.push(resolve);
      this.send(requests);
    });
  }

  // Half-close, then wait for the server to finish answering and close.
  finish() {
    return new Promise((resolve) => {
      this.socket.on("end", resolve);
      this.socket.end();
    });
  }
}

async function main() {
  const socket = net.createConnection({ path });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const client = new Client(socket);
  const out = {};

  out.ping = await client.call("ping");
  out.positional = await client.call("subtract", [42, 23]);
  out.named = await client.call("subtract", { subtrahend: 23, minuend: 42 });
  out.echo = await client.call("echo", ["h\u00e9llo \u20ac\nline2 \ud83d\ude00"], "echo-id");
  out.unknown = await client.call("no.such.method", [], "u");
  out.fail = await client.call("fail", ["oops"]);

  // A notification gets no answer; the call after it sees its effect.
  client.notify("config.set", ["node_key", "from-node"]);
  out.after_notify = await client.call("config.get", ["node_key"]);

  // Several calls in flight at once, answered by id in any order: the slow call is still running
  // when the fast one, sent after it, is answered; it ends only when cancelled, after that.
  const slow = client.call("sleep", [30], "slow");
  const fast = await client.call("echo", ["fast"], "fast");
  client.notify("rpc.cancel", { id: "slow" });
  out.concurrent = [await slow, fast];

  out.batch = await client.batch([
    { jsonrpc: "2.0", method: "echo", params: [1], id: "b1" },
    { jsonrpc: "2.0", method: "notify_hello", params: [7] },
    { jsonrpc: "2.0", method: "subtract", params: [1, 2], id: "b2" },
    { foo: "boo" },
    { jsonrpc: "2.0", method: "nope", id: "b3" },
  ]);

  // A call still pending at half-close is still answered.
  const pendingAtClose = client.call("sleep", [0.1], "at-close");
  await client.finish();
  out.at_close = await pendingAtClose;
  out.unmatched = client.unmatched;
  out.arrivals = client.arrivals;

  clearTimeout(watchdog);
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
