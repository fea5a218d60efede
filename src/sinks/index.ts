// The registry of sinks: adding a sink is one new file and one line here (and its name in config's SINK_KINDS).
import type { SinkKind } from '../config.js'
import { createBigQuerySink } from './bigquery.js'
import { createFileSink } from './file.js'
import { createGcsSink } from './gcs.js'
import type { SinkFactory } from './sink.js'
import { createStdoutSink } from './stdout.js'

export const sinkFactories = {
  file: createFileSink,
  stdout: createStdoutSink,
  gcs: createGcsSink,
  bigquery: createBigQuerySink,
} satisfies Record<SinkKind, SinkFactory>
