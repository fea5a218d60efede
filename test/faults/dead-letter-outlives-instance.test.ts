// Fault scenario: SIGTERM while both cloud sinks are down, on an instance whose disk dies with it (Cloud Run's
// in-memory volume, a deleted pod's emptyDir). With DEAD_LETTER=gcs,stderr the dead letters must be found after the
// process exited and its data volume (a temp dir) was deleted: in the bucket under DEAD_LETTER_GCS_PREFIX, or, when
// Cloud Storage hangs, on stderr, each acknowledged entry once per sink, and the process still exits 0 in time.
import { rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { RecordedRequest } from '../fakes/gcs-server.js'
import { type CloudSinks, expectAccounted, runClients, startCloudSinks, waitForHealth } from './harness.js'

const SHUTDOWN_TIMEOUT_S = 3

let cloud: CloudSinks | undefined
afterEach(async () => {
  await cloud?.stop()
})

const isLogObject = (request: RecordedRequest) => (request.query.get('name') ?? '').startsWith('logs/')
const isDeadLetter = (request: RecordedRequest) =>
  (request.query.get('name') ?? '').startsWith('dead-letter/')

/** event_ids dead-lettered for `sink`: in the bucket's dead-letter objects, and on stderr. */
function deadLetters(cloud: CloudSinks, sink: string) {
  const inBucket = cloud.gcs
    .list(cloud.bucket)
    .filter((o) => o.name.startsWith(`dead-letter/${sink}/`))
    .flatMap((o) => o.data.toString().trim().split('\n'))
    .map((line) => (JSON.parse(line) as { entry: { event_id: string } }).entry.event_id)
  const onStderr = cloud.sidelog.logs
    .filter((line) => line.sidelog === 'dead-letter' && line.sink === sink)
    .map((line) => (line.entry as { event_id: string }).event_id)
  return { inBucket, onStderr, all: [...inBucket, ...onStderr] }
}

describe.each([
  { storage: 'answers', where: 'in the bucket' },
  { storage: 'hangs', where: 'on stderr' },
] as const)(
  'fault: SIGTERM with the sinks down, DEAD_LETTER=gcs,stderr, Cloud Storage $storage',
  ({ storage, where }) => {
    it(`exits 0 in time; after the volume is gone every acknowledged entry is ${where}, once per sink`, async () => {
      cloud = await startCloudSinks(`dl-${storage}`, {
        SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT_S),
        // Refuse at once on SIGTERM: with the clients still sending, an accept window would take in more than the
        // bucket can take as dead letters inside a 3 s budget, and they would (rightly) fall back to stderr.
        SHUTDOWN_ACCEPT: '0',
        DEAD_LETTER: 'gcs,stderr',
      })
      const { sidelog, gcs, bq } = cloud
      const forever = Number.MAX_SAFE_INTEGER
      // Both sinks down; the dead-letter prefix of the same bucket answers, or hangs.
      gcs.inject({ kind: 'status', status: 503 }, { target: 'upload', times: forever, where: isLogObject })
      if (storage === 'hangs')
        gcs.inject({ kind: 'stall' }, { target: 'upload', times: forever, where: isDeadLetter })
      bq.inject({ kind: 'status', status: 503 }, { target: 'insert', times: forever })

      let exited = false
      const stopped = sidelog.exited.then((exit) => {
        exited = true
        return exit
      })
      const clients = runClients({
        url: sidelog.url,
        clients: 4,
        perRequest: 50,
        prefix: `dl-${storage}`,
        backOff: true,
        stop: () => exited,
      })
      await waitForHealth(
        sidelog.url,
        (h) => (h.sinks.gcs?.retries ?? 0) > 2 && (h.sinks.bigquery?.retries ?? 0) > 2,
      )
      const signalledAt = Date.now()
      sidelog.child.kill('SIGTERM')
      expect(await stopped).toEqual({ code: 0, signal: null })
      const exitMs = Date.now() - signalledAt
      expect(exitMs).toBeLessThan(SHUTDOWN_TIMEOUT_S * 1000 + 1500)
      const result = await clients

      // Nothing went to the instance's disk; then the instance, and its volume, are gone.
      const volume = dirname(cloud.deadLetterDir)
      expect(
        await stat(cloud.deadLetterDir).then(
          () => 'exists',
          () => 'absent',
        ),
      ).toBe('absent')
      await rm(volume, { recursive: true, force: true })

      expect(gcs.list(cloud.bucket).filter((o) => o.name.startsWith('logs/'))).toEqual([])
      expect(cloud.inTable()).toEqual([])
      const counts: Record<string, { inBucket: number; onStderr: number }> = {}
      for (const sink of ['gcs', 'bigquery']) {
        const found = deadLetters(cloud, sink)
        expectAccounted(sink, result, [], found.all)
        counts[sink] = { inBucket: found.inBucket.length, onStderr: found.onStderr.length }
        if (storage === 'answers') expect(found.onStderr).toEqual([])
        else expect(found.inBucket).toEqual([])
      }
      console.log(
        `Cloud Storage ${storage}: ${result.acknowledged.size} acknowledged, exit 0 after ${exitMs} ms; dead letters ${JSON.stringify(counts)}`,
      )
    })
  },
)
