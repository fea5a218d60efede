// The Prometheus metrics behind /metrics (admin.ts serves the route): one registry per app holding the metrics whose
// numbers /health has, read at scrape time (health-collectors.ts), and those counted as they happen
// (delivery-metrics.ts); the process's own metrics follow them in the exposition.
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { PipelineObserver } from '../pipeline/index.js'
import type { Sink } from '../sinks/sink.js'
import { createDeliveryMetrics } from './delivery-metrics.js'
import {
  type MetricsSettings,
  type MetricsSources,
  registerHealthCollectors,
  type SinkSnapshot,
} from './health-collectors.js'

export interface Metrics {
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

export function createMetrics(settings: MetricsSettings): Metrics {
  const registry = new Registry()
  let sources: MetricsSources | undefined
  // One pipeline.stats() per scrape, shared by every collector of that scrape.
  let snapshot: SinkSnapshot | undefined
  // The exposition lists metrics in the order they were registered: /health's numbers first.
  registerHealthCollectors(registry, settings, {
    sources: () => sources,
    sinkStats: () => snapshot ?? sources?.pipeline.stats() ?? {},
  })
  const { observer, instrument } = createDeliveryMetrics(registry)
  return {
    observer,
    instrument,
    contentType: registry.contentType,
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
