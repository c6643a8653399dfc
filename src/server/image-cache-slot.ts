import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ImageCache } from '../image-cache.ts';
import type { Logger } from '../log.ts';

interface Generation {
  imageCache: ImageCache;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  inFlight: number;
  retired: boolean;
  /** Resolves once a retired generation has no request left and is closed. */
  closed?: Promise<void>;
  drained?: () => void;
}

/**
 * Holds the ImageCache that serves new requests. A reload swaps in a new one;
 * requests already running finish on the one they started with, which is
 * closed once its last request is done.
 */
export class ImageCacheSlot {
  #current: Generation;
  readonly #retiring = new Set<Generation>();
  readonly #logger: Logger;

  constructor(imageCache: ImageCache, logger: Logger) {
    this.#current = generationOf(imageCache);
    this.#logger = logger;
  }

  get current(): ImageCache {
    return this.#current.imageCache;
  }

  /** Serves one request on the current generation, counting it until the response is done. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const generation = this.#current;
    generation.inFlight += 1;
    let done = false;
    res.once('close', () => {
      if (done) return;
      done = true;
      generation.inFlight -= 1;
      if (generation.retired && generation.inFlight === 0) generation.drained?.();
    });
    generation.handler(req, res);
  }

  /** New requests go to `next`; the previous ImageCache closes when its requests are done (the promise says when). */
  swap(next: ImageCache): Promise<void> {
    const old = this.#current;
    this.#current = generationOf(next);
    return this.#retire(old);
  }

  /** Closes the current generation (after its requests) and any still retiring. */
  async close(): Promise<void> {
    void this.#retire(this.#current);
    await Promise.all([...this.#retiring].map((g) => g.closed ?? Promise.resolve()));
  }

  #retire(generation: Generation): Promise<void> {
    if (generation.retired) return generation.closed ?? Promise.resolve();
    generation.retired = true;
    this.#retiring.add(generation);
    const drained = new Promise<void>((resolve) => {
      generation.drained = resolve;
      if (generation.inFlight === 0) resolve();
    });
    generation.closed = drained
      .then(() => generation.imageCache.close())
      .catch((err: unknown) => { this.#logger.warn({ err }, 'closing a retired image cache failed'); })
      .finally(() => this.#retiring.delete(generation));
    return generation.closed;
  }
}

function generationOf(imageCache: ImageCache): Generation {
  return { imageCache, handler: imageCache.handler(), inFlight: 0, retired: false };
}
