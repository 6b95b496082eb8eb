// The OpenAI-compatible request bodies (/v1/completions, /v1/chat/completions) as JSON schemas that
// fastify checks before a handler runs (unknown fields and wrong types are 400s), their translation into
// generation options, and the response and stream-chunk shapes.
import { randomUUID } from 'node:crypto';
import type { FinishReason, GenerateOptions } from '../generate.js';
import type { ChatMessage } from '../text/chat.js';

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

// Fields both endpoints take. Beyond OpenAI's: top_k, min_p, repetition_penalty and stop_token_ids.
const samplingProperties = {
  model: { type: 'string' },
  temperature: nullable('number', { minimum: 0 }),
  top_p: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable('integer', { minimum: -1 }),
  min_p: nullable('number', { minimum: 0, maximum: 1 }),
  repetition_penalty: nullable('number', { exclusiveMinimum: 0 }),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  seed: nullable('integer'),
  stop: {
    anyOf: [
      { type: 'string', minLength: 1 },
      { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 },
      { type: 'null' },
    ],
  },
  stop_token_ids: nullable('array', { items: { type: 'integer', minimum: 0 }, maxItems: 64 }),
  stream: nullable('boolean'),
  stream_options: nullable('object', { properties: { include_usage: { type: 'boolean' } }, additionalProperties: false }),
  n: nullable('integer', { minimum: 1, maximum: 1 }),
  max_tokens: nullable('integer', { minimum: 1 }),
  user: { type: 'string' },
};

export const completionSchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 }] },
  },
};

export const chatSchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    max_completion_tokens: nullable('integer', { minimum: 1 }),
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        additionalProperties: false,
        properties: {
          role: { type: 'string' },
          name: { type: 'string' },
          content: {
            anyOf: [
              { type: 'string' },
              { type: 'array', items: { type: 'object', required: ['type', 'text'], additionalProperties: false, properties: { type: { const: 'text' }, text: { type: 'string' } } } },
            ],
          },
        },
      },
    },
  },
};

interface SamplingBody {
  model?: string;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  repetition_penalty?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stop_token_ids?: number[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  max_tokens?: number | null;
  user?: string;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | number[];
}

export interface ChatBody extends SamplingBody {
  max_completion_tokens?: number | null;
  messages: { role: string; name?: string; content: string | { type: 'text'; text: string }[] }[];
}

/** The messages with text parts joined, as the chat template takes them. */
export function chatMessages(body: ChatBody): ChatMessage[] {
  return body.messages.map((m) => ({ role: m.role, content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('') }));
}

/** The body's sampling and stop options as generate's (OpenAI's defaults: temperature 1, top_p 1). */
export function generationOptions(body: SamplingBody, maxNewTokens: number): Omit<GenerateOptions, 'tokenizer'> {
  const topK = body.top_k ?? 0;
  return {
    maxNewTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: topK < 0 ? 0 : topK, // -1 is "off", as in vLLM
    minP: body.min_p ?? 0,
    repetitionPenalty: body.repetition_penalty ?? 1,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    seed: body.seed ?? undefined,
    stop: body.stop ?? undefined,
    stopIds: body.stop_token_ids ?? undefined,
  };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** The parts every response and chunk of one request share. */
export class ResponseIds {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly model: string;
  constructor(kind: 'cmpl' | 'chatcmpl', model: string) {
    this.id = `${kind}-${randomUUID().replaceAll('-', '')}`;
    this.model = model;
  }
}

export function completionResponse(ids: ResponseIds, text: string, finishReason: FinishReason, u: Usage) {
  return {
    id: ids.id, object: 'text_completion', created: ids.created, model: ids.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    usage: u,
  };
}

export function completionChunk(ids: ResponseIds, text: string, finishReason: FinishReason | null) {
  return {
    id: ids.id, object: 'text_completion', created: ids.created, model: ids.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
  };
}

export function chatResponse(ids: ResponseIds, text: string, finishReason: FinishReason, u: Usage) {
  return {
    id: ids.id, object: 'chat.completion', created: ids.created, model: ids.model,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finishReason }],
    usage: u,
  };
}

export function chatChunk(ids: ResponseIds, delta: { role?: 'assistant'; content?: string }, finishReason: FinishReason | null) {
  return {
    id: ids.id, object: 'chat.completion.chunk', created: ids.created, model: ids.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  };
}

export function usageChunk(ids: ResponseIds, object: 'text_completion' | 'chat.completion.chunk', u: Usage) {
  return { id: ids.id, object, created: ids.created, model: ids.model, choices: [], usage: u };
}

export type ErrorType = 'invalid_request_error' | 'not_found_error' | 'rate_limit_error' | 'server_error' | 'service_unavailable';

/** OpenAI's error body. */
export function errorBody(message: string, type: ErrorType, param: string | null = null, code: string | null = null) {
  return { error: { message, type, param, code } };
}
