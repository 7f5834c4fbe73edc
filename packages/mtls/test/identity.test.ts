import { generateKeyPairSync } from 'node:crypto'
import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { assertCertificateValid, certificateThumbprint, parseClientIdentity } from '../src/index.js'

// RFC 8705 Appendix A (T-5)
const RFC8705_CERT = `-----BEGIN CERTIFICATE-----
MIIBBjCBrAIBAjAKBggqhkjOPQQDAjAPMQ0wCwYDVQQDDARtdGxzMB4XDTE4MTAx
ODEyMzcwOVoXDTIyMDUwMjEyMzcwOVowDzENMAsGA1UEAwwEbXRsczBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABNcnyxwqV6hY8QnhxxzFQ03C7HKW9OylMbnQZjjJ
/Au08/coZwxS7LfA4vOLS9WuneIXhbGGWvsDSb0tH6IxLm8wCgYIKoZIzj0EAwID
SQAwRgIhAP0RC1E+vwJD/D1AGHGzuri+hlV/PpQEKTWUVeORWz83AiEA5x2eXZOV
bUlJSGQgjwD5vaUaKlLR50Q2DmFfQj1L+SY=
-----END CERTIFICATE-----`

describe('client identity (MTLS-07, T-5)', () => {
  it("x5t#S256 of RFC 8705 Appendix A's certificate (SHA-256, base64url — not SHA-1, not hex)", () => {
    expect(certificateThumbprint(RFC8705_CERT)).toBe('A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0')
  })
  it('a key that matches no certificate is refused with ERR_MTLS_CERTIFICATE_INVALID', () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' })
    expect(() => parseClientIdentity({ cert: RFC8705_CERT, key }, 1)).toThrow(expect.objectContaining({ code: 'ERR_MTLS_CERTIFICATE_INVALID', message: expect.stringContaining('does not match') }))
  })
  it('garbage is refused with a typed error, not a crash', () => {
    expect(() => parseClientIdentity({ cert: 'nope', key: 'nope' }, 1)).toThrow(expect.objectContaining({ code: 'ERR_MTLS_CERTIFICATE_INVALID' }))
    expect(() => parseClientIdentity({ cert: RFC8705_CERT, key: 'nope' }, 1)).toThrow(expect.objectContaining({ code: 'ERR_MTLS_CERTIFICATE_INVALID' }))
  })
  it('an expired certificate is refused with ERR_MTLS_CERTIFICATE_EXPIRED', () => {
    const identity = { x5t: 'x', subject: 'CN=a', notBefore: 0, notAfter: 1000 } as never
    expect(() => assertCertificateValid(identity, 1000)).toThrow(expect.objectContaining({ code: 'ERR_MTLS_CERTIFICATE_EXPIRED' }))
    expect(() => assertCertificateValid(identity, 999)).not.toThrow()
  })
  it('never prints the private key', () => {
    // a throwaway self-made pair is enough to see what inspect and JSON show
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const keyPem = pair.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
    const fake = { x5t: 'x' }
    Object.defineProperty(fake, 'privateKey', { value: pair.privateKey, enumerable: false })
    expect(JSON.stringify(fake)).not.toContain('PRIVATE')
    expect(inspect(fake)).not.toContain(keyPem.split('\n')[1]!)
  })
})
