import { describe, expect, it } from 'vitest'
import { ConfigSchema, heapProblem, helpText, loadConfig, parseBytes } from '../src/config.js'
import { ConfigError } from '../src/errors.js'
import { createAdditions } from '../src/pipeline/additions.js'
import { createEnricher } from '../src/pipeline/enrich.js'

describe('loadConfig', () => {
  it('gives the documented defaults with an empty environment', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      SIDELOG_HOST: '127.0.0.1',
      SIDELOG_PORT: 9090,
      SINKS: ['file'],
      DATA_DIR: './data',
      DEAD_LETTER_DIR: './data/dead-letter',
      // Unset: each sink has its own batching defaults (test/pipeline/batching.test.ts).
      BATCH_SIZE: undefined,
      BATCH_BYTES: undefined,
      FLUSH_INTERVAL: undefined,
      MAX_BODY_BYTES: 5 * 1024 * 1024,
      MAX_ENTRY_BYTES: 256 * 1024,
      SHUTDOWN_TIMEOUT: 8,
      LABELS: {},
    })
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('converts strings, sizes with units, lists and labels', () => {
    const config = loadConfig({
      SIDELOG_PORT: '0',
      SINKS: ' stdout , file,stdout',
      BATCH_BYTES: '512KiB',
      MAX_BODY_BYTES: '1.5MB',
      FLUSH_INTERVAL: '0.25',
      LABELS: 'env=prod, team=payments',
    })
    expect(config.SIDELOG_PORT).toBe(0)
    expect(config.SINKS).toEqual(['stdout', 'file'])
    expect(config.BATCH_BYTES).toBe(512 * 1024)
    expect(config.MAX_BODY_BYTES).toBe(1_500_000)
    expect(config.FLUSH_INTERVAL).toBe(0.25)
    expect(config.LABELS).toEqual({ env: 'prod', team: 'payments' })
  })

  it('treats an empty value as unset', () => {
    expect(loadConfig({ BATCH_SIZE: '', SINKS: '', MAX_BODY_BYTES: '' })).toMatchObject({
      BATCH_SIZE: undefined,
      SINKS: ['file'],
      MAX_BODY_BYTES: 5 * 1024 * 1024,
    })
  })

  it('does not read PORT, which belongs to the app', () => {
    expect(loadConfig({ PORT: '8080' }).SIDELOG_PORT).toBe(9090)
  })

  it('names every bad setting, its value and what it accepts, in one error', () => {
    let error: unknown
    try {
      loadConfig({
        BATCH_SIZE: 'abc',
        SINKS: 'file,kafka',
        MAX_BODY_BYTES: '5 parsecs',
        FLUSH_INTERVAL: '-1',
      })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    expect(message).toContain(
      'BATCH_SIZE="abc" is not valid: expected empty, or a whole number from 1 to 1000000',
    )
    expect(message).toContain(
      'SINKS="file,kafka" is not valid: expected a comma-separated list of: file, stdout',
    )
    expect(message).toContain('MAX_BODY_BYTES="5 parsecs" is not valid: expected a size in bytes')
    expect(message).toContain(
      'FLUSH_INTERVAL="-1" is not valid: expected empty, or a number of seconds greater than 0',
    )
  })

  it('rejects sizes outside their range', () => {
    expect(() => loadConfig({ MAX_BODY_BYTES: '2GiB' })).toThrow(
      /MAX_BODY_BYTES="2GiB" is not valid: .* from 1KiB to 1GiB/,
    )
  })

  it('rejects settings that contradict each other', () => {
    expect(() => loadConfig({ MAX_ENTRY_BYTES: '8MiB', BATCH_BYTES: '4MiB' })).toThrow(
      'MAX_ENTRY_BYTES (8388608) must not exceed BATCH_BYTES (4194304): one entry must fit in a batch',
    )
    expect(() => loadConfig({ BATCH_SIZE: '500', BUFFER_MAX_EVENTS: '100' })).toThrow(
      /BATCH_SIZE \(500\) must not exceed BUFFER_MAX_EVENTS \(100\)/,
    )
    expect(() => loadConfig({ SINKS: 'gcs', LOG_BUCKET: 'b-logs', GCS_BATCH_BYTES: '64MiB' })).toThrow(
      'GCS_BATCH_BYTES (67108864) must not exceed BUFFER_MAX_BYTES (33554432): one batch must fit in the buffer',
    )
    // A sink's own setting only matters when that sink is configured.
    expect(() => loadConfig({ SINKS: 'file', GCS_BATCH_BYTES: '64MiB' })).not.toThrow()
    expect(() => loadConfig({ BUFFER_FULL_WAIT: '30', REQUEST_TIMEOUT: '30' })).toThrow(
      /BUFFER_FULL_WAIT \(30\) must be less than REQUEST_TIMEOUT \(30\): a request still waiting for room/,
    )
    expect(() => loadConfig({ BUFFER_FULL_WAIT: '0.5', REQUEST_TIMEOUT: '1' })).not.toThrow()
  })

  it('rejects malformed labels', () => {
    expect(() => loadConfig({ LABELS: 'novalue' })).toThrow(
      /LABELS="novalue" is not valid: expected a comma-separated list of name=value/,
    )
  })

  // A label named like a field sidelog writes itself put the key in every line twice (JSON.parse keeps the last:
  // an event_id label made the stored id differ from the one sidelog delivers and dedupes by).
  it.each(['event_id', 'service', 'revision', 'host', 'processed_at', 'timestamp', 'severity', 'message'])(
    'refuses a label named %s, a field sidelog writes itself',
    (name) => {
      expect(() => loadConfig({ LABELS: `env=prod,${name}=x` })).toThrow(
        `LABELS names ${name}, a field sidelog writes itself; choose another name`,
      )
    },
  )

  // The refused names are config.ts's list; what sidelog writes is additions.ts's code. Every field enrichment knows
  // is tried as a label on an entry that lets sidelog write all it can (a msg, a level, a traceparent): the names
  // whose key then appears twice must be exactly the ones start-up refuses.
  it('refuses exactly the label names that enrichment would write twice', () => {
    const known = createAdditions({ service: 's', revision: 'r', host: 'h', labels: {} }).names
    const entry = Buffer.from(
      '{"level":"info","msg":"m","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
    )
    const written = known.filter((name) => {
      const ctx = { service: 's', revision: 'r', host: 'h', labels: { [name]: 'x' }, maxEntryBytes: 10_000 }
      const run = createEnricher(ctx).body(entry, 'ndjson', '2026-01-01T00:00:00.000Z', {}, undefined, 10)
      const line = (run as NonNullable<typeof run>).chunk.toString()
      return line.split(`${JSON.stringify(name)}:`).length - 1 > 1
    })
    expect(written.length).toBeGreaterThan(5)
    const refused = known.filter((name) => {
      try {
        loadConfig({ LABELS: `${name}=x` })
        return false
      } catch (err) {
        return String(err).includes(`LABELS names ${name}, a field sidelog writes itself`)
      }
    })
    expect(refused).toEqual(written.filter((name) => /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)))
  })

  it('takes labels named like fields sidelog only reads', () => {
    expect(loadConfig({ LABELS: 'msg=x,level=info,time=t,team=pay' }).LABELS).toEqual({
      msg: 'x',
      level: 'info',
      time: 't',
      team: 'pay',
    })
  })
})

