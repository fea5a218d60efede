// The Prometheus metrics behind /metrics. Counters that /health shows are read from the pipeline's own numbers at
// scrape time, so the two always agree; what /health has no number for (bytes sent, write latency, why entries were
// dead-lettered) is counted by the pipeline observer and an instrumented sink.
import { performance } from 'node:perf_hooks'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { Config } from './config.js'
import type { DeadLetterClass, Pipeline, PipelineObserver, SinkStats } from './pipeline/index.js'
import type { Sink } from './sinks/sink.js'
import type { Spool } from './spool/index.js'

/** Every class the pipeline dead-letters by; each sink's counter starts at 0 for each, so rate() sees the first. */
export const DEAD_LETTER_CLASSES: readonly DeadLetterClass[] = [
  'permanent',
  'budget-exhausted',
  'shutdown',
  'rejected',
  'spool-write-failed',
]

/** Seconds: from a local disk write (milliseconds) to a slow upload near SINK_TIMEOUT. */
const WRITE_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** The source sidelog has today; its metrics carry the same labels as a sink's. */
const HTTP_SOURCE = { component_kind: 'source', component_id: 'http' } as const
const COMPONENT = ['component_kind', 'component_id'] as const

/** What the collectors read at scrape time. */
export interface MetricsSources {
  readonly pipeline: Pipeline
  /** Requests refused by error code: the same record /health shows as `refused_requests`. */
  readonly refused: Readonly<Record<string, number>>
  readonly spool?: Spool
}

export interface Metrics {
  readonly registry: Registry
  /** Given to the Pipeline: bytes sent and dead letters by class, counted where /health's counters are. */
  readonly observer: PipelineObserver
  /** The sink, with each write attempt timed into the write-duration histogram. */
  instrument<S extends Sink>(sink: S): S
  /** Connects the collectors to the running pipeline; until then they report nothing. */
  bind(sources: MetricsSources): void
  /** The exposition text: sidelog's metrics, then the process's. */
  render(): Promise<string>
  readonly contentType: string
}

type Settings = Pick<Config, 'BUFFER_MAX_EVENTS' | 'BUFFER_MAX_BYTES' | 'SPOOL_DIR' | 'SPOOL_MAX_BYTES'>
type SinkSnapshot = Record<string, SinkStats & Record<string, unknown>>

