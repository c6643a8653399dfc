/**
 * Shared pieces of the cache lifecycle tests: a clock that moves only when
 * told, the real loader (downloader + image check) against a local origin,
 * and storage wrappers that count or fail calls at the storage boundary.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Loader } from '../../src/cache/cache-manager.ts';
import { createDownloader } from '../../src/download/downloader.ts';
import { verifyImage } from '../../src/image/verify.ts';
import { createLogger, silentLogger, type Logger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import type { EntryId, PreparedEntry, StorageBackend } from '../../src/storage/types.ts';
import { loopbackPolicy } from '../helpers/download-policy.ts';

export interface ManualClock {
  now: () => number;
  advance(ms: number): void;
}

export function manualClock(start = Date.UTC(2030, 0, 1)): ManualClock {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** The loader the composition root builds (fetch, 304 pass-through, real image check), allowed to reach 127.0.0.1. */
export function realLoader(logger: Logger = silentLogger()): { loader: Loader; close: () => Promise<void> } {
  const policy = loopbackPolicy({ maxBytes: 5 * 1024 * 1024 });
  const downloader = createDownloader(policy, logger);
  const loader: Loader = async ({ url, conditional }) => {
    const fetched = await downloader.fetch({ url: new URL(url), ...(conditional ? { conditional } : {}) });
    if (fetched.status === 304) return { status: 304, origin: fetched.headers };
    const image = await verifyImage(fetched.body);
    return { status: 200, body: fetched.body, contentType: image.mime, origin: fetched.headers };
  };
  return { loader, close: () => downloader.close() };
}

/** A fresh FsStorage in a private temp directory, and its removal. */
export async function tempStorage(logger: Logger = silentLogger()): Promise<{ storage: FsStorage; base: string; cleanup: () => Promise<void> }> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-lifecycle-'));
  const storage = await FsStorage.open({ dir: path.join(base, 'cache'), logger });
  return { storage, base, cleanup: () => fs.rm(base, { recursive: true, force: true }) };
}

/** Counts calls through to a real backend; `failWrites` makes writes throw an errno error (ENOSPC, EROFS…) at the boundary. */
export class ProbedStorage implements StorageBackend {
  readonly inner: StorageBackend;
  reads = 0;
  writes = 0;
  failWrites: string | undefined;
  /** Writes wait for this before reaching the disk (a slow disk, controlled by the test). */
  holdWrites: Promise<void> | undefined;
  /** Resolves whenever a write is started (the id written). */
  onWrite: ((id: EntryId) => void) | undefined;
  /** Reads, once done, wait for this before they return (a read still in flight while something else happens). */
  holdReads: Promise<void> | undefined;
  /** Removals of a group or of everything wait for this before reaching the disk (a slow disk, controlled by the test). */
  holdRemovals: Promise<void> | undefined;
  /** Called whenever a removal of a group (its name) or of everything (undefined) is started. */
  onRemoval: ((group: string | undefined) => void) | undefined;

  constructor(inner: StorageBackend) {
    this.inner = inner;
  }

  entryId(sourceKey: string, entryKey: string): EntryId {
    return this.inner.entryId(sourceKey, entryKey);
  }
  groupOf(id: EntryId): string {
    return this.inner.groupOf(id);
  }
  async read(id: EntryId, options?: Parameters<StorageBackend['read']>[1]) {
    this.reads += 1;
    const entry = await this.inner.read(id, options);
    if (this.holdReads !== undefined) await this.holdReads;
    return entry;
  }
  readMeta(id: EntryId) {
    return this.inner.readMeta(id);
  }
  prepare(entry: Parameters<StorageBackend['prepare']>[0]) {
    return this.inner.prepare(entry);
  }
  async write(id: EntryId, entry: PreparedEntry): Promise<void> {
    this.writes += 1;
    this.onWrite?.(id);
    if (this.holdWrites !== undefined) await this.holdWrites;
    if (this.failWrites !== undefined) {
      throw Object.assign(new Error(`${this.failWrites}: simulated at the storage boundary`), { code: this.failWrites });
    }
    return this.inner.write(id, entry);
  }
  delete(id: EntryId) {
    return this.inner.delete(id);
  }
  listGroup(group: string) {
    return this.inner.listGroup(group);
  }
  async deleteGroup(group: string) {
    this.onRemoval?.(group);
    if (this.holdRemovals !== undefined) await this.holdRemovals;
    return this.inner.deleteGroup(group);
  }
  scan() {
    return this.inner.scan();
  }
  async clear() {
    this.onRemoval?.(undefined);
    if (this.holdRemovals !== undefined) await this.holdRemovals;
    return this.inner.clear();
  }
  stats() {
    return this.inner.stats();
  }
  close() {
    return this.inner.close();
  }
}

/** A logger that keeps its JSON lines. */
export function recordingLogger(level: 'warn' | 'info' | 'debug' = 'warn'): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const logger = createLogger(level, { write: (s: string) => void chunks.push(s) });
  return { logger, lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>) };
}

export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}
