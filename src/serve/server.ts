// `gemmkit serve`: an HTTP server (fastify) over one model and its tokenizer, with OpenAI-compatible
// /v1/completions and /v1/chat/completions (a JSON answer, or server-sent events with "stream": true),
// /v1/models, /health and Prometheus /metrics. Requests run through the continuous-batching Scheduler.
//
// Status codes: 400 for a body that is not JSON, has unknown fields or wrong types, or asks for more tokens
// than the context holds; 404 for an unknown route or model name; 429 (with Retry-After) when every batch
// slot is taken and the queue is full; 503 while shutting down. A client that disconnects cancels its
// request and frees its slot. shutdown() stops accepting, lets in-flight requests finish until a deadline,
// cancels the rest (a JSON 503, or an error event on a stream), and closes.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { basename } from 'node:path';
import type { Device } from '../device.js';
import { type FinishReason, resolveSequenceOptions } from '../generate.js';
import { type Model, loadModel, llamaOnly } from '../models/index.js';
import type { LlamaModel } from '../models/llama.js';
import { type TextTokenizer, loadTokenizer } from '../text/tokenizer.js';
import { ServeMetrics } from './metrics.js';
import {
  type ChatBody, type CompletionBody, type ErrorType, ResponseIds, chatChunk, chatMessages, chatResponse, chatSchema, completionChunk, completionResponse,
  completionSchema, errorBody, generationOptions, usage, usageChunk,
} from './openai.js';
import { type EndReason, Scheduler, SchedulerError } from './scheduler.js';

export interface ServeOptions {
  /** Address to listen on. Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Port; 0 picks a free one. Default 8000. */
  port?: number;
  /** Sequences decoded together (KV cache slots). Default 8. */
  maxBatch?: number;
  /** Requests that may wait for a slot before more get 429. Default 64. */
  maxQueue?: number;
  /** Positions per sequence, prompt and output together. Default: the model's max_position_embeddings, at most 2048. */
  contextLength?: number;
  /** The name clients give as "model" (and /v1/models lists). Default "gemmkit". */
  modelName?: string;
  /** max_tokens of a /v1/completions request that gives none (OpenAI's default is 16). */
  defaultMaxTokens?: number;
  /** How long shutdown() lets in-flight requests run before cancelling them. Default 10000 ms. */
  shutdownTimeoutMs?: number;
  /** fastify's request log (pino, to stdout). Default off. */
  logger?: boolean;
  /** serveCheckpoint: where the model is loaded (loadModel's device: 'cpu', 'cuda:<n>', 'hip:<n>', 'auto'). Default 'cpu'. */
  device?: Device | 'auto';
}

type ErrorReply = { status: number; type: ErrorType; message: string; param?: string | null; code?: string | null };

class HttpError extends Error {
  readonly reply: ErrorReply;
  constructor(reply: ErrorReply) {
    super(reply.message);
    this.reply = reply;
  }
}

const badRequest = (message: string, param: string | null = null) => new HttpError({ status: 400, type: 'invalid_request_error', message, param });

// The message of fastify's first schema error, naming the field.
function validationMessage(error: FastifyError): { message: string; param: string | null } {
  const errors = error.validation ?? [];
  const e = errors.find((x) => x.keyword === 'anyOf') ?? errors[0];
  if (!e) return { message: error.message, param: null };
  const path = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (e.keyword === 'additionalProperties') {
    const field = (e.params as { additionalProperty: string }).additionalProperty;
    const full = path ? `${path}.${field}` : field;
    return { message: `unknown field '${full}'`, param: full };
  }
  if (e.keyword === 'required') {
    const field = (e.params as { missingProperty: string }).missingProperty;
    const full = path ? `${path}.${field}` : field;
    return { message: `'${full}' is required`, param: full };
  }
  const hints: Record<string, string> = {
    prompt: 'must be a string or a non-empty array of token ids',
    stop: 'must be a non-empty string, an array of them, or null',
  };
  const last = path.split('.').at(-1) ?? '';
  const message = e.keyword === 'anyOf' ? (hints[last] ?? 'must be a string or an array of text parts') : e.message ?? 'is not valid';
  return { message: path ? `'${path}' ${message}` : `the body ${message}`, param: path || null };
}