describe('parseBytes', () => {
  it.each([
    ['1024', 1024],
    ['1KiB', 1024],
    ['1kb', 1000],
    ['5MiB', 5 * 1024 ** 2],
    ['2 GiB', 2 * 1024 ** 3],
    ['0.5MiB', 512 * 1024],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseBytes(text)).toBe(bytes)
  })

  it('refuses a unit it does not know', () => {
    expect(() => parseBytes('5XB')).toThrow('"5XB" is not a size')
  })
})

describe('helpText', () => {
  it('documents every setting with its default and what it accepts', () => {
    const help = helpText()
    for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
      expect(help).toContain(`  ${name}  (default: `)
      expect(help).toContain(String(schema.description))
      expect(help).toContain(`Accepts ${schema.accepts}.`)
    }
  })
})

describe('heapProblem', () => {
  const MiB = 1024 ** 2
  it('passes buffers that fit the heap with room to work in', () => {
    expect(heapProblem({ BUFFER_MAX_BYTES: 32 * MiB }, 134 * MiB)).toBeUndefined()
    expect(heapProblem({ BUFFER_MAX_BYTES: 32 * MiB }, 4096 * MiB)).toBeUndefined()
  })

  it('names BUFFER_MAX_BYTES, what it needs and the limit when they do not fit', () => {
    expect(heapProblem({ BUFFER_MAX_BYTES: 64 * MiB }, 134 * MiB)).toBe(
      'BUFFER_MAX_BYTES (64 MiB) needs about 144 MiB of heap when a sink is down, but the heap limit is 134 MiB (NODE_OPTIONS --max-old-space-size): lower BUFFER_MAX_BYTES or raise the limit',
    )
  })
})
