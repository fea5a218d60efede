// The metrics /health has no number for, counted as they happen: bytes delivered and entries dead-lettered by reason
// (told by the pipeline's observer), and the time of each write attempt (timed around the sink's write).
import { performance } from 'node:perf_hooks'
import { Counter, Histogram, type Registry } from 'prom-client'
import type { DeadLetterClass, PipelineObserver } from '../pipeline/index.js'
import type { Sink } from '../sinks/sink.js'
import { COMPONENT, sinkLabels } from './labels.js'

/**
 * Every class the pipeline dead-letters by (a class missing here does not compile); each sink's counter starts at 0
 * for each, so rate() sees the first.
 */
const DEAD_LETTER_CLASSES = Object.keys({
  permanent: true,
  'budget-exhausted': true,
  shutdown: true,
  rejected: true,
  'spool-write-failed': true,
} satisfies Record<DeadLetterClass, true>)

/** Seconds: from a local disk write (milliseconds) to a slow upload near SINK_TIMEOUT. */
const WRITE_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export interface DeliveryMetrics {
  /** Given to the Pipeline: bytes sent and dead letters by class, counted where /health's counters are. */
  readonly observer: PipelineObserver
  /** The sink, with each write attempt timed into the write-duration histogram. */
  instrument<S extends Sink>(sink: S): S
}

export function createDeliveryMetrics(registry: Registry): DeliveryMetrics {
  const registers = [registry]
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
    observer,
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
  }
}
