import { resolveAdminToken } from '../config/admin-token.ts';
import type { Config } from '../config/schema.ts';
import { resolveSigningKeys } from '../config/secrets.ts';
import { resolveOriginCredentials } from '../config/origin-credentials.ts';

// Apart from proxy-service.ts so that the cluster primary can check a reload without loading the image pipeline.

/** Loads a configuration and checks everything a reload depends on, so a bad one is refused before anything changes. */
export function validateForReload(load: () => Config, env: Record<string, string | undefined>): Config {
  const config = load();
  resolveSigningKeys(config);
  resolveOriginCredentials(config, env);
  resolveAdminToken(config);
  return config;
}
