// The server side of the mTLS benchmark (a child process, so it does not share the client's core).
import { createServer } from 'node:https'
const { key, cert, ca } = JSON.parse(process.argv[2])
const server = createServer({ key, cert, ca, requestCert: true, rejectUnauthorized: true, keepAliveTimeout: 30_000 }, (req, res) => {
  const peer = req.socket.getPeerCertificate()
  const body = `{"ok":true,"cn":${JSON.stringify(peer?.subject?.CN ?? null)}}`
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(req.url === '/close' ? { connection: 'close' } : {}) })
  res.end(body)
})
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
process.on('disconnect', () => process.exit(0))
