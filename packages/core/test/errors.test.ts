import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { BoundError, IdentityProviderError, TokenEndpointError, isBoundError } from '../src/index.js'

describe('BoundError', () => {
  it('has a stable code, a cause, and survives instanceof across copies (Symbol.for marker)', () => {
    const cause = new Error('socket hang up')
    const err = new TokenEndpointError({ error: 'invalid_client', error_description: 'bad', status: 401 }, { cause })
    expect(err).toBeInstanceOf(BoundError)
    expect(err).toBeInstanceOf(TokenEndpointError)
    expect(err.code).toBe('ERR_TOKEN_ENDPOINT')
    expect(err.cause).toBe(cause)
    expect(err.name).toBe('TokenEndpointError')
    // a structurally identical object from "another copy" is recognised through the marker
    const foreign = Object.create(null) as object
    Object.defineProperty(foreign, Symbol.for('@bound/core.BoundError'), { value: ['TokenEndpointError', 'BoundError'] })
    expect(foreign instanceof BoundError).toBe(true)
    expect(foreign instanceof TokenEndpointError).toBe(true)
    expect(new BoundError('ERR_NETWORK', 'x') instanceof TokenEndpointError).toBe(false)
    expect(isBoundError(err, 'ERR_TOKEN_ENDPOINT')).toBe(true)
    expect(isBoundError(new Error('x'))).toBe(false)
  })

  it('sanitises server-chosen text and keeps name out of enumerable fields', () => {
    const err = new TokenEndpointError({ error: 'invalid_grant\n\u0000', error_description: 'x'.repeat(1000), status: 400 })
    expect(err.error).toBe('invalid_grant')
    expect(err.message.length).toBeLessThan(500)
    expect(Object.keys(err)).not.toContain('name')
    expect(JSON.parse(JSON.stringify(err))).toMatchObject({ name: 'TokenEndpointError', code: 'ERR_TOKEN_ENDPOINT', error: 'invalid_grant', status: 400 })
    expect(inspect(err)).toContain('ERR_TOKEN_ENDPOINT')
  })

  it('an IdP refusal is a TokenEndpointError of its own: ERR_IDP_REFUSED, hop idp, named in the message', () => {
    const err = new IdentityProviderError({ error: 'access_denied', error_description: 'not this app', status: 400, endpoint: 'https://idp.example/token' })
    expect(err).toBeInstanceOf(TokenEndpointError)
    expect(err).toBeInstanceOf(IdentityProviderError)
    expect(new TokenEndpointError({ error: 'access_denied', status: 400 })).not.toBeInstanceOf(IdentityProviderError)
    expect(err).toMatchObject({ name: 'IdentityProviderError', code: 'ERR_IDP_REFUSED', hop: 'idp', error: 'access_denied', status: 400 })
    expect(err.message).toBe('The identity provider’s token endpoint https://idp.example/token refused the request: access_denied (not this app) [HTTP 400]')
    expect(err.docs).toBe('docs/troubleshooting.md#err_idp_refused')
    expect(JSON.parse(JSON.stringify(err))).toMatchObject({ code: 'ERR_IDP_REFUSED', hop: 'idp' })
  })
})
