// A minimal HTTPS server on loopback for client-side benchmarks (run in a child process, told its
// key and certificate by the first message): HTTP/1.1 (node:https), or with { h2: true } HTTP/2 with
// HTTP/1.1 still served (node:http2, allowHTTP1: the client's ALPN offer decides); `?delay=MS` in
// the URL delays the answer. It counts the
// connections it accepts (each a TLS handshake) and the most open at once: any later message is
// answered with { open, max, total }, after resetting the counts when it says { reset: true }.
import { createServer } from 'node:https'
import { createSecureServer } from 'node:http2'

process.once('message', ({ key, cert, h2 }) => {
  const body = '{"ok":true}'
  const onRequest = (req, res) => {
    // ?delay=MS: the answer takes that long (a server that does some work, or a network away)
    const delay = Number(/[?&]delay=(\d+)/.exec(req.url)?.[1] ?? 0)
    req.resume()
    req.on('end', () => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
        res.end(body)
      }
      if (delay > 0) setTimeout(answer, delay)
      else answer()
    })
  }
  const server = h2 ? createSecureServer({ key, cert, allowHTTP1: true }, onRequest) : createServer({ key, cert }, onRequest)
  server.keepAliveTimeout = 60_000
  let open = 0
  let max = 0
  let total = 0
  server.on('connection', (socket) => {
    total++
    max = Math.max(max, ++open)
    socket.once('close', () => open--)
  })
  process.on('message', (m) => {
    if (m?.reset) {
      max = open
      total = 0
    }
    process.send({ open, max, total })
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
})
process.on('disconnect', () => process.exit(0))
