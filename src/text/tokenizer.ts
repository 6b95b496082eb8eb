// A checkpoint's tokenizer: tokenizer.json (BPE, SentencePiece-style BPE with byte fallback, WordPiece,
// Unigram: whatever the Hugging Face tokenizers format describes) run by @huggingface/tokenizers, pure
// JavaScript; tokenizer_config.json for the special tokens and the chat template (rendered by
// @huggingface/jinja, see chat.ts); generation_config.json, when present, for more end-of-sequence ids.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { type ChatMessage, ChatTemplate } from './chat.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
const GENERATION_CONFIG_FILE = 'generation_config.json';
const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

function readJson(path: string, required: boolean): Record<string, unknown> | undefined {
  if (!existsSync(path)) {
    if (required) throw new Error(`loadTokenizer: ${path} does not exist`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`loadTokenizer: ${path} is not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`loadTokenizer: ${path} must hold a JSON object`);
  return parsed as Record<string, unknown>;
}

// tokenizer_config.json writes a special token as its text or as a serialized AddedToken { content }.
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

// chat_template is a string, or a list of { name, template } of which 'default' is the chat one.
function chatTemplateText(path: string, raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    const named = raw.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (named && typeof named.template === 'string') return named.template;
  }
  throw new Error(`loadTokenizer: ${path}: chat_template must be a string or a list with a { name: 'default', template } entry`);
}

export interface EncodeOptions {
  /** Add the tokenizer's special tokens (the beginning-of-sequence token for Llama). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (<s>, </s>, ...). Default true. */
  skipSpecialTokens?: boolean;
}

/** Text to token ids and back, with the checkpoint's special tokens and chat template. */
export class TextTokenizer {
  /** The directory the files came from. */
  readonly path: string;
  /** One more than the largest id the tokenizer produces (a model's vocabulary must be at least this). */
  readonly vocabSize: number;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  /** Ids that end a generated sequence: the eos token's and generation_config.json's eos_token_id. */
  readonly eosTokenIds: readonly number[];
  /** The chat template's source, when the checkpoint has one. */
  readonly chatTemplate: string | undefined;
  private readonly tokenizer: Tokenizer;
  private readonly specialTokens: Record<string, string>;
  private compiledTemplate: ChatTemplate | undefined;

  constructor(path: string, tokenizerJson: Record<string, unknown>, config: Record<string, unknown>, generationConfig?: Record<string, unknown>, chatTemplate?: string) {
    this.path = path;
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (e) {
      throw new Error(`loadTokenizer: ${path}: tokenizer.json could not be loaded (${(e as Error).message})`);
    }
    let maxId = -1;
    for (const id of this.tokenizer.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.specialTokens = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const text = tokenText(config[key]);
      if (text !== undefined) this.specialTokens[key] = text;
    }
    this.bosToken = this.specialTokens.bos_token;
    this.eosToken = this.specialTokens.eos_token;
    const eos = new Set<number>();
    const eosId = this.eosToken === undefined ? undefined : this.tokenizer.token_to_id(this.eosToken);
    if (eosId !== undefined) eos.add(eosId);
    const fromGeneration = generationConfig?.eos_token_id;
    for (const id of Array.isArray(fromGeneration) ? fromGeneration : [fromGeneration]) {
      if (typeof id === 'number' && Number.isInteger(id) && id >= 0) eos.add(id);
    }
    this.eosTokenIds = [...eos];
    this.chatTemplate = chatTemplate ?? chatTemplateText(path, config.chat_template);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    return this.tokenizer.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    if (ids.length === 0) return ''; // the library refuses an empty list
    return this.tokenizer.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }

  /** The token's text as in the vocabulary (▁Hello, <0xE6>, </s>), or undefined for an unknown id. */
  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /**
   * The conversation as the checkpoint's chat template writes it; with addGenerationPrompt (default true)
   * it ends where the assistant's reply begins. An Error when the checkpoint has no chat template.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): string {
    if (this.chatTemplate === undefined) {
      throw new Error(`applyChatTemplate: ${this.path} has no chat template (tokenizer_config.json chat_template or ${CHAT_TEMPLATE_FILE})`);
    }
    this.compiledTemplate ??= new ChatTemplate(this.chatTemplate);
    return this.compiledTemplate.render(messages, { addGenerationPrompt: opts.addGenerationPrompt ?? true, specialTokens: this.specialTokens });
  }

  /** The conversation's token ids: the template's text encoded without adding special tokens (the template writes them). */
  encodeChat(messages: readonly ChatMessage[], opts: { addGenerationPrompt?: boolean } = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }
}

/**
 * Loads the tokenizer of a checkpoint: `path` is its directory (tokenizer.json, optional
 * tokenizer_config.json, generation_config.json and chat_template.jinja) or its tokenizer.json.
 */
export function loadTokenizer(path: string): TextTokenizer {
  if (typeof path !== 'string') throw new TypeError('loadTokenizer: path must be a string');
  if (!existsSync(path)) throw new Error(`loadTokenizer: ${path} does not exist`);
  const dir = statSync(path).isDirectory() ? path : dirname(path);
  const tokenizerJson = readJson(statSync(path).isDirectory() ? join(path, TOKENIZER_FILE) : path, true)!;
  const config = readJson(join(dir, TOKENIZER_CONFIG_FILE), false) ?? {};
  const generationConfig = readJson(join(dir, GENERATION_CONFIG_FILE), false);
  const templateFile = join(dir, CHAT_TEMPLATE_FILE);
  const template = existsSync(templateFile) ? readFileSync(templateFile, 'utf8') : undefined;
  return new TextTokenizer(dir, tokenizerJson, config, generationConfig, template);
}

export type { ChatMessage };
