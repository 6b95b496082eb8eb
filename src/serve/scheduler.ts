// Continuous batching: requests share decode steps. One DecodeBatch (generate.ts) holds up to maxBatch
// sequences on the slots of one KV cache; between two steps the scheduler takes out the sequences that
// ended or were cancelled (their slots go back to the pool) and prefills waiting requests into the free
// slots, then runs one step over everything running: one forward with batch = the running sequences, so
// each weight GEMM runs once per step with M = that count, whatever each sequence's length.
//
// Requests wait in a bounded FIFO queue while every slot is taken; a request beyond maxQueue is refused
// at once (SchedulerError 'queue_full'), as is any request once drain() began ('shutting_down'). A failed
// forward ends the requests it ran with the error and the scheduler keeps serving the others.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DecodeBatch, type FinishReason, Sequence, type SequenceOptions } from '../generate.js';
import type { LlamaModel } from '../models/llama.js';

export interface SchedulerOptions {
  /** Sequences decoded together: the KV cache's slots. */
  maxBatch: number;
  /** Requests that may wait for a slot; more are refused. */
  maxQueue: number;
  /** Positions per slot: a request's prompt plus its max tokens must fit. */
  contextLength: number;
}

/** How a request ended: the sequence's reason, 'cancelled' (its signal, or drain()'s deadline) or 'error'. */
export type EndReason = FinishReason | 'cancelled' | 'error';

/** What the scheduler tells a request's owner, from inside its loop (keep them short). */
export interface RequestListener {
  /** A new token and the text it completes ('' while a character or a possible stop string is incomplete). */
  onToken(text: string, id: number): void;
  /** The request is over; no call follows. `error` is set when reason is 'error'. */
  onEnd(reason: EndReason, error?: Error): void;
}

/** Timings the scheduler reports (for metrics); seconds. */
export interface SchedulerObserver {
  queueWait?(seconds: number): void;
  firstToken?(seconds: number): void;
  interToken?(seconds: number): void;
  step?(batchSize: number, seconds: number): void;
  ended?(reason: EndReason, seconds: number, promptTokens: number, outputTokens: number): void;
}

export class SchedulerError extends Error {
  readonly code: 'queue_full' | 'shutting_down';
  constructor(code: 'queue_full' | 'shutting_down', message: string) {
    super(message);
    this.name = 'SchedulerError';
    this.code = code;
  }
}

/** One submitted request. */
export class ScheduledRequest {
  readonly seq: Sequence;
  /** performance.now() at submit, at its prefill, at its first and latest tokens. */
  readonly submittedAt = performance.now();
  startedAt: number | undefined;
  firstTokenAt: number | undefined;
  lastTokenAt: number | undefined;
  ended: EndReason | undefined;
  cancelRequested = false;
  readonly listener: RequestListener;
  private readonly scheduler: Scheduler;

  constructor(scheduler: Scheduler, seq: Sequence, listener: RequestListener) {
    this.scheduler = scheduler;
    this.seq = seq;
    this.listener = listener;
  }

  /** Ends the request: at once when it waits, at the next step boundary when it runs. */
  cancel(): void {
    this.scheduler.cancel(this);
  }
}

export class Scheduler {
  readonly options: SchedulerOptions;
  private readonly batch: DecodeBatch;
  private readonly waiting: ScheduledRequest[] = [];
  private readonly running = new Map<Sequence, ScheduledRequest>();
  private readonly observer: SchedulerObserver;
  private loop: Promise<void> | undefined;
  private draining = false;