export class GemmkitServer {
  readonly app: FastifyInstance;
  readonly scheduler: Scheduler;
  readonly metrics: ServeMetrics;
  readonly model: LlamaModel;
  readonly tokenizer: TextTokenizer;
  readonly modelName: string;
  readonly options: Required<Omit<ServeOptions, 'logger' | 'device'>>;
  private closing: Promise<void> | undefined;

  constructor(model: Model, tokenizer: TextTokenizer, opts: ServeOptions = {}) {
    this.model = llamaOnly('serve', model);
    this.tokenizer = tokenizer;
    if (tokenizer.vocabSize > this.model.config.vocabSize) {
      throw new RangeError(`serve: the tokenizer has ${tokenizer.vocabSize} ids but the model's vocabulary has ${this.model.config.vocabSize}`);
    }
    this.options = {
      host: opts.host ?? '127.0.0.1', port: opts.port ?? 8000, maxBatch: opts.maxBatch ?? 8, maxQueue: opts.maxQueue ?? 64,
      contextLength: opts.contextLength ?? Math.min(2048, this.model.config.maxPositionEmbeddings), modelName: opts.modelName ?? 'gemmkit', defaultMaxTokens: opts.defaultMaxTokens ?? 16,
      shutdownTimeoutMs: opts.shutdownTimeoutMs ?? 10_000,
    };
    this.modelName = this.options.modelName;
    if (this.options.contextLength > this.model.config.maxPositionEmbeddings) {
      throw new RangeError(`serve: a context length of ${this.options.contextLength} is more than the model's ${this.model.config.maxPositionEmbeddings} positions (max_position_embeddings)`);
    }
    this.metrics = new ServeMetrics(() => ({ queued: this.scheduler.queued, running: this.scheduler.active, slots: this.options.maxBatch }));
    const { maxBatch, maxQueue, contextLength } = this.options;
    this.scheduler = new Scheduler(this.model, { maxBatch, maxQueue, contextLength }, this.metrics.observer());
    this.app = Fastify({
      logger: opts.logger ?? false,
      // A wrong type or an unknown field is a 400, never silently coerced or dropped.
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: true } },
      bodyLimit: 8 * 1024 * 1024,
      return503OnClosing: true,
    });
    this.routes();
  }

  /** The base URL once listening, e.g. http://127.0.0.1:8000. */
  get url(): string {
    const a = this.app.server.address();
    if (!a || typeof a === 'string') throw new Error('serve: the server is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get port(): number {
    const a = this.app.server.address();
    return a && typeof a !== 'string' ? a.port : this.options.port;
  }

  async listen(): Promise<string> {
    await this.app.listen({ host: this.options.host, port: this.options.port });
    return this.url;
  }

  /**
   * Stops accepting requests, lets in-flight ones finish for up to `deadlineMs` (default
   * shutdownTimeoutMs), cancels the rest and closes the server. Calling it again returns the same promise.
   */
  shutdown(deadlineMs = this.options.shutdownTimeoutMs): Promise<void> {
    this.closing ??= (async () => {
      const closed = this.app.close(); // stops listening; requests arriving on open connections get 503
      await this.scheduler.drain(deadlineMs);
      this.app.server.closeAllConnections(); // every response has ended: close idle keep-alive connections
      await closed;
    })();
    return this.closing;
  }

  private routes(): void {
    const app = this.app;
    app.setErrorHandler((error: FastifyError | HttpError, _request, reply) => {
      if (error instanceof HttpError) return this.sendError(reply, error.reply);
      if (error.validation) {
        const { message, param } = validationMessage(error);
        return this.sendError(reply, { status: 400, type: 'invalid_request_error', message, param });
      }
      const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
      return this.sendError(reply, { status, type: status < 500 ? 'invalid_request_error' : 'server_error', message: error.message });
    });
    app.setNotFoundHandler((request, reply) => this.sendError(reply, { status: 404, type: 'not_found_error', message: `no route ${request.method} ${request.url}` }));
    app.addHook('onResponse', async (request, reply) => {
      this.metrics.requests.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
    });

    app.get('/health', async (_request, reply) => {
      const state = { queued: this.scheduler.queued, running: this.scheduler.active, slots: this.options.maxBatch };
      if (this.scheduler.isDraining) return reply.code(503).send({ status: 'shutting down', ...state });
      return { status: 'ok', ...state };
    });
    app.get('/metrics', async (_request, reply) => reply.type(this.metrics.contentType).send(await this.metrics.text()));
    app.get('/v1/models', async () => ({
      object: 'list',
      data: [{ id: this.modelName, object: 'model', created: 0, owned_by: 'gemmkit', max_model_len: this.options.contextLength }],
    }));
    app.post('/v1/completions', { schema: { body: completionSchema } }, async (request, reply) => {
      const body = request.body as CompletionBody;
      let prompt: number[];
      if (typeof body.prompt === 'string') prompt = this.tokenizer.encode(body.prompt);
      else {
        const bad = body.prompt.findIndex((id) => id >= this.model.config.vocabSize);
        if (bad >= 0) throw badRequest(`'prompt' token ${bad} is ${body.prompt[bad]}; ids are below the vocabulary size ${this.model.config.vocabSize}`, 'prompt');
        prompt = body.prompt;
      }
      return this.generate('completion', reply, body, prompt, body.max_tokens ?? this.options.defaultMaxTokens);
    });
    app.post('/v1/chat/completions', { schema: { body: chatSchema } }, async (request, reply) => {
      const body = request.body as ChatBody;
      if (this.tokenizer.chatTemplate === undefined) throw badRequest('this model has no chat template (tokenizer_config.json chat_template); use /v1/completions', 'messages');
      let prompt: number[];
      try {
        prompt = this.tokenizer.encodeChat(chatMessages(body));
      } catch (e) {
        throw badRequest((e as Error).message, 'messages');
      }
      const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? Math.max(1, this.options.contextLength - prompt.length);
      return this.generate('chat', reply, body, prompt, maxTokens);
    });
  }

  private sendError(reply: FastifyReply, e: ErrorReply): FastifyReply {
    if (e.status === 429) reply.header('retry-after', '1');
    return reply.code(e.status).send(errorBody(e.message, e.type, e.param ?? null, e.code ?? null));
  }

  // Runs one request through the scheduler and answers it as JSON or as a stream of events.
  private generate(kind: 'completion' | 'chat', reply: FastifyReply, body: CompletionBody | ChatBody, prompt: number[], maxTokens: number): Promise<unknown> | FastifyReply {
    if (body.model !== undefined && body.model !== this.modelName) {
      throw new HttpError({ status: 404, type: 'not_found_error', message: `the model '${body.model}' does not exist; this server serves '${this.modelName}'`, param: 'model', code: 'model_not_found' });
    }
    const context = this.options.contextLength;
    if (prompt.length + maxTokens > context) {
      throw badRequest(`this model's context is ${context} tokens, but the request asks for ${prompt.length + maxTokens} (${prompt.length} in the prompt, ${maxTokens} to generate)`, 'max_tokens');
    }
    let options;
    try {
      options = resolveSequenceOptions('request', { ...generationOptions(body, maxTokens), tokenizer: this.tokenizer }, true, this.model.config.vocabSize);
    } catch (e) {
      throw badRequest((e as Error).message);
    }
    const ids = new ResponseIds(kind === 'chat' ? 'chatcmpl' : 'cmpl', this.modelName);
    const abort = new AbortController();
    const res = reply.raw;
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(); // the client went away: free its slot
    });
    let text = '';
    let end: ((reason: EndReason, error?: Error) => void) | undefined;
    let write: ((piece: string) => void) | undefined;
    const submit = () => {
      try {
        return this.scheduler.submit(prompt, options, {
          onToken: (piece) => (write ? write(piece) : (text += piece)),
          onEnd: (reason, error) => end!(reason, error),
        }, abort.signal);
      } catch (e) {
        if (e instanceof SchedulerError) {
          throw e.code === 'queue_full'
            ? new HttpError({ status: 429, type: 'rate_limit_error', message: e.message, code: e.code })
            : new HttpError({ status: 503, type: 'service_unavailable', message: e.message, code: e.code });
        }
        if (e instanceof RangeError || e instanceof TypeError) throw badRequest(e.message);
        throw e;
      }
    };
    const finalUsage = (r: { seq: { prompt: readonly number[]; output: readonly number[] } }) => usage(r.seq.prompt.length, r.seq.output.length);

    if (body.stream !== true) {
      return new Promise((resolve) => {
        end = (reason, error) => {
          if (reason === 'cancelled') {
            const status = abort.signal.aborted ? 499 : 503; // 499: the client closed the connection
            resolve(this.sendError(reply, { status, type: 'service_unavailable', message: status === 503 ? 'the server is shutting down; the request was cancelled' : 'cancelled' }));
          } else if (reason === 'error') {
            resolve(this.sendError(reply, { status: 500, type: 'server_error', message: error?.message ?? 'generation failed' }));
          } else {
            const u = finalUsage(request_);
            resolve(reply.send(kind === 'chat' ? chatResponse(ids, text, reason, u) : completionResponse(ids, text, reason, u)));
          }
        };
        const request_ = submit();
      });
    }

    // Server-sent events: a chunk per piece of text, a last chunk with the finish reason, usage when asked, [DONE].
    const scheduled = submit(); // a refusal is still a plain JSON error
    reply.hijack();
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (data: unknown) => {
      if (!res.destroyed && !res.writableEnded) res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    if (kind === 'chat') send(chatChunk(ids, { role: 'assistant', content: '' }, null));
    write = (piece) => {
      if (piece !== '') send(kind === 'chat' ? chatChunk(ids, { content: piece }, null) : completionChunk(ids, piece, null));
    };
    return new Promise<void>((resolve) => {
      end = (reason, error) => {
        if (reason === 'cancelled' || reason === 'error') {
          const message = reason === 'error' ? error?.message ?? 'generation failed' : 'the server is shutting down; the request was cancelled';
          send(errorBody(message, reason === 'error' ? 'server_error' : 'service_unavailable'));
        } else {
          const finish = reason as FinishReason;
          send(kind === 'chat' ? chatChunk(ids, {}, finish) : completionChunk(ids, '', finish));
          if (body.stream_options?.include_usage) send(usageChunk(ids, object, finalUsage(scheduled)));
          send('[DONE]');
        }
        if (!res.writableEnded) res.end(); // the onResponse hook counts it (status 200: the headers went first)
        resolve();
      };
    });
  }
}

/** Starts a server for a loaded model and tokenizer; resolves once it listens (server.url). */
export async function startServer(model: Model, tokenizer: TextTokenizer, opts: ServeOptions = {}): Promise<GemmkitServer> {
  const server = new GemmkitServer(model, tokenizer, opts);
  await server.listen();
  return server;
}

/**
 * Loads a checkpoint directory (weights, config.json, tokenizer files) and serves it. The context length
 * defaults to the model's max_position_embeddings, at most 2048; the model name to the directory's name.
 */
export async function serveCheckpoint(path: string, opts: ServeOptions = {}): Promise<GemmkitServer> {
  const tokenizer = loadTokenizer(path);
  const model = await loadModel(path, { device: opts.device });
  return startServer(model, tokenizer, { ...opts, modelName: opts.modelName ?? basename(path.replace(/\/+$/, '')) });
}
