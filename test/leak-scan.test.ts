import { describe, expect, it } from 'vitest'
import { findIn } from './setup/leak-scan.js'

// The leak scan's search (test/setup/leak-scan.ts): every secret of 8 characters or more that occurs
// anywhere in what Bound reported, found in one pass.
describe('the leak scan', () => {
  it('finds a secret at the start, in the middle and at the end, and only those', () => {
    const secrets = ['eyJhbGciOi.first', 'middle-secret-value', 'the-last-one!', 'never-reported-1', 'eyJhbGciOi.other']
    const haystack = 'eyJhbGciOi.first logged\n{"msg":"oops middle-secret-value"}\nand the-last-one!'
    expect(findIn(haystack, secrets).sort()).toEqual(['eyJhbGciOi.first', 'middle-secret-value', 'the-last-one!'])
  })
  it('finds secrets that share a prefix or overlap, and ignores ones shorter than 8 characters', () => {
    expect(findIn('xxabcdefghijklmnxx', ['abcdefgh', 'abcdefghijk', 'abcdefghZZZ', 'cdefghij', 'short']).sort()).toEqual(['abcdefgh', 'abcdefghijk', 'cdefghij'])
    expect(findIn('short', ['short'])).toEqual([])
  })
})
