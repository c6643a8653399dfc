import type { FillLease, FillVerdict, LeaseAnswer, LeaseOwnerView } from '../cache/fill-lease.ts';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { IpcRpc, RpcHandler } from './ipc-rpc.ts';

/** Time for the primary's answer on top of the wait it was asked for (it always answers by then). */
const ANSWER_MARGIN_MS = 5_000;
const CALL_TIMEOUT_MS = 10_000;

export interface RemoteFillLeaseOptions {
  /** Longest a worker waits for another worker's fill before fetching by itself, ms. */
  maxWaitMs: number;
}

/**
 * The fill leases of the cluster primary, as a worker sees them: acquire and
 * release go over IPC, and a lease this worker leads is renewed in the
 * background until released, so it outlives a slow origin but not this
 * worker (the primary also hands it on at once when the worker exits).
 */
export class RemoteFillLease implements FillLease {
  readonly #rpc: IpcRpc;
  readonly #logger: Logger;
  readonly #maxWaitMs: number;
  readonly #renewals = new Map<number, NodeJS.Timeout>();

  constructor(rpc: IpcRpc, logger: Logger, opts: RemoteFillLeaseOptions) {
    this.#rpc = rpc;
    this.#logger = logger;
    this.#maxWaitMs = opts.maxWaitMs;
  }

  async acquire(key: string): Promise<LeaseAnswer> {
    const answer = await this.#rpc.call<LeaseAnswer>('lease.acquire', { key, waitMs: this.#maxWaitMs }, this.#maxWaitMs + ANSWER_MARGIN_MS);
    if (answer.kind === 'lead') {
      const { token } = answer;
      const timer = setInterval(() => {
        this.#rpc.call<boolean>('lease.renew', { key, token }, CALL_TIMEOUT_MS).then(
          (ours) => {
            if (!ours) this.#stopRenewing(token);
          },
          (err: unknown) => {
            this.#logger.debug({ err, cacheKey: key }, 'fill lease renewal failed');
          },
        );
      }, answer.renewEveryMs);
      timer.unref();
      this.#renewals.set(token, timer);
    }
    return answer;
  }

  /** A notification: the waiters hear from the primary's table, and this worker's next acquire is handled after it. */
  release(key: string, token: number, verdict: FillVerdict): Promise<void> {
    this.#stopRenewing(token);
    try {
      this.#rpc.notify('lease.release', { key, token, verdict });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #stopRenewing(token: number): void {
    clearInterval(this.#renewals.get(token));
    this.#renewals.delete(token);
  }
}

/** The primary's side: one worker's lease calls, answered from the one table. */
export function fillLeaseHandlers(view: LeaseOwnerView): Record<string, RpcHandler> {
  return {
    'lease.acquire': (params) => {
      const { key, waitMs } = fields(params);
      return view.acquire(String(key), Math.max(0, Math.min(Number(waitMs) || 0, 600_000)));
    },
    'lease.renew': (params) => {
      const { key, token } = fields(params);
      return view.renew(String(key), Number(token));
    },
    'lease.release': (params) => {
      const { key, token, verdict } = fields(params);
      view.release(String(key), Number(token), parseVerdict(verdict));
      return null;
    },
  };
}

function fields(params: unknown): Record<string, unknown> {
  return (typeof params === 'object' && params !== null ? params : {}) as Record<string, unknown>;
}

/** A verdict from a worker; anything unexpected counts as a failure nobody else shares. */
function parseVerdict(value: unknown): FillVerdict {
  const { outcome, code } = fields(value);
  if (outcome === 'filled') return { outcome: 'filled' };
  if (typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)) return { outcome: 'failed', code: code as ErrorCode };
  return { outcome: 'failed' };
}
