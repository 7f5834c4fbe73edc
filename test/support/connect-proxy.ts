import { createServer, type IncomingMessage } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

/** What a test proxy saw: one entry per CONNECT (the request head as sent, and the outcome). */
export interface ProxyRecord {
  target: string
  head: string
  status: number
}

export interface ConnectProxy {
  /** `http://127.0.0.1:PORT` */
  url: string
  /** Every CONNECT request the proxy received, in order. */
  records: ProxyRecord[]
  /** Every byte the proxy relayed, both directions, as latin1 text (what a proxy could read). */
  relayed(): string
  /** Plain (non-CONNECT) proxy requests: a proxy that would see them in clear. */
  plainRequests: string[]
  close(): Promise<void>
}

export interface ConnectProxyOptions {
  /** Demand `Proxy-Authorization: Basic base64(user:pass)`; 407 otherwise. */
  auth?: { user: string; pass: string }
  /** Answer these targets (host:port) with this status instead of tunnelling. */
  refuse?: (target: string) => number | undefined
  /** Keep every relayed byte for `relayed()`; default true (a benchmark turns it off). */
  keepRelayed?: boolean
}

/**
 * A small CONNECT proxy on 127.0.0.1, as corporate egress proxies behave: it tunnels `CONNECT
 * host:port` (resolving `*.bound.test` to 127.0.0.1, which the testkit's server certificate names),
 * records each request head and counts every relayed byte, and can demand credentials (407) or
 * refuse a target (e.g. 502). Plain proxy requests (`GET http://…`) are answered 400 and recorded.
 */
export async function startConnectProxy(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const records: ProxyRecord[] = []
  const plainRequests: string[] = []
  const chunks: Buffer[] = []
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    plainRequests.push(`${req.method} ${req.url}`)
    res.writeHead(400).end('this proxy only tunnels')
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? ''
    const headLines = [`${req.method} ${target} HTTP/${req.httpVersion}`, ...Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`)].join('\r\n')
    const record: ProxyRecord = { target, head: headLines, status: 0 }
    records.push(record)
    const answer = (status: number, extra = '') => {
      record.status = status
      client.end(`HTTP/1.1 ${status} ${status === 407 ? 'Proxy Authentication Required' : 'Refused'}\r\n${extra}content-length: 0\r\nconnection: close\r\n\r\n`)
    }
    if (options.auth) {
      const expected = `Basic ${Buffer.from(`${options.auth.user}:${options.auth.pass}`).toString('base64')}`
      if (req.headers['proxy-authorization'] !== expected) return answer(407, 'proxy-authenticate: Basic realm="test"\r\n')
    }
    const refused = options.refuse?.(target)
    if (refused !== undefined) return answer(refused)
    const match = /^([^:]+):(\d+)$/.exec(target)
    if (!match) return answer(400)
    const host = match[1]!.endsWith('.bound.test') ? '127.0.0.1' : match[1]!
    const upstream = connect(Number(match[2]), host, () => {
      record.status = 200
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      if (options.keepRelayed !== false) {
        client.on('data', (d: Buffer) => chunks.push(d))
        upstream.on('data', (d: Buffer) => chunks.push(d))
      }
      client.pipe(upstream)
      upstream.pipe(client)
    })
    sockets.add(upstream)
    upstream.on('close', () => sockets.delete(upstream))
    upstream.on('error', () => {
      if (record.status === 0) answer(502)
      else client.destroy()
    })
    client.on('error', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    records,
    plainRequests,
    relayed: () => Buffer.concat(chunks).toString('latin1'),
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
