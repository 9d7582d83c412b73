// vscode-jsonrpc (the LSP clients' library) against a jrpc-unix server, with its default
// Content-Length framing and no option on the server: calls, a notification, errors.
// Prints one JSON object with what each step gave.
"use strict";
const net = require("net");
const rpc = require("vscode-jsonrpc/node");

async function main(path) {
  const socket = net.connect(path);
  await new Promise((resolve, reject) => { socket.once("connect", resolve); socket.once("error", reject); });
  const conn = rpc.createMessageConnection(new rpc.SocketMessageReader(socket), new rpc.SocketMessageWriter(socket));
  conn.listen();
  const out = {};
  const error = async (promise) => {
    try { return { result: await promise }; } catch (e) { return { code: e.code, message: e.message, data: e.data }; }
  };
  out.ping = await conn.sendRequest("ping");
  out.named = await conn.sendRequest("subtract", { minuend: 42, subtrahend: 23 });
  out.positional = await conn.sendRequest("subtract", rpc.ParameterStructures.byPosition, 42, 23);
  out.echo = await conn.sendRequest("echo", { msg: "h\u00e9llo \u20ac\nline2 \ud83d\ude00" });
  await conn.sendNotification("config.set", { key: "from-vscode", value: 7 });
  out.after_notify = await conn.sendRequest("config.get", { key: "from-vscode" });
  out.unknown = await error(conn.sendRequest("no.such.method"));
  out.fail = await error(conn.sendRequest("fail", { message: "oops" }));
  out.bad_params = await error(conn.sendRequest("subtract", { minuend: 1 }));
  conn.dispose();
  socket.end();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main(process.argv[2]).catch((e) => { console.error(e); process.exit(1); });
