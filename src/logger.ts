// createLogger(): sidelog's own logs, on stderr. In Cloud Logging's structured format where that is where they go
// (severity, message, time; error stacks in stack_trace, error lines marked for Error Reporting), pino's plain JSON
// elsewhere.
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino'
import { type Config, ConfigSchema } from './config.js'

export type LogFormat = 'gcp' | 'json'

/** Cloud Logging's severities for pino's levels (https://cloud.google.com/logging/docs/structured-logging). */
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
}

/** Marks an entry as an error event for Error Reporting, with or without a stack trace. */
export const REPORTED_ERROR_EVENT =
  'type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent'

const ERROR_LEVEL = 50

/** LOG_FORMAT=auto is gcp where K_SERVICE is set: Cloud Run and Knative set it, and the Kubernetes manifest does. */
export function resolveLogFormat(config: Pick<Config, 'LOG_FORMAT' | 'K_SERVICE'>): LogFormat {
  if (config.LOG_FORMAT !== 'auto') return config.LOG_FORMAT
  return config.K_SERVICE !== ConfigSchema.properties.K_SERVICE.default ? 'gcp' : 'json'
}

/**
 * pino options for Cloud Logging. The same shape as @google-cloud/pino-logging-gcp-config, without its dependency on
 * @google-cloud/logging (gRPC and about 190 packages) and its start-up calls to find the project.
 */
export function gcpLoggerOptions(): LoggerOptions {
  return {
    messageKey: 'message',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      // pino's numeric level stays beside the severity, so pino's own tools still read the lines.
      level: (label, level) => ({ severity: SEVERITY[label] ?? 'DEFAULT', level }),
    },
    mixin(fields: object, level: number) {
      const extra: Record<string, unknown> = {}
      const { err } = fields as { err?: unknown }
      if (err instanceof Error && err.stack) extra.stack_trace = err.stack
      if (level >= ERROR_LEVEL) {
        // Error Reporting groups these by service and message, stack trace or not.
        extra['@type'] = REPORTED_ERROR_EVENT
        extra.serviceContext = { service: 'sidelog' }
      }
      return extra
    },
  }
}

/**
 * The process's logger. Writes synchronously by default, so that the exit line is out before close-with-grace calls
 * process.exit.
 */
export function createLogger(
  config: Pick<Config, 'LOG_FORMAT' | 'LOG_LEVEL' | 'K_SERVICE'>,
  destination: DestinationStream = pino.destination({ dest: 2, sync: true }),
): Logger {
  const base: LoggerOptions = { level: config.LOG_LEVEL, base: { service: 'sidelog' } }
  const format = resolveLogFormat(config)
  return pino(format === 'gcp' ? { ...base, ...gcpLoggerOptions() } : base, destination)
}