let processRegistry: Registry | undefined
/**
 * prom-client's process and Node.js metrics (CPU, memory, heap, event loop lag, GC) are one per process: collected
 * once however many apps a process builds (tests build many), unprefixed so that stock dashboards read them.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry()
    collectDefaultMetrics({ register: processRegistry })
  }
  return processRegistry
}

const sinkLabels = (sink: string) => ({ component_kind: 'sink', component_id: sink })

export function createMetrics(settings: Settings): Metrics {
  const registry = new Registry()
  let sources: MetricsSources | undefined
  // One pipeline.stats() per scrape, shared by every collector of that scrape.
  let snapshot: SinkSnapshot | undefined
  const sinkStats = (): SinkSnapshot => snapshot ?? sources?.pipeline.stats() ?? {}
  const registers = [registry]

  /** A counter or gauge whose per-sink value is one field of pipeline.stats(). */
  function fromSinkStats(
    kind: 'counter' | 'gauge',
    name: string,
    help: string,
    value: (stats: SinkStats & Record<string, unknown>) => number | undefined,
  ): void {
    const collect = (metric: Counter<string> | Gauge<string>) => {
      metric.reset()
      for (const [sink, stats] of Object.entries(sinkStats())) {
        const v = value(stats)
        if (v === undefined) continue
        if (metric instanceof Counter) metric.inc(sinkLabels(sink), v)
        else metric.set(sinkLabels(sink), v)
      }
    }
    if (kind === 'counter') {
      new Counter({
        name,
        help,
        labelNames: COMPONENT,
        registers,
        collect: function () {
          collect(this)
        },
      })
    } else {
      new Gauge({
        name,
        help,
        labelNames: COMPONENT,
        registers,
        collect: function () {
          collect(this)
        },
      })
    }
  }
  const numberOf = (key: string) => (stats: Record<string, unknown>) =>
    typeof stats[key] === 'number' ? (stats[key] as number) : undefined

  // The source.
  new Counter({
    name: 'sidelog_component_received_events_total',
    help: 'Entries accepted (answered 202; /health lines_processed).',
    labelNames: COMPONENT,
    registers,
    collect() {
      this.reset()
      if (sources) this.inc(HTTP_SOURCE, sources.pipeline.acceptedEvents)
    },
  })
  new Counter({
    name: 'sidelog_component_refused_requests_total',
    help: 'Requests answered with an error, by its code (BUFFER_FULL and SPOOL_FULL are the 429s; /health refused_requests).',
    labelNames: [...COMPONENT, 'error_code'],
    registers,
    collect() {
      this.reset()
      for (const [code, n] of Object.entries(sources?.refused ?? {})) {
        this.inc({ ...HTTP_SOURCE, error_code: code }, n)
      }
    },
  })
  new Gauge({
    name: 'sidelog_accepting',
    help: '1 while sidelog takes entries, 0 once it is draining for shutdown.',
    registers,
    collect() {
      this.set(sources?.pipeline.isAccepting === false ? 0 : 1)
    },
  })

  // The sinks: what /health shows per sink.
  fromSinkStats(
    'counter',
    'sidelog_component_sent_events_total',
    'Entries delivered (/health delivered_events).',
    (s) => s.delivered_events,
  )
  fromSinkStats(
    'counter',
    'sidelog_component_sent_batches_total',
    'Batches whose write finished, delivered whole or with rows the destination refused (/health delivered_batches).',
    (s) => s.delivered_batches,
  )
  fromSinkStats(
    'counter',
    'sidelog_component_retries_total',
    'Write attempts that failed and were retried (/health retries).',
    (s) => s.retries,
  )
  fromSinkStats(
    'counter',
    'sidelog_component_dead_letter_failed_events_total',
    'Entries neither delivered nor written to the dead-letter store: they are only in a fatal log line (/health dead_letter_failed_events).',
    (s) => s.dead_letter_failed_events,
  )
  fromSinkStats(
    'gauge',
    'sidelog_component_healthy',
    '1 while the sink is healthy, 0 from a failed attempt until the next successful write (/health healthy).',
    (s) => (s.healthy ? 1 : 0),
  )
  fromSinkStats(
    'gauge',
    'sidelog_component_last_sent_timestamp_seconds',
    'When the sink last delivered a batch, in Unix seconds (absent before the first): alert on time() minus this.',
    (s) => (s.last_delivery_at ? Date.parse(s.last_delivery_at) / 1000 : undefined),
  )
  fromSinkStats(
    'gauge',
    'sidelog_buffer_events',
    'Entries the sink holds in memory: open, queued and in-flight batches (/health buffered_events).',
    (s) => s.buffered_events,
  )
  fromSinkStats(
    'gauge',
    'sidelog_buffer_byte_size',
    'Bytes the sink holds in memory (/health buffered_bytes).',
    (s) => s.buffered_bytes,
  )
  fromSinkStats('gauge', 'sidelog_buffer_max_events', 'BUFFER_MAX_EVENTS: past it, 429.', () =>
    sources ? settings.BUFFER_MAX_EVENTS : undefined,
  )
  fromSinkStats('gauge', 'sidelog_buffer_max_byte_size', 'BUFFER_MAX_BYTES: past it, 429.', () =>
    sources ? settings.BUFFER_MAX_BYTES : undefined,
  )
  // The bigquery sink's own counters (/health shows them under the sink).
  fromSinkStats(
    'counter',
    'sidelog_bigquery_dropped_fields_total',
    'Fields dropped because the table has no column for them and no JSON column (/health dropped_fields).',
    numberOf('dropped_fields'),
  )
  fromSinkStats(
    'counter',
    'sidelog_bigquery_load_staged_objects_total',
    'Load mode: objects staged in the bucket for a load job (/health staged_objects).',
    numberOf('staged_objects'),
  )
  fromSinkStats(
    'gauge',
    'sidelog_bigquery_load_pending_objects',
    'Load mode: staged objects not yet in a finished load job (/health pending_objects).',
    numberOf('pending_objects'),
  )
  fromSinkStats(
    'counter',
    'sidelog_bigquery_load_jobs_total',
    'Load mode: load jobs that finished loaded (/health loaded_jobs).',
    numberOf('loaded_jobs'),
  )
  fromSinkStats(
    'counter',
    'sidelog_bigquery_load_failed_jobs_total',
    'Load mode: load jobs that failed for good; their objects are named in the dead-letter store (/health failed_jobs).',
    numberOf('failed_jobs'),
  )
  fromSinkStats(
    'counter',
    'sidelog_bigquery_load_rows_total',
    'Load mode: rows BigQuery reported loaded (/health loaded_rows).',
    numberOf('loaded_rows'),
  )

  if (settings.SPOOL_DIR) {
    fromSinkStats(
      'gauge',
      'sidelog_spool_lag_events',
      'Entries in the spool the sink has not read into memory yet: how far it is behind (/health spooled_events).',
      numberOf('spooled_events'),
    )
    new Gauge({
      name: 'sidelog_spool_byte_size',
      help: 'Bytes the disk spool uses (segments not yet done by every sink).',
      registers,
      collect() {
        if (sources?.spool) this.set(sources.spool.bytes)
      },
    })
    new Gauge({
      name: 'sidelog_spool_max_byte_size',
      help: 'SPOOL_MAX_BYTES: past it, 429 SPOOL_FULL.',
      registers,
    }).set(settings.SPOOL_MAX_BYTES)
  }

  // Counted as it happens: /health has no number for these.
  const sentBytes = new Counter({
    name: 'sidelog_component_sent_event_bytes_total',
    help: 'Bytes of JSONL delivered, before any compression.',
    labelNames: COMPONENT,
    registers,
  })
  const deadLettered = new Counter({
    name: 'sidelog_component_dead_lettered_events_total',
    help: 'Entries written to the dead-letter store, by reason: permanent, budget-exhausted (RETRY_MAX_ELAPSED), shutdown, rejected (by the destination, row by row), spool-write-failed. The sum is /health dead_lettered_events.',
    labelNames: [...COMPONENT, 'reason'],
    registers,
  })
  const writeDuration = new Histogram({
    name: 'sidelog_component_write_duration_seconds',
    help: 'Time of one write attempt of a batch to the destination, by outcome (ok or error).',
    labelNames: [...COMPONENT, 'outcome'],
    buckets: WRITE_DURATION_BUCKETS,
    registers,
  })

  const observer: PipelineObserver = {
    onDelivered(sink, _events, bytes) {
      sentBytes.inc(sinkLabels(sink), bytes)
    },
    onDeadLettered(sink, counts) {
      for (const [reason, n] of Object.entries(counts)) {
        if (n > 0) deadLettered.inc({ ...sinkLabels(sink), reason }, n)
      }
    },
  }

  return {
    registry,
    observer,
    contentType: registry.contentType,
    instrument(sink) {
      const labels = sinkLabels(sink.name)
      sentBytes.inc(labels, 0)
      for (const reason of DEAD_LETTER_CLASSES) deadLettered.inc({ ...labels, reason }, 0)
      writeDuration.zero({ ...labels, outcome: 'ok' })
      writeDuration.zero({ ...labels, outcome: 'error' })
      const write: Sink['write'] = async (batch, options) => {
        const startedAt = performance.now()
        let outcome = 'error'
        try {
          await sink.write(batch, options)
          outcome = 'ok'
        } finally {
          writeDuration.observe({ ...labels, outcome }, (performance.now() - startedAt) / 1000)
        }
      }
      // Everything else (startupError, stats, flush, close, whatever the contract grows) is the sink's own.
      return new Proxy(sink, {
        get(target, property) {
          if (property === 'write') return write
          const value = Reflect.get(target, property, target)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
    },
    bind(bound) {
      sources = bound
    },
    async render() {
      snapshot = sources?.pipeline.stats()
      try {
        return `${await registry.metrics()}\n${await processMetrics().metrics()}`
      } finally {
        snapshot = undefined
      }
    },
  }
}
