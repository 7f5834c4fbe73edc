import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import type { X509Certificate as NodeX509Certificate } from 'node:crypto'
import type { TLSSocket } from 'node:tls'

/** The RFC 8705 client metadata that names how a certificate subject is matched. */
export type CertificateSubjectProperty =
  | 'tls_client_auth_subject_dn'
  | 'tls_client_auth_san_dns'
  | 'tls_client_auth_san_uri'
  | 'tls_client_auth_san_ip'
  | 'tls_client_auth_san_email'

const SAN_TYPE: Record<Exclude<CertificateSubjectProperty, 'tls_client_auth_subject_dn'>, string> = {
  tls_client_auth_san_dns: 'dns',
  tls_client_auth_san_uri: 'url',
  tls_client_auth_san_ip: 'ip',
  tls_client_auth_san_email: 'email',
}

/** The peer certificate of a TLS socket, or undefined when none was presented. */
export function peerCertificate(socket: unknown): NodeX509Certificate | undefined {
  const tls = socket as Partial<TLSSocket> | undefined
  if (typeof tls?.getPeerX509Certificate !== 'function') return undefined
  return tls.getPeerX509Certificate() ?? undefined
}

/** Whether the TLS socket's peer certificate chained to a trusted CA. */
export function peerAuthorized(socket: unknown): boolean {
  return (socket as Partial<TLSSocket> | undefined)?.authorized === true
}

function canonicalDn(dn: string): string {
  // Parse with the same library that wrote the certificate, then compare canonical strings;
  // attribute types are case-insensitive, values are compared case-insensitively as well
  // (good enough for a test PKI: no two test identities differ only by case).
  return new x509.Name(dn).toString().toLowerCase()
}

/**
 * Whether the certificate matches an RFC 8705 `tls_client_auth_*` registration value.
 */
export function certificateSubjectMatches(
  certificate: NodeX509Certificate,
  property: CertificateSubjectProperty,
  expected: string,
): boolean {
  const parsed = new x509.X509Certificate(certificate.raw)
  if (property === 'tls_client_auth_subject_dn') {
    try {
      return canonicalDn(parsed.subject) === canonicalDn(expected)
    } catch {
      return false
    }
  }
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension)
  const type = SAN_TYPE[property]
  return san?.names.items.some((name) => name.type === type && name.value === expected) ?? false
}
