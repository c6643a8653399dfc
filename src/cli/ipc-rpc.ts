import { ERROR_CODES, FastImageCacheError, type ErrorCode } from '../errors.ts';

/** A cluster Worker (in the primary) or `process` (in a worker): both send and receive IPC messages. */
export interface IpcEndpoint {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

export type RpcHandler = (params: unknown) => unknown;

interface CallMessage {
  ficRpc: 'call';
  id: number;
  method: string;
  params: unknown;
}

/** A call nobody waits for: no id, no answer. */
interface NoteMessage {
  ficRpc: 'note';
  method: string;
  params: unknown;
}

interface ResultMessage {
  ficRpc: 'result';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: { message: string; code?: string; detail?: string };
}

function isRpcMessage(message: unknown): message is CallMessage | NoteMessage | ResultMessage {
  const kind = (message as { ficRpc?: unknown } | null)?.ficRpc;
  return kind === 'call' || kind === 'note' || kind === 'result';
}

/**
 * Answers `message` with `value` when it is a call of `method`, for an
 * endpoint no IpcRpc listens on yet (a worker forked early: forkFirstWorker).
 * True when it did.
 */
export function answerCall(endpoint: IpcEndpoint, message: unknown, method: string, value: unknown): boolean {
  if (!isRpcMessage(message) || message.ficRpc !== 'call' || message.method !== method) return false;
  endpoint.send({ ficRpc: 'result', id: message.id, ok: true, value } satisfies ResultMessage);
  return true;
}

export interface IpcRpcOptions {
  /** A handler failed on a notification (nobody is waiting to hear it): e.g. log it. */
  onNoteError?: (method: string, err: unknown) => void;
}

/** Rebuilds an error sent over IPC: our own codes survive, anything else becomes a plain Error. */
function reviveError(error: ResultMessage['error']): Error {
  const code = error?.code;
  if (code !== undefined && Object.hasOwn(ERROR_CODES, code)) return new FastImageCacheError(code as ErrorCode, error?.detail);
  return new Error(error?.message ?? 'remote call failed');
}

/**
 * Request/response calls between the cluster primary and a worker over the
 * IPC channel, both ways. Other messages on the channel (e.g. the rate
 * limiter's) are left alone.
 */
export class IpcRpc {
  readonly #endpoint: IpcEndpoint;
  readonly #handlers: Record<string, RpcHandler>;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  readonly #listener: (message: unknown) => void;
  readonly #onNoteError: IpcRpcOptions['onNoteError'];
  #nextId = 1;
  #closed = false;

  constructor(endpoint: IpcEndpoint, handlers: Record<string, RpcHandler>, options: IpcRpcOptions = {}) {
    this.#endpoint = endpoint;
    this.#handlers = handlers;
    this.#onNoteError = options.onNoteError;
    this.#listener = (message) => {
      if (!isRpcMessage(message)) return;
      if (message.ficRpc === 'call') void this.#answer(message);
      else if (message.ficRpc === 'note') void this.#take(message);
      else this.#settle(message);
    };
    endpoint.on('message', this.#listener);
  }

  /** Calls `method` on the other side; rejects after `timeoutMs` or when the channel closes. */
  call<T = unknown>(method: string, params: unknown = null, timeoutMs = 10_000): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`IPC channel closed (calling ${method})`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.#endpoint.send({ ficRpc: 'call', id, method, params } satisfies CallMessage);
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /**
   * Tells the other side to run `method`, without waiting for it: one message
   * instead of a call's two, and no timer. Handled in order with the calls
   * sent after it. Throws only when the channel cannot take the message.
   */
  notify(method: string, params: unknown = null): void {
    if (this.#closed) throw new Error(`IPC channel closed (notifying ${method})`);
    this.#endpoint.send({ ficRpc: 'note', method, params } satisfies NoteMessage);
  }

  /** Stops listening; calls still waiting are rejected. */
  close(reason = 'IPC channel closed'): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#endpoint.off('message', this.#listener);
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(reason));
      this.#pending.delete(id);
    }
  }

  async #answer(message: CallMessage): Promise<void> {
    let reply: ResultMessage;
    try {
      const handler = this.#handlers[message.method];
      if (handler === undefined) throw new Error(`no IPC method ${message.method}`);
      reply = { ficRpc: 'result', id: message.id, ok: true, value: await handler(message.params) };
    } catch (err) {
      const error = err instanceof FastImageCacheError ? { message: err.message, code: err.code, ...(err.detail ? { detail: err.detail } : {}) } : { message: err instanceof Error ? err.message : String(err) };
      reply = { ficRpc: 'result', id: message.id, ok: false, error };
    }
    try {
      if (!this.#closed) this.#endpoint.send(reply);
    } catch {
      // The other side went away; it will not wait for this answer.
    }
  }

  async #take(message: NoteMessage): Promise<void> {
    try {
      const handler = this.#handlers[message.method];
      if (handler === undefined) throw new Error(`no IPC method ${message.method}`);
      await handler(message.params);
    } catch (err) {
      this.#onNoteError?.(message.method, err);
    }
  }

  #settle(message: ResultMessage): void {
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.ok) pending.resolve(message.value);
    else pending.reject(reviveError(message.error));
  }
}
