import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { metrics, trace } from '@opentelemetry/api'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { startTestkit, type Testkit } from '@bound/testkit'
import { createBoundFetch } from '@bound/fetch'
import { clientCredentials, clientSecretBasic, createSession } from '@bound/oauth'
import { generateDpopKey } from '@bound/dpop'

let kit: Testkit
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 })
const spanExporter = new InMemorySpanExporter()
beforeAll(async () => {
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] }))
  kit = await startTestkit()
})
afterAll(async () => {
  await kit?.close()
  metrics.disable()
  trace.disable()
})

describe('telemetry (issue 7)', () => {
  it('OpenTelemetry: metrics and spans through @opentelemetry/api, with names and attributes, no secrets', async () => {
    const lines: { level: string; fields: Record<string, unknown>; message: string }[] = []
    const logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((level) => [level, (fields: Record<string, unknown>, message: string) => void lines.push({ level, fields, message })]))
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca, telemetry: { logger } })
    kit.rs.requireStepUp('/admin', { acr_values: 'urn:bound:mfa' })
    const fetch = createBoundFetch({ session, origins: [kit.api], onStepUp: (ch) => ({ acr_values: ch.acrValues!.join(' ') }) })
    await new Promise((r) => setTimeout(r, 20)) // the optional OpenTelemetry import resolves
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    kit.rs.revokeToken((await session.token()).value)
    expect((await fetch(`${kit.api}/orders`)).status).toBe(200)
    expect((await fetch(`${kit.api}/admin/x`)).status).toBe(200)

    await reader.forceFlush()
    const exported = metricExporter.getMetrics().flatMap((rm) => rm.scopeMetrics).filter((sm) => sm.scope.name === '@bound/oauth').flatMap((sm) => sm.metrics)
    const byName = Object.fromEntries(exported.map((m) => [m.descriptor.name, m.dataPoints]))
    expect(Object.keys(byName).sort()).toEqual(expect.arrayContaining(['bound.challenges', 'bound.dpop.nonce_retries', 'bound.step_ups', 'bound.token.requests', 'bound.token.wait']))
    const sum = (name: string, attrs: Record<string, string> = {}) => (byName[name] ?? []).filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)).reduce((n, p) => n + (p.value as number), 0)
    expect(sum('bound.token.requests', { grant: 'client_credentials', outcome: 'success' })).toBe(3)
    expect(sum('bound.dpop.nonce_retries', { at: 'authorization-server' })).toBe(1)
    expect(sum('bound.dpop.nonce_retries', { at: 'resource-server' })).toBe(1)
    expect(sum('bound.challenges', { kind: 'invalid-token', outcome: 'answered' })).toBe(1)
    expect(sum('bound.challenges', { kind: 'step-up', outcome: 'answered' })).toBe(1)
    expect(sum('bound.step_ups', { outcome: 'approved' })).toBe(1)
    expect((byName['bound.token.wait']?.[0]?.value as { count: number }).count).toBeGreaterThanOrEqual(3)

    const spans = spanExporter.getFinishedSpans().filter((s) => s.name === 'bound.token.acquire')
    expect(spans).toHaveLength(3)
    expect(spans[0]!.attributes).toMatchObject({ 'bound.grant': 'client_credentials', 'bound.token_type': 'DPoP' })

    // the logger saw the story, and nothing secret
    expect(lines.map((l) => l.message)).toEqual(expect.arrayContaining(['token acquired', 'invalid_token: earning a new token', 'step-up']))
    const all = JSON.stringify(lines) + JSON.stringify(exported) + JSON.stringify(spans.map((s) => s.attributes))
    expect(all).not.toContain((await session.token()).value)
    expect(all).not.toContain(c.clientSecret)
    await session.close()
  })

  it('is silent without a logger and a no-op without an OpenTelemetry SDK', async () => {
    metrics.disable()
    trace.disable()
    const c = kit.clients.secretBasic
    const session = createSession({ issuer: kit.issuer, clientId: c.clientId, clientAuth: clientSecretBasic(c.clientSecret), grant: clientCredentials({ resource: kit.resource }), dpop: await generateDpopKey(), ca: kit.ca })
    const res = await createBoundFetch({ session, origins: [kit.api] })(`${kit.api}/orders`)
    expect(res.status).toBe(200)
    await session.close()
  })
})
