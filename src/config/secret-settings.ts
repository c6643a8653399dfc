/**
 * Settings that are secrets: never taken from a config file or a flag, never
 * printed. Apart from the schema, so redacting needs no schema library.
 */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set<string>(['key', 'admin.token', 'storageKey']);
