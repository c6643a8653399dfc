import { loadConfig } from '../config/index.ts';
import { ConfigError } from '../errors.ts';
import { parse, UsageError } from './args.ts';
import { checkDeployment, SEVERITIES, type Finding } from './doctor-checks.ts';

export interface DoctorReport {
  /** The config file read, if any. */
  configFile: string | undefined;
  findings: Finding[];
  /** True when any finding is high: the deployment should not go out. */
  failed: boolean;
}

export interface DiagnoseOptions {
  configFile?: string | undefined;
  env?: Record<string, string | undefined>;
  /** The uid ownership is judged against (default: the current process's). */
  uid?: number | undefined;
}

/** Loads the configuration as `serve` would and checks the deployment it describes. Reads only. */
export function diagnose(options: DiagnoseOptions = {}): DoctorReport {
  let loaded;
  try {
    loaded = loadConfig({ configFile: options.configFile, ...(options.env ? { env: options.env } : {}) });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const findings: Finding[] = [
      { id: 'config-invalid', severity: 'high', message: `the configuration is invalid: ${err.message}`, fix: 'fix the setting named (fastimagecache config check)' },
    ];
    return { configFile: options.configFile, findings, failed: true };
  }
  const uid = 'uid' in options ? options.uid : process.getuid?.();
  const findings = checkDeployment({ config: loaded.config, uid });
  return { configFile: loaded.configFile, findings, failed: findings.some((f) => f.severity === 'high') };
}

export function formatReport(report: DoctorReport): string {
  const lines = [`config file: ${report.configFile ?? '(none: defaults and environment)'}`];
  if (report.findings.length === 0) lines.push('no findings: every check passed');
  for (const f of report.findings) {
    lines.push(`${f.severity.toUpperCase().padEnd(6)}  ${f.id}: ${f.message}`, `        fix: ${f.fix}`);
  }
  const counts = SEVERITIES.map((s) => `${report.findings.filter((f) => f.severity === s).length} ${s}`).join(', ');
  lines.push(`${counts}${report.failed ? ': high-severity findings, exit 1' : ''}`);
  return `${lines.join('\n')}\n`;
}

/** `fastimagecache doctor [--config FILE] [--json]`: exit 1 on any high-severity finding, so it can gate a deploy. */
export function doctorCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean', default: false } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const report = diagnose({ configFile: values.config });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.failed ? 1 : 0;
}
