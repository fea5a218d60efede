// The tail input's reader against real files: line handling, rotation both ways, checkpoints, full buffers.
import { appendFile, copyFile, mkdir, rename, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { QueueFullError } from '../../src/errors.js'
import type { LogEvent } from '../../src/event.js'
import { createEnricher } from '../../src/pipeline/enrich.js'
import { CheckpointStore } from '../../src/sources/tail/checkpoints.js'
import { Tailer, type TailerOptions } from '../../src/sources/tail/tailer.js'
import { recordEventId, Spool } from '../../src/spool/index.js'
import { silentLogger, tempDir } from '../helpers.js'

const enrich = createEnricher({
  service: 's',
  revision: 'r',
  host: 'h',
  labels: {},
  maxEntryBytes: 256 * 1024,
})

/** Takes what the tailer offers, unless `full` is set or it holds `limit` entries: then it answers as a full buffer does. */
function collector() {
  const state = { full: false, limit: Number.POSITIVE_INFINITY, refusals: 0, events: [] as LogEvent[] }
  const accept = (events: readonly LogEvent[]) => {
    if (state.full || state.events.length >= state.limit) {
      state.refusals++
      throw new QueueFullError('full', 10)
    }
    state.events.push(...events)
    return undefined
  }
  const entries = () => state.events.map((e) => JSON.parse(e.line) as Record<string, unknown>)
  const messages = () => entries().map((e) => e.message ?? e.msg)
  return { state, accept, entries, messages }
}

const tailers: Tailer[] = []
afterEach(async () => {
  await Promise.all(tailers.splice(0).map((t) => t.close()))
})

function tailerOptions(dir: string, accept: TailerOptions['accept']): TailerOptions {
  return {
    patterns: [join(dir, 'logs', 'app.log*')],
    maxLineBytes: 1024,
    pollIntervalMs: 20,
    rotateWaitMs: 200,
    chunkLines: 1000,
    chunkBytes: 64 * 1024,
    checkpoints: new CheckpointStore(join(dir, 'checkpoints.json'), false),
    accept,
    enrich,
    logger: silentLogger,
  }
}

async function startTailer(
  dir: string,
  accept: TailerOptions['accept'],
  options: Partial<TailerOptions> = {},
) {
  const tailer = new Tailer({ ...tailerOptions(dir, accept), ...options })
  await tailer.load()
  tailer.start()
  tailers.push(tailer)
  return tailer
}

const lines = (from: number, to: number, prefix = 'line') =>
  Array.from({ length: to - from }, (_, i) => `${prefix} ${from + i}\n`).join('')
const range = (from: number, to: number, prefix = 'line') =>
  Array.from({ length: to - from }, (_, i) => `${prefix} ${from + i}`)
const until = (check: () => void) => vi.waitFor(check, { timeout: 15_000, interval: 20 })

async function logsDir(): Promise<{ dir: string; file: string }> {
  const dir = await tempDir()
  await mkdir(join(dir, 'logs'))
  return { dir, file: join(dir, 'logs', 'app.log') }
}

describe('tail: lines', () => {
  it('takes JSON object lines as entries and any other line as { message }; waits for a line to end', async () => {
    const { dir, file } = await logsDir()
    await writeFile(
      file,
      '{"msg":"json","level":"warn","n":1}\r\nplain text\n\n   \n[1,2]\n{"broken":\npartial',
    )
    const sink = collector()
    await startTailer(dir, sink.accept)
    await until(() => expect(sink.entries()).toHaveLength(4))
    const [json, plain, array, broken] = sink.entries()
    expect(json).toMatchObject({
      msg: 'json',
      message: 'json',
      n: 1,
      severity: 'WARNING',
      'log.file.path': file,
    })
    expect(plain).toMatchObject({ message: 'plain text', service: 's' })
    expect(array?.message).toBe('[1,2]')
    expect(broken?.message).toBe('{"broken":')
    expect(json?.event_id).toMatch(/^tail-[0-9a-f]{16}-0$/)
    await appendFile(file, ' line\n')
    await until(() => expect(sink.messages().at(-1)).toBe('partial line'))
  })

  it('cuts a line over the limit, says so in the entry and counts it', async () => {
    const { dir, file } = await logsDir()
    const sink = collector()
    const tailer = await startTailer(dir, sink.accept, { maxLineBytes: 300, chunkBytes: 4096 })
    await writeFile(file, `short\n${'é'.repeat(5000)}\nafter\n`)
    await until(() => expect(sink.messages()).toEqual(['short', expect.any(String), 'after']))
    const cut = sink.entries()[1]
    expect(cut).toMatchObject({ truncated: true })
    expect(Buffer.byteLength(cut?.message as string)).toBe(300)
    expect(tailer.stats().truncated_lines).toBe(1)
  })

  it('picks up new files, and waits while the buffers are full', async () => {
    const { dir, file } = await logsDir()
    const sink = collector()
    sink.state.full = true
    const tailer = await startTailer(dir, sink.accept)
    await writeFile(file, lines(0, 50))
    await writeFile(`${file}.other`, lines(0, 50, 'other'))
    await until(() => expect(sink.state.refusals).toBeGreaterThan(3))
    expect(sink.state.events).toHaveLength(0)
    sink.state.full = false
    await until(() => expect(sink.state.events).toHaveLength(100))
    expect(sink.messages().sort()).toEqual([...range(0, 50), ...range(0, 50, 'other')].sort())
    expect(tailer.stats().waits_for_room).toBeGreaterThan(0)
  })
})

describe('tail: rotation', () => {
  it('rename: reads what the app still writes to the renamed file, then the new one, each line once', async () => {
    const { dir, file } = await logsDir()
    const sink = collector()
    // The pattern does not match the rotated name: the renamed file is read through its open handle.
    await startTailer(dir, sink.accept, { patterns: [file] })
    await writeFile(file, lines(0, 10))
    await until(() => expect(sink.state.events).toHaveLength(10))
    await rename(file, join(dir, 'logs', 'rotated.1'))
    await appendFile(join(dir, 'logs', 'rotated.1'), lines(10, 20))
    await writeFile(file, lines(20, 30))
    await until(() => expect(sink.state.events).toHaveLength(30))
    expect(sink.messages().sort()).toEqual(range(0, 30).sort())
  })

  it('copy-truncate while behind: the lines not read yet are read from the copy, once', async () => {
    const { dir, file } = await logsDir()
    const sink = collector()
    // The reader stalls part-way through the file; then it is rotated as logrotate's copytruncate does.
    sink.state.limit = 3
    const tailer = await startTailer(dir, sink.accept, { chunkLines: 3 })
    await writeFile(file, lines(0, 10))
    await until(() => expect(sink.state.refusals).toBeGreaterThan(0))
    expect(sink.state.events).toHaveLength(3)
    await copyFile(file, `${file}.1`)
    await truncate(file, 0)
    await appendFile(file, lines(10, 15))
    sink.state.limit = Number.POSITIVE_INFINITY
    await until(() => expect(sink.state.events).toHaveLength(15))
    expect(sink.messages().sort()).toEqual(range(0, 15).sort())
    expect(tailer.stats().truncated_files).toBe(1)
  })

  it('copy-truncate seen in the other order: a copy found before the truncation waits, and repeats nothing', async () => {
    const { dir, file } = await logsDir()
    const sink = collector()
    const tailer = await startTailer(dir, sink.accept)
    await writeFile(file, lines(0, 8))
    await until(() => expect(sink.state.events).toHaveLength(8))
    await copyFile(file, `${file}.1`)
    // The reader finds the copy while the original is intact: it waits on the original.
    await until(() => expect(tailer.stats().files).toBe(2))
    await truncate(file, 0)
    await appendFile(file, lines(8, 10))
    await until(() => expect(sink.state.events).toHaveLength(10))
    expect(sink.messages().sort()).toEqual(range(0, 10).sort())
    await until(() => expect(tailer.stats().truncated_files).toBe(1))
    // Nothing more turns up from the copy.
    await appendFile(file, lines(10, 11))
    await until(() => expect(sink.state.events).toHaveLength(11))
    expect(new Set(sink.messages()).size).toBe(11)
  })
})

describe('tail: checkpoints', () => {
  it('a restart resumes after the last accepted line, and a file rewritten in place is read from its start', async () => {
    const { dir, file } = await logsDir()
    const first = collector()
    const tailer = await startTailer(dir, first.accept)
    await writeFile(file, lines(0, 5))
    await writeFile(`${file}.b`, lines(0, 3, 'b'))
    await until(() => expect(first.state.events).toHaveLength(8))
    await tailer.close()
    await appendFile(file, lines(5, 9))
    await writeFile(`${file}.b`, lines(0, 2, 'rewritten'))

    const second = collector()
    await startTailer(dir, second.accept)
    await until(() => expect(second.state.events).toHaveLength(6))
    expect(second.messages().sort()).toEqual([...range(5, 9), ...range(0, 2, 'rewritten')].sort())
    // Same file, same offsets: the ids of the first run's lines would come back the same.
    expect(new Set([...first.state.events, ...second.state.events].map((e) => e.id)).size).toBe(14)
  })

  it('a line is checkpointed only once accepted: lines refused before a stop are read again', async () => {
    const { dir, file } = await logsDir()
    const first = collector()
    first.state.limit = 2
    const tailer = await startTailer(dir, first.accept, { chunkLines: 2 })
    await writeFile(file, lines(0, 4))
    await until(() => expect(first.state.refusals).toBeGreaterThan(0))
    await tailer.close()
    expect(first.state.events).toHaveLength(2)
    const second = collector()
    await startTailer(dir, second.accept)
    await until(() => expect(second.state.events).toHaveLength(2))
    expect([...first.messages(), ...second.messages()].sort()).toEqual(range(0, 4).sort())
  })
})

describe('tail: a crash between the spool and the checkpoint', () => {
  /**
   * Runs a tailer on a spool until the first chunk is on disk, then "kills" it before the checkpoint that follows;
   * `between` runs while it is down; a second tailer then starts on the same spool and checkpoint file.
   */
  async function crashAndRestart(between: (dir: string, file: string) => Promise<void>) {
    const { dir, file } = await logsDir()
    const openSpool = () =>
      Spool.open({
        dir: join(dir, 'spool'),
        fsync: 'always',
        maxBytes: 64 * 1024 ** 2,
        maxEntryBytes: 256 * 1024,
        sinks: ['file'],
        logger: silentLogger,
      })
    const spool = await openSpool()
    // The process dies once the chunk is on disk and before the checkpoint that follows it is written.
    let reachedSpool = false
    let died = false
    const save = CheckpointStore.prototype.save
    const spy = vi.spyOn(CheckpointStore.prototype, 'save').mockImplementation(function (
      this: CheckpointStore,
      state,
    ) {
      if (reachedSpool) {
        died = true
        return new Promise<void>(() => {})
      }
      return save.call(this, state)
    })
    await writeFile(file, lines(0, 50))
    const first = new Tailer({
      ...tailerOptions(
        dir,
        spoolAccept(spool, () => (reachedSpool = true)),
      ),
      checkpoints: new CheckpointStore(join(dir, 'checkpoints.json'), true),
      spool,
    })
    await first.load()
    first.start()
    await until(() => expect(died).toBe(true))
    spy.mockRestore()
    await spool.close()
    await between(dir, file)

    // The restart: the same spool directory and checkpoint file, a new process.
    const restarted = await openSpool()
    const accepted: LogEvent[] = []
    const second = await startTailer(
      dir,
      spoolAccept(restarted, () => {}, accepted),
      {
        checkpoints: new CheckpointStore(join(dir, 'checkpoints.json'), true),
        spool: restarted,
      },
    )
    return { file, restarted, accepted, second }
  }

  it('after a SIGKILL right after a chunk reached the spool, the restart neither repeats nor loses a line', async () => {
    const { file, restarted, accepted, second } = await crashAndRestart(async () => {})
    await appendFile(file, lines(50, 60))
    await until(() => expect(accepted).toHaveLength(10))
    await second.close()
    const ids = await spooledIds(restarted)
    expect(ids).toHaveLength(60)
    expect(new Set(ids).size).toBe(60)
    expect(accepted.map((e) => JSON.parse(e.line).message)).toEqual(range(50, 60))
    await restarted.close()
  })

  it('the same when the file was copied and truncated (copytruncate) while sidelog was down', async () => {
    const { file, restarted, accepted, second } = await crashAndRestart(async (_, path) => {
      await copyFile(path, `${path}.1`)
      await truncate(path, 0)
    })
    await appendFile(file, lines(50, 60))
    await until(() => expect(accepted).toHaveLength(10))
    await second.close()
    // The copy's first 50 lines carry the copy's ids now; the spool holds them under the original's: none again.
    expect(accepted.map((e) => JSON.parse(e.line).message)).toEqual(range(50, 60))
    expect(await spooledIds(restarted)).toHaveLength(60)
    await restarted.close()
  })
})

/** What the pipeline's accept does with a spool: the entries are appended, and taken once they are on disk. */
function spoolAccept(spool: Spool, onWritten: () => void, accepted: LogEvent[] = []) {
  return async (events: readonly LogEvent[]) => {
    await spool.append(events).written
    accepted.push(...events)
    onWritten()
  }
}

/** Every event id in the spool's log, in order. */
async function spooledIds(spool: Spool): Promise<string[]> {
  const ids: string[] = []
  const reader = spool.reader(0)
  for (let records = await reader.read(10_000, 1024 ** 2); records.length > 0; ) {
    ids.push(...records.map((r) => recordEventId(r.payload)))
    records = await reader.read(10_000, 1024 ** 2)
  }
  return ids
}
