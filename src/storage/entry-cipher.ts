import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

export const KEY_ID_LENGTH = 8;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;

interface RingKey {
  id: Buffer;
  key: Buffer;
}

/**
 * AES-256-GCM for entries at rest. The configured secrets are stretched with
 * HKDF into an encryption key and a public key id, so the id written in each
 * file says which key to use (rotation: the first key encrypts, every key
 * decrypts) without revealing anything about the key.
 */
export class EntryCipher {
  readonly #keys: RingKey[];

  constructor(secrets: readonly Buffer[]) {
    if (secrets.length === 0) throw new Error('EntryCipher needs at least one key');
    this.#keys = secrets.map((secret) => ({
      id: Buffer.from(hkdfSync('sha256', secret, 'fastimagecache', 'storage key id v1', KEY_ID_LENGTH)),
      key: Buffer.from(hkdfSync('sha256', secret, 'fastimagecache', 'storage encryption v1', 32)),
    }));
  }

  /** Id of the key new entries are encrypted with. */
  get currentKeyId(): Buffer {
    return (this.#keys[0] as RingKey).id;
  }

  /** Encrypts with the current key and a fresh random nonce. */
  seal(plain: Buffer, aad: Buffer): { nonce: Buffer; tag: Buffer; ciphertext: Buffer } {
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', (this.#keys[0] as RingKey).key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
    return { nonce, tag: cipher.getAuthTag(), ciphertext };
  }

  /** The plaintext, or undefined when the key id is unknown or authentication fails (tampered or wrong key). */
  open(keyId: Buffer, nonce: Buffer, tag: Buffer, ciphertext: Buffer, aad: Buffer): Buffer | undefined {
    const ring = this.#keys.find((k) => k.id.equals(keyId));
    if (ring === undefined || nonce.length !== NONCE_LENGTH || tag.length !== TAG_LENGTH) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', ring.key, nonce, { authTagLength: TAG_LENGTH });
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch {
      return undefined;
    }
  }
}
