// A local OTLP/HTTP receiver that accepts and drops trace exports, for
// measuring the server with 100% sampling: `node dist/bench/otlp_sink.js --port 4318`.
// It prints the requests and bytes it took every 10 s, so a run shows that spans arrived.

import http from "node:http";

const portArg = process.argv.indexOf("--port");
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 4318;
let requests = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
  req.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  req.on("end", () => {
    requests++;
    res.writeHead(200, { "content-type": req.headers["content-type"] ?? "application/x-protobuf" }).end();
  });
});
server.listen(port, "127.0.0.1", () => process.stdout.write(`otlp sink on 127.0.0.1:${port}\n`));
setInterval(() => process.stdout.write(`otlp sink: ${requests} exports, ${bytes} bytes\n`), 10_000).unref();
process.on("SIGTERM", () => server.close(() => process.exit(0)));
