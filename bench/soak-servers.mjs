// The servers of the soak (a child process, so the client's heap is measured alone).
const warn = console.warn
console.warn = (...args) => void (String(args[0]).startsWith('oidc-provider WARNING') || warn(...args))
const { startTestkit } = await import('@bound/testkit')
const kit = await startTestkit({ accessTokenTtlSeconds: Number(process.env.SOAK_TTL ?? 5), rsAcceptsPreviousNonce: true }) // a busy RS keeps a grace window
process.send({ ready: { issuer: kit.issuer, api: kit.api, resource: kit.resource, ca: kit.ca, client: kit.clients.tlsClientAuthDpop, pki: { workload: kit.pki.workload, workloadRotated: kit.pki.workloadRotated } } })
process.on('message', async (m) => {
  if (m.rotateNonce) kit.rs.rotateNonce()
  if (m.revoke) kit.rs.revokeToken(m.revoke)
  if (m.counters) process.send({ counters: { as: kit.as.counters(), rs: kit.rs.counters() } })
  if (m.close) {
    await kit.close()
    process.exit(0)
  }
})
