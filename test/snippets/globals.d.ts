// Names the documentation's snippets use without declaring them: the reader's own values.
import type { Session, BoundFetch, DpopKey, ClientCertificate, Transport } from '@bound/fetch'
import type { Testkit } from '@bound/testkit'

declare global {
  const session: Session
  const kit: Testkit
  const url: string
  const api: string
  const key: DpopKey
  const certificate: ClientCertificate
  const transport: Transport
  const boundFetch: BoundFetch
  const elided: Record<string, never>
}
