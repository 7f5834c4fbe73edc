// The test suite's CONNECT proxy (test/support/connect-proxy.ts, loaded through tsx) in a child
// process of its own, as an egress proxy is: it tunnels CONNECT, resolving *.bound.test to
// 127.0.0.1. Relayed bytes are not kept (a benchmark relays a lot of them).
const { startConnectProxy } = await import(new URL('../test/support/connect-proxy.ts', import.meta.url).href)
const proxy = await startConnectProxy({ keepRelayed: false })
process.send({ url: proxy.url })
process.on('disconnect', () => void proxy.close().then(() => process.exit(0)))
