import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestPki, type TestPki } from '@bound/testkit'
import { loadClientCertificate, parseClientIdentity } from '@bound/mtls'

// Issue 15: certificates are read at the ASN.1 level (@peculiar/asn1-x509), not by splitting Node's
// comma-joined subjectAltName text: SAN values with commas and quotes, a SPIFFE ID hidden in another
// name type, several URI SANs, extended key usage and chain order (MTLS-07).
let pki: TestPki
beforeAll(async () => {
  pki = await createTestPki()
})
afterAll(async () => {
  await pki?.remove()
})

const identityOf = (c: { certPem: string; keyPem: string }) => parseClientIdentity({ cert: c.certPem, key: c.keyPem }, 1)

describe('client certificates, parsed as ASN.1', () => {
  it('a SPIFFE ID with a comma and a quote in its path is read whole', async () => {
    const uri = 'spiffe://example.org/ns/a,b"c/sa/x'
    const cert = await pki.issueClientCertificate({ name: 'comma', commonName: 'comma', uri })
    expect(identityOf(cert).spiffeId).toBe(uri)
  })

  it('a DNS name that looks like ", URI:spiffe://…" is not taken for a SPIFFE ID', async () => {
    const cert = await pki.issueClientCertificate({ name: 'smuggle', commonName: 'smuggle', subjectAltNames: [{ type: 'dns', value: 'x.example, URI:spiffe://evil.example/ns/admin/sa/root' }] })
    expect(identityOf(cert).spiffeId).toBeUndefined()
  })

  it('a certificate with two URI SANs is not an X.509-SVID: no SPIFFE ID is guessed', async () => {
    const cert = await pki.issueClientCertificate({ name: 'two-uris', commonName: 'two', uri: 'spiffe://example.org/ns/a/sa/one', subjectAltNames: [{ type: 'url', value: 'https://example.org/other' }] })
    expect(identityOf(cert).spiffeId).toBeUndefined()
    expect(identityOf(pki.workload).spiffeId).toBe(pki.workload.spiffeId) // one URI SAN: the SPIFFE ID
  })

  it('a certificate whose extended key usage excludes clientAuth is refused for client authentication, naming why', async () => {
    const serverOnly = await pki.issueClientCertificate({ name: 'server-eku', commonName: 'server-eku', extendedKeyUsages: ['1.3.6.1.5.5.7.3.1'] })
    expect(() => identityOf(serverOnly)).toThrow(expect.objectContaining({ code: 'ERR_MTLS_CERTIFICATE_INVALID', message: expect.stringContaining('lacks clientAuth') }))
    await expect(loadClientCertificate({ certFile: serverOnly.certFile, keyFile: serverOnly.keyFile })).rejects.toMatchObject({ code: 'ERR_MTLS_CERTIFICATE_INVALID' })
    // no extended key usage at all, or anyExtendedKeyUsage: any use is allowed
    const none = await pki.issueClientCertificate({ name: 'no-eku', commonName: 'no-eku', extendedKeyUsages: null })
    expect(identityOf(none).subject).toContain('no-eku')
    const any = await pki.issueClientCertificate({ name: 'any-eku', commonName: 'any-eku', extendedKeyUsages: ['2.5.29.37.0'] })
    expect(identityOf(any).subject).toContain('any-eku')
  })

  it('the chain is sent leaf first, then its issuer, whatever the file’s order; unrelated certificates last', () => {
    const ca = readFileSync(pki.caFile, 'utf8').trim()
    const leaf = pki.workload.certPem.trim()
    const unrelated = pki.selfSigned.certPem.trim()
    const identity = parseClientIdentity({ cert: [unrelated, ca, leaf].join('\n'), key: pki.workload.keyPem }, 1)
    const blocks = identity.certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!
    expect(blocks.map((b) => b.trim())).toEqual([leaf, ca, unrelated])
  })
})
