import { constants } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log.ts';

/** One audited event. Settings in `changes` are already redacted by the caller. */
export interface AuditEntry {
  /** Who: a client address, or `signal:SIGHUP`. */
  actor: string;
  action: 'reload' | 'purge' | 'admin_auth_failure';
  outcome: 'applied' | 'refused' | 'ok' | 'failed' | 'denied' | 'locked_out';
  /** reload: changed settings, secrets shown as [redacted]. */
  changes?: ReadonlyArray<{ setting: string; from: unknown; to: unknown }>;
  /** reload: changed settings that take effect only after a restart. */
  restartNeeded?: readonly string[];
  /** purge: what was purged (the source URL without its query, or `all`). */
  target?: string;
  /** Why it was refused or failed. */
  reason?: string;
}

/**
 * Appends audit entries as JSON lines to a file only its owner can read
 * (created 0600, and narrowed to 0600 if it already existed wider). Writes are
 * serialized, so lines never interleave; a failure to write is logged, never
 * thrown at the request that caused it.
 */
export class AuditLog {
  readonly path: string;
  readonly #logger: Logger;
  readonly #now: () => Date;
  #file: Promise<FileHandle> | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(path: string, logger: Logger, now: () => Date = () => new Date()) {
    this.path = path;
    this.#logger = logger;
    this.#now = now;
  }

  record(entry: AuditEntry): Promise<void> {
    const line = `${JSON.stringify({ time: this.#now().toISOString(), ...entry })}\n`;
    this.#queue = this.#queue.then(async () => {
      try {
        const file = await this.#open();
        await file.appendFile(line, 'utf8');
      } catch (err) {
        this.#logger.error({ err, auditLog: this.path }, 'could not write the audit log');
      }
    });
    return this.#queue;
  }

  async close(): Promise<void> {
    await this.#queue;
    const file = this.#file;
    this.#file = undefined;
    if (file) await (await file).close().catch(() => {});
  }

  #open(): Promise<FileHandle> {
    this.#file ??= (async () => {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      const file = await open(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      await file.chmod(0o600);
      return file;
    })();
    // A failed open is retried on the next entry rather than remembered.
    this.#file.catch(() => {
      this.#file = undefined;
    });
    return this.#file;
  }
}

/** A source URL as it may appear in the audit log: its query (which may hold credentials) hidden. */
export function auditableUrl(sourceUrl: string): string {
  try {
    const url = new URL(sourceUrl);
    url.username = '';
    url.password = '';
    const hidden = url.search !== '' ? '?[redacted]' : '';
    url.search = '';
    url.hash = '';
    return `${url.href}${hidden}`;
  } catch {
    return '[unparsable URL]';
  }
}
