// The metrics whose numbers /health already has, read at scrape time from the pipeline's own counters (and the
// spool's size), so that /metrics and /health always agree.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Config } from '../config.js'
import type { Pipeline, SinkStats } from '../pipeline/index.js'
import type { Spool } from '../spool/index.js'
import { COMPONENT, HTTP_SOURCE, sinkLabels } from './labels.js'

/** What the collectors read at scrape time. */
export interface MetricsSources {
  readonly pipeline: Pipeline
  /** Requests refused by error code: the same record /health shows as `refused_requests`. */
  readonly refused: Readonly<Record<string, number>>
  /** Bytes of /logs bodies held by requests in flight: /health's `inflight_bytes`. */
  readonly inflightBytes?: () => number
  readonly spool?: Spool
}

export type MetricsSettings = Pick<
  Config,
  'BUFFER_MAX_EVENTS' | 'BUFFER_MAX_BYTES' | 'SPOOL_DIR' | 'SPOOL_MAX_BYTES'
>
export type SinkSnapshot = Record<string, SinkStats & Record<string, unknown>>

export interface Scrape {
  /** What the collectors read; undefined until the running app is bound, and then they report nothing. */
  sources(): MetricsSources | undefined
  /** pipeline.stats(), taken once per scrape and shared by every collector of it. */
  sinkStats(): SinkSnapshot
}

export function registerHealthCollectors(
  registry: Registry,
  settings: MetricsSettings,
  scrape: Scrape,
): void {
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
      for (const [sink, stats] of Object.entries(scrape.sinkStats())) {
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
      const sources = scrape.sources()
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
      for (const [code, n] of Object.entries(scrape.sources()?.refused ?? {})) {
        this.inc({ ...HTTP_SOURCE, error_code: code }, n)
      }
    },
  })
  new Gauge({
    name: 'sidelog_component_inflight_bytes',
    help: 'Bytes of /logs bodies being read, or read and waiting for their answer; MAX_INFLIGHT_BYTES bounds them, and past it requests get 429 INFLIGHT_FULL (/health inflight_bytes).',
    labelNames: COMPONENT,
    registers,
    collect() {
      const inflight = scrape.sources()?.inflightBytes
      if (inflight) this.set(HTTP_SOURCE, inflight())
    },
  })
  new Gauge({
    name: 'sidelog_accepting',
    help: '1 while sidelog takes entries, 0 once it is draining for shutdown.',
    registers,
    collect() {
      this.set(scrape.sources()?.pipeline.isAccepting === false ? 0 : 1)
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
    scrape.sources() ? settings.BUFFER_MAX_EVENTS : undefined,
  )
  fromSinkStats('gauge', 'sidelog_buffer_max_byte_size', 'BUFFER_MAX_BYTES: past it, 429.', () =>
    scrape.sources() ? settings.BUFFER_MAX_BYTES : undefined,
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
        const spool = scrape.sources()?.spool
        if (spool) this.set(spool.bytes)
      },
    })
    new Gauge({
      name: 'sidelog_spool_max_byte_size',
      help: 'SPOOL_MAX_BYTES: past it, 429 SPOOL_FULL.',
      registers,
    }).set(settings.SPOOL_MAX_BYTES)
  }
}
