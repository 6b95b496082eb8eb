// Chat templates: the Jinja template a checkpoint ships (tokenizer_config.json chat_template) turns a list
// of messages into the prompt text the model was trained on. @huggingface/jinja renders it, with the
// variables transformers passes: messages, add_generation_prompt, bos_token, eos_token, unk_token,
// pad_token (and its raise_exception()).
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  /** 'system', 'user', 'assistant' (or whatever roles the template knows). */
  role: string;
  content: string;
}

/** A TypeError naming the first message that is not { role: string, content: string }. */
export function checkMessages(where: string, messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new TypeError(`${where}: messages must be a non-empty array of { role, content }`);
  messages.forEach((m, i) => {
    if (m === null || typeof m !== 'object' || typeof (m as ChatMessage).role !== 'string' || typeof (m as ChatMessage).content !== 'string') {
      throw new TypeError(`${where}: messages[${i}] must be { role: string, content: string }, got ${JSON.stringify(m)}`);
    }
  });
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(source: string) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new Error(`chat template: cannot parse it (${(e as Error).message})`);
    }
  }

  render(messages: readonly ChatMessage[], opts: { addGenerationPrompt: boolean; specialTokens: Record<string, string> }): string {
    checkMessages('applyChatTemplate', messages);
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt,
        ...opts.specialTokens,
      });
    } catch (e) {
      // A template refuses a conversation it cannot write (roles out of order, ...) with raise_exception.
      throw new RangeError(`chat template: ${(e as Error).message}`);
    }
  }
}
