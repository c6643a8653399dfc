import { openCacheStorage } from '../cache-config.ts';
import { loadConfig, type Config } from '../config/index.ts';
import { silentLogger } from '../log.ts';
import type { FsStorage } from '../storage/fs-storage.ts';
import { RemovalJournal } from '../storage/removal-journal.ts';
import type { EntryId } from '../storage/types.ts';

/** The cache directory of the effective configuration, for the maintenance commands. */
export async function openConfiguredCache(configFile: string | undefined): Promise<{ config: Config; storage: FsStorage }> {
  const { config } = loadConfig({ configFile });
  const storage = await openCacheStorage(config, silentLogger());
  return { config, storage };
}

/** Tells running servers on this directory what was removed, so their memory tiers and indexes forget it. */
export async function announceRemoved(storage: FsStorage, removed: EntryId[] | 'all'): Promise<void> {
  await new RemovalJournal(storage.dir).announce(removed);
}
