// Text as tokens arrive. Two problems a token-by-token decode gets wrong:
// - a character can span tokens (byte-fallback tokens <0xF0> <0x9F> <0xA6> <0x99> are one emoji), and a
//   token's text can depend on its neighbours (SentencePiece's leading-space marker, which decoding strips
//   at the start of a text). IncrementalDecoder decodes a window of tokens that starts a few tokens back and
//   hands out only the new text, holding it back while it ends in an incomplete character (U+FFFD);
// - a stop string can span pieces. StopStrings holds back any tail of the text that could begin a stop
//   string, and cuts the text where one appears.
import type { TextTokenizer } from './tokenizer.js';

const REPLACEMENT = '\uFFFD';
/** Tokens of context decoded before the new ones, so a token's text sees its left neighbours. */
const CONTEXT_TOKENS = 5;

export class IncrementalDecoder {
  private readonly tokenizer: TextTokenizer;
  private readonly ids: number[];
  // ids[prefix, read) is text already handed out (decoded again only as the new tokens' context);
  // ids[read, length) is text not handed out yet.
  private prefix: number;
  private read: number;

  /** `context`: the ids before the first new one (the prompt), whose text is not handed out. */
  constructor(tokenizer: TextTokenizer, context: readonly number[] = []) {
    this.tokenizer = tokenizer;
    this.ids = context.slice(-CONTEXT_TOKENS);
    this.prefix = 0;
    this.read = this.ids.length;
  }

  /** Appends a token; returns the text it completes ('' while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const now = this.tokenizer.decode(this.ids.slice(this.prefix));
    if (now.length <= before.length || now.endsWith(REPLACEMENT) || !now.startsWith(before)) return '';
    this.prefix = this.read;
    this.read = this.ids.length;
    // Keep the window short: only its last few tokens matter as context.
    if (this.prefix > 64) {
      this.ids.splice(0, this.prefix - CONTEXT_TOKENS);
      this.read -= this.prefix - CONTEXT_TOKENS;
      this.prefix = CONTEXT_TOKENS;
    }
    return now.slice(before.length);
  }

  /** The text not handed out yet, incomplete characters as U+FFFD: call once the sequence has ended. */
  flush(): string {
    const before = this.tokenizer.decode(this.ids.slice(this.prefix, this.read));
    const now = this.tokenizer.decode(this.ids.slice(this.prefix));
    this.prefix = this.read = this.ids.length;
    return now.startsWith(before) ? now.slice(before.length) : now;
  }
}

/** Cuts generated text at the first of some stop strings; the stop string itself is not part of the text. */
export class StopStrings {
  readonly stops: readonly string[];
  private text = '';
  private emitted = 0;
  /** Set once a stop string appeared: the text ends before it. */
  stopped: string | undefined;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Adds a piece; returns the text that can be handed out now (none of it can start a stop string). */
  push(piece: string): string {
    if (this.stopped !== undefined) return '';
    this.text += piece;
    // A stop string that ends in this piece starts at most (longest - 1) characters before it.
    const from = Math.max(0, this.emitted - Math.max(0, ...this.stops.map((s) => s.length - 1)));
    let cut = -1;
    for (const s of this.stops) {
      const at = this.text.indexOf(s, from);
      if (at >= 0 && (cut < 0 || at < cut)) {
        cut = at;
        this.stopped = s;
      }
    }
    if (cut >= 0) return this.take(cut);
    return this.take(this.text.length - this.heldBack());
  }

  /** Whatever was held back (the sequence ended for another reason). */
  flush(): string {
    return this.stopped === undefined ? this.take(this.text.length) : '';
  }

  // The longest tail of the text that is the beginning of a stop string.
  private heldBack(): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.text.length - this.emitted); n > hold; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return hold;
  }

  private take(end: number): string {
    const out = this.text.slice(this.emitted, Math.max(end, this.emitted));
    this.emitted = Math.max(end, this.emitted);
    return out;
  }
}
