import { loadConfig, redactConfig } from '../config/index.ts';
import { parse, UsageError } from './args.ts';

/** Prints the effective configuration as JSON, secrets redacted; a bad setting throws a ConfigError (exit 1). */
export function configCheckCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, { config: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const { config, configFile } = loadConfig({ configFile: values.config });
  process.stderr.write(`config file: ${configFile ?? '(none: embedded defaults)'}\n`);
  process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  return 0;
}
