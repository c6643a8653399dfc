import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

/** The logger every module takes; pino's, so child loggers carry request ids. */
export type Logger = PinoLogger;

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Keys whose values never reach a log line, wherever they appear. */
const REDACT_PATHS = [
  'key',
  'keys',
  'keyFile',
  'token',
  'signature',
  'authorization',
  'password',
  'secret',
  '*.key',
  '*.keys',
  '*.token',
  '*.signature',
  '*.authorization',
  '*.password',
  '*.secret',
  'req.headers.authorization',
  'req.headers.cookie',
  // Per-origin credentials and any header set carried into a log line.
  'credentials',
  '*.credentials',
  'headers.authorization',
  '*.headers.authorization',
  'headers.cookie',
  '*.headers.cookie',
];

export function createLogger(level: LogLevel = 'info', destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { name: 'fastimagecache' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything: the library default when the app passes none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
