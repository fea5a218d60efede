// The otlp source's module: POST /v1/logs, the OTLP/HTTP logs receiver (receiver.ts), on unless OTLP_ENABLED=false.
import { defineSource } from '../source.js'
import { otlpSettings } from './settings.js'

export const otlpSource = defineSource({
  kind: 'otlp',
  summary: 'POST /v1/logs: OTLP/HTTP logs, protobuf or JSON, optionally gzip, on the same listener as /logs.',
  settings: otlpSettings,
  enabled: (settings) => settings.OTLP_ENABLED,
  async create(context) {
    return (await import('./receiver.js')).createOtlpReceiver(context)
  },
})
