// HTTP helpers for the server tests: JSON posts and server-sent-event streams over fetch, against a server
// on an ephemeral loopback port.

export interface JsonReply {
  status: number;
  headers: Headers;
  body: any;
}

export async function post(base: string, path: string, body: unknown, init: RequestInit = {}): Promise<JsonReply> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

export async function get(base: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, text: await res.text() };
}

export interface SseReply {
  status: number;
  /** Each event's data, parsed (the final '[DONE]' stays a string). */
  events: any[];
}

/**
 * Posts with "stream": true and reads the events; `onEvent` sees each as it arrives (return true to stop
 * reading and close the connection). A JSON error reply (429, 400) comes back with no events and its body.
 */
export async function stream(base: string, path: string, body: Record<string, unknown>, onEvent?: (data: any, index: number) => boolean | void): Promise<SseReply & { body?: any }> {
  const controller = new AbortController();
  const res = await fetch(`${base}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }), signal: controller.signal,
  });
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) return { status: res.status, events: [], body: await res.json() };
  const events: unknown[] = [];
  const decoder = new TextDecoder();
  let buffered = '';
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let at: number;
      while ((at = buffered.indexOf('\n\n')) >= 0) {
        const block = buffered.slice(0, at);
        buffered = buffered.slice(at + 2);
        const line = block.split('\n').find((l) => l.startsWith('data: '));
        if (!line) continue;
        const raw = line.slice(6);
        const data = raw === '[DONE]' ? raw : JSON.parse(raw);
        events.push(data);
        if (onEvent?.(data, events.length - 1) === true) {
          controller.abort();
          return { status: res.status, events };
        }
      }
    }
  } catch (e) {
    if (!controller.signal.aborted) throw e;
  }
  return { status: res.status, events };
}

/** The text of a completion or chat stream's events. */
export function streamedText(events: any[]): string {
  return events.filter((e) => typeof e === 'object' && e.choices?.length).map((e) => e.choices[0].text ?? e.choices[0].delta?.content ?? '').join('');
}

/** Polls `check` every 10 ms until it holds (or throws after `ms`). */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