  constructor(model: LlamaModel, options: SchedulerOptions, observer: SchedulerObserver = {}) {
    for (const key of ['maxBatch', 'contextLength'] as const) {
      if (!Number.isSafeInteger(options[key]) || options[key] < 1) throw new RangeError(`Scheduler: ${key} must be a positive integer, got ${options[key]}`);
    }
    if (!Number.isSafeInteger(options.maxQueue) || options.maxQueue < 0) throw new RangeError(`Scheduler: maxQueue must be a non-negative integer, got ${options.maxQueue}`);
    this.options = { ...options };
    this.batch = new DecodeBatch(model, options.maxBatch, options.contextLength, 'Scheduler');
    this.observer = observer;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Sequences holding a slot. */
  get active(): number {
    return this.running.size;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Queues a request; throws SchedulerError when the queue is full or the scheduler drains, RangeError
   * when prompt + maxNewTokens exceed contextLength. An aborted `signal` cancels it.
   */
  submit(prompt: readonly number[], options: SequenceOptions, listener: RequestListener, signal?: AbortSignal): ScheduledRequest {
    if (this.draining) throw new SchedulerError('shutting_down', 'the server is shutting down');
    if (prompt.length + options.maxNewTokens > this.options.contextLength) {
      throw new RangeError(`the prompt (${prompt.length} tokens) plus max tokens (${options.maxNewTokens}) exceed the context length of ${this.options.contextLength}`);
    }
    const freeNow = this.batch.freeSlots - this.waiting.length;
    if (freeNow <= 0 && this.waiting.length >= this.options.maxQueue) {
      throw new SchedulerError('queue_full', `the server is busy: ${this.running.size} requests running and ${this.waiting.length} waiting (the most it queues)`);
    }
    const request = new ScheduledRequest(this, new Sequence(prompt, options), listener);
    // Listeners are called from the loop or on a later turn, never before submit() returns.
    if (signal?.aborted || request.seq.done) { // cancelled already, or maxNewTokens 0: nothing to run
      void nextTurn().then(() => this.end(request, signal?.aborted ? 'cancelled' : request.seq.finishReason!));
      return request;
    }
    signal?.addEventListener('abort', () => request.cancel(), { once: true });
    this.waiting.push(request);
    this.kick();
    return request;
  }

  cancel(request: ScheduledRequest): void {
    if (request.ended !== undefined) return;
    const at = this.waiting.indexOf(request);
    if (at >= 0) {
      this.waiting.splice(at, 1);
      this.end(request, 'cancelled');
    } else {
      request.cancelRequested = true; // the loop takes it out before the next step
    }
  }

  /**
   * Refuses new requests, lets the queued and running ones finish until `deadlineMs` from now, then
   * cancels what is left; resolves once nothing runs.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    if (this.loop) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), Math.max(0, deadlineMs))));
      const finished = await Promise.race([this.loop.then(() => 'done' as const), deadline]);
      clearTimeout(timer);
      if (finished === 'deadline') {
        for (const r of [...this.waiting, ...this.running.values()]) this.cancel(r);
      }
    }
    await this.loop;
  }

  private kick(): void {
    this.loop ??= nextTurn().then(() => this.run()).finally(() => {
      this.loop = undefined;
      if (this.waiting.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0 || this.running.size > 0) {
      for (const r of [...this.running.values()]) {
        if (r.cancelRequested) this.leave(r, 'cancelled');
      }
      const admitted = this.waiting.splice(0, Math.min(this.waiting.length, this.batch.freeSlots));
      try {
        if (admitted.length > 0) {
          const now = performance.now();
          for (const r of admitted) {
            r.startedAt = now;
            this.running.set(r.seq, r);
            this.observer.queueWait?.((now - r.submittedAt) / 1000);
          }
          this.deliver(await this.batch.add(admitted.map((r) => r.seq)));
        }
        if (this.batch.active.length > 0) {
          const size = this.batch.active.length;
          const started = performance.now();
          const events = await this.batch.step();
          this.observer.step?.(size, (performance.now() - started) / 1000);
          this.deliver(events);
        }
      } catch (e) {
        // The model failed: the requests it was running end with the error; the others go on.
        const error = e instanceof Error ? e : new Error(String(e));
        for (const r of [...this.running.values()]) this.leave(r, 'error', error);
      }
      await nextTurn(); // sockets, timers and aborts get their turn between steps
    }
  }

  private deliver(events: readonly { seq: Sequence; id: number; text: string }[]): void {
    const now = performance.now();
    for (const { seq, id, text } of events) {
      const r = this.running.get(seq);
      if (!r) continue;
      if (r.firstTokenAt === undefined) {
        r.firstTokenAt = now;
        this.observer.firstToken?.((now - r.submittedAt) / 1000);
      } else {
        this.observer.interToken?.((now - r.lastTokenAt!) / 1000);
      }
      r.lastTokenAt = now;
      this.notify(r, () => r.listener.onToken(text, id));
      if (seq.done) this.leave(r, seq.finishReason!);
    }
  }

  // Takes a running request out of the batch (its slot is freed) and ends it.
  private leave(r: ScheduledRequest, reason: EndReason, error?: Error): void {
    this.batch.remove(r.seq);
    this.running.delete(r.seq);
    this.end(r, reason, error);
  }

  private end(r: ScheduledRequest, reason: EndReason, error?: Error): void {
    if (r.ended !== undefined) return;
    r.ended = reason;
    this.observer.ended?.(reason, (performance.now() - r.submittedAt) / 1000, r.seq.prompt.length, r.seq.output.length);
    this.notify(r, () => r.listener.onEnd(reason, error));
  }

  // A listener that throws must not stop the loop that serves everyone else.
  private notify(r: ScheduledRequest, call: () => void): void {
    try {
      call();
    } catch {
      if (r.ended === undefined) r.cancelRequested = true;
    }
  }
}
