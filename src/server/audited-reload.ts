import type { AuditLog } from './audit-log.ts';
import type { Metrics } from './metrics.ts';
import type { ReloadOutcome } from './proxy-service.ts';

// Apart from admin.ts so that a process without an admin listener does not load it to handle SIGHUP.

/** A reload, with its outcome written to the audit log and counted (SIGHUP and POST /admin/reload alike). */
export async function auditedReload(
  reload: () => Promise<ReloadOutcome>,
  actor: string,
  audit: AuditLog,
  metrics: Metrics,
): Promise<ReloadOutcome> {
  let outcome: ReloadOutcome;
  try {
    outcome = await reload();
  } catch (err) {
    outcome = { outcome: 'refused', reason: err instanceof Error ? err.message : String(err) };
  }
  metrics.configReloads.inc({ outcome: outcome.outcome });
  await audit.record(
    outcome.outcome === 'applied'
      ? { actor, action: 'reload', outcome: 'applied', changes: outcome.changes, restartNeeded: outcome.restartNeeded }
      : { actor, action: 'reload', outcome: 'refused', reason: outcome.reason },
  );
  return outcome;
}
