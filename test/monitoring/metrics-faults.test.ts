// /metrics scraped on the real process during and after two fault scenarios, a sink outage and an overload: what it
// says agrees with /health at every scrape, and at the end with what the clients were told and with what is in the
// destinations (objects, rows, files and dead letters), entry for entry and byte for byte.
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { parseExposition, type Sample, sampleValue } from '../../src/top/exposition.js'
import { type SidelogProcess, spawnSidelog } from '../e2e/spawn.js'
import {
  type CloudSinks,
  deadLetteredIds,
  expectAccounted,
  fileIds,
  getHealth,
  type Health,
  runClients,
  startCloudSinks,
  waitForHealth,
} from '../faults/harness.js'
import { tempDir } from '../helpers.js'

/** Short on purpose: the fault suite runs the long versions; these check the numbers, on two shared cores. */
const OUTAGE_S = 4
const OVERLOAD_S = 5

let cloud: CloudSinks | undefined
let sidelog: SidelogProcess | undefined
afterEach(async () => {
  await cloud?.stop()
  sidelog?.child.kill('SIGKILL')
  cloud = undefined
  sidelog = undefined
})

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`)
  expect(res.status).toBe(200)
  return parseExposition(await res.text())
}

const at = (sink: string) => ({ component_kind: 'sink', component_id: sink })
const metric = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  sampleValue(samples, name, labels) ?? Number.NaN
const deadLettered = (samples: Sample[], sink: string) =>
  samples
    .filter(
      (s) => s.name === 'sidelog_component_dead_lettered_events_total' && s.labels.component_id === sink,
    )
    .reduce((total, s) => total + s.value, 0)

interface SinkCounts {
  readonly delivered_events: number
  readonly delivered_batches: number
  readonly retries: number
  readonly dead_lettered_events: number
  readonly dead_letter_failed_events: number
  readonly buffered_events: number
}

/**
 * A scrape taken before a /health reading: no counter can be ahead of /health, and the buffer figures obey their
 * bounds. (They cannot be equal mid-run: entries move between the two requests.)
 */
function expectBehindHealth(samples: Sample[], health: Health, sinks: string[]): void {
  expect(metric(samples, 'sidelog_component_received_events_total')).toBeLessThanOrEqual(
    (health as unknown as { lines_processed: number }).lines_processed,
  )
  for (const sink of sinks) {
    const s = health.sinks[sink] as unknown as SinkCounts
    expect(metric(samples, 'sidelog_component_sent_events_total', at(sink))).toBeLessThanOrEqual(
      s.delivered_events,
    )
    expect(metric(samples, 'sidelog_component_retries_total', at(sink))).toBeLessThanOrEqual(s.retries)
    expect(metric(samples, 'sidelog_buffer_events', at(sink))).toBeLessThanOrEqual(
      metric(samples, 'sidelog_buffer_max_events', at(sink)),
    )
  }
}

/** Once idle, every number /metrics shows is /health's. */
function expectSameAsHealth(samples: Sample[], health: Health, sinks: string[]): void {
  expect(metric(samples, 'sidelog_component_received_events_total')).toBe(
    (health as unknown as { lines_processed: number }).lines_processed,
  )
  for (const [code, n] of Object.entries(health.refused_requests)) {
    expect(metric(samples, 'sidelog_component_refused_requests_total', { error_code: code })).toBe(n)
  }
  for (const sink of sinks) {
    const s = health.sinks[sink] as unknown as SinkCounts
    expect({
      sink,
      sent: metric(samples, 'sidelog_component_sent_events_total', at(sink)),
      batches: metric(samples, 'sidelog_component_sent_batches_total', at(sink)),
      retries: metric(samples, 'sidelog_component_retries_total', at(sink)),
      deadLettered: deadLettered(samples, sink),
      deadLetterFailed: metric(samples, 'sidelog_component_dead_letter_failed_events_total', at(sink)),
      buffered: metric(samples, 'sidelog_buffer_events', at(sink)),
    }).toEqual({
      sink,
      sent: s.delivered_events,
      batches: s.delivered_batches,
      retries: s.retries,
      deadLettered: s.dead_lettered_events,
      deadLetterFailed: s.dead_letter_failed_events,
      buffered: s.buffered_events,
    })
  }
}

describe('metrics under faults', () => {
  it(`sink outage (${OUTAGE_S} s), then permanent failures: agree with /health and the destinations`, {
    timeout: 120_000,
  }, async () => {
    cloud = await startCloudSinks('metrics-outage', {
      BUFFER_MAX_EVENTS: '1000',
      RETRY_MAX_BACKOFF: '0.5',
      ADMIN_HOST: '127.0.0.1',
      ADMIN_PORT: '0',
    })
    const { sidelog: process, gcs } = cloud
    const adminLine = process.logs.find((l) => typeof l.admin_port === 'number')
    const admin = `http://127.0.0.1:${adminLine?.admin_port}`
    cloud.failAll()
    const startedAt = Date.now()
    let recovered = false
    const clients = runClients({
      url: process.url,
      clients: 4,
      perRequest: 50,
      prefix: 'metrics-outage',
      backOff: true,
      stop: () => recovered && Date.now() - startedAt > (OUTAGE_S + 2) * 1000,
    })

    // During the outage, scraped from the admin listener: the sinks are failing and retrying, /ready says so.
    const deadline = Date.now() + 60_000
    let during: Sample[] = []
    for (;;) {
      during = await scrape(admin)
      if (
        metric(during, 'sidelog_component_healthy', at('gcs')) === 0 &&
        metric(during, 'sidelog_component_retries_total', at('gcs')) > 0 &&
        metric(during, 'sidelog_buffer_events', at('gcs')) > 0
      )
        break
      if (Date.now() > deadline) throw new Error('the outage never showed in /metrics')
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expectBehindHealth(during, await getHealth(admin), ['gcs', 'bigquery'])
    expect(
      metric(during, 'sidelog_component_write_duration_seconds_count', { ...at('gcs'), outcome: 'error' }),
    ).toBeGreaterThan(0)
    const ready = await fetch(`${admin}/ready`)
    expect(ready.status).toBe(503)
    expect(((await ready.json()) as { reasons: string[] }).reasons.join('\n')).toMatch(/sink gcs is failing/)

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, startedAt + OUTAGE_S * 1000 - Date.now())))
    // Back, except that the next two uploads are refused for good (403): their batches are dead-lettered.
    cloud.recover()
    gcs.inject({ kind: 'status', status: 403 }, { target: 'upload', times: 2 })
    recovered = true
    const result = await clients
    await waitForHealth(process.url, (h) => h.buffer_size === 0 && h.sinks.gcs?.buffered_events === 0)

    const after = await scrape(admin)
    const health = await getHealth(admin)
    expectSameAsHealth(after, health, ['gcs', 'bigquery'])
    // ...and with what the clients were told.
    expect(result.uncertain.size).toBe(0)
    expect(metric(after, 'sidelog_component_received_events_total')).toBe(result.acknowledged.size)
    expect(metric(after, 'sidelog_component_refused_requests_total', { error_code: 'BUFFER_FULL' })).toBe(
      result.answers['429'] ?? 0,
    )
    expect(result.answers['429']).toBeGreaterThan(0)
    // ...and with the destinations: entries, bytes and dead letters.
    const objects = gcs.list(cloud.bucket)
    expect(metric(after, 'sidelog_component_sent_events_total', at('gcs'))).toBe(cloud.inBucket().length)
    expect(metric(after, 'sidelog_component_sent_event_bytes_total', at('gcs'))).toBe(
      objects.reduce((total, o) => total + o.data.length, 0),
    )
    expect(metric(after, 'sidelog_component_sent_batches_total', at('gcs'))).toBe(objects.length)
    expect(
      metric(after, 'sidelog_component_write_duration_seconds_count', { ...at('gcs'), outcome: 'ok' }),
    ).toBe(objects.length)
    expect(metric(after, 'sidelog_component_sent_events_total', at('bigquery'))).toBe(cloud.inTable().length)
    const gcsDeadLetters = await deadLetteredIds(cloud.deadLetterDir, 'gcs')
    expect(gcsDeadLetters.length).toBeGreaterThan(0)
    expect(
      metric(after, 'sidelog_component_dead_lettered_events_total', { ...at('gcs'), reason: 'permanent' }),
    ).toBe(gcsDeadLetters.length)
    expect(deadLettered(after, 'bigquery')).toBe(0)
    expect(metric(after, 'sidelog_component_healthy', at('bigquery'))).toBe(1)
    expect(metric(after, 'sidelog_component_last_sent_timestamp_seconds', at('gcs')) * 1000).toBeGreaterThan(
      startedAt,
    )

    process.child.kill('SIGTERM')
    expect(await process.exited).toEqual({ code: 0, signal: null })
    expectAccounted('gcs', result, cloud.inBucket(), gcsDeadLetters)
    expectAccounted(
      'bigquery',
      result,
      cloud.inTable(),
      await deadLetteredIds(cloud.deadLetterDir, 'bigquery'),
    )
  })

  it(`overload (${OVERLOAD_S} s of clients that never back off): agree with the 429s and the files`, {
    timeout: 120_000,
  }, async () => {
    const dir = await tempDir()
    sidelog = await spawnSidelog({
      DATA_DIR: join(dir, 'data'),
      DEAD_LETTER_DIR: join(dir, 'dead-letter'),
      BUFFER_MAX_EVENTS: '2000',
      FLUSH_INTERVAL: '0.2',
      // Refused at once: with the default wait, a file sink this fast takes in all these clients send, and there
      // would be no refusal for the counters to agree with.
      BUFFER_FULL_WAIT: '0',
    })
    const { url } = sidelog
    const startedAt = Date.now()
    const done = () => Date.now() - startedAt > OVERLOAD_S * 1000
    const clients = runClients({
      url,
      clients: 12,
      perRequest: 100,
      prefix: 'metrics-overload',
      backOff: false,
      stop: done,
    })
    // Scraped every quarter second while the clients push: counters only rise, and never run ahead of /health.
    let scrapes = 0
    let previous: Sample[] | undefined
    while (!done()) {
      const samples = await scrape(url)
      expectBehindHealth(samples, await getHealth(url), ['file'])
      if (previous) {
        for (const name of [
          'sidelog_component_received_events_total',
          'sidelog_component_sent_events_total',
        ]) {
          expect(metric(samples, name, name.includes('sent') ? at('file') : {})).toBeGreaterThanOrEqual(
            metric(previous, name, name.includes('sent') ? at('file') : {}),
          )
        }
      }
      previous = samples
      scrapes++
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    const result = await clients
    await waitForHealth(url, (h) => h.buffer_size === 0)
    const after = await scrape(url)
    expectSameAsHealth(after, await getHealth(url), ['file'])
    expect(scrapes).toBeGreaterThan(5)
    expect(result.answers['429']).toBeGreaterThan(0)
    expect(metric(after, 'sidelog_component_refused_requests_total', { error_code: 'BUFFER_FULL' })).toBe(
      result.answers['429'],
    )
    expect(metric(after, 'sidelog_component_received_events_total')).toBe(result.acknowledged.size)

    sidelog.child.kill('SIGTERM')
    expect(await sidelog.exited).toEqual({ code: 0, signal: null })
    const delivered = await fileIds(join(dir, 'data/logs'))
    expect(metric(after, 'sidelog_component_sent_events_total', at('file'))).toBe(delivered.length)
    expectAccounted('file', result, delivered, [])
  })
})
