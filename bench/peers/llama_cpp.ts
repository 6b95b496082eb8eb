// The llama.cpp peer of `npm run bench:models`: node-llama-cpp (the Node binding a user would otherwise
// reach for) with its prebuilt CPU binary, run in this process on a GGUF written from the same checkpoint
// gemmkit loads (bench/peers/gguf.ts). bench/peers/setup-llama-cpp.sh installs the pinned versions into
// build/peers/node-llama-cpp; gemmkit itself never loads it. A peer that is not set up is reported, never
// thrown.
//
// How it is run, as its users run it: one context with one sequence, `threads` threads (the same count
// as gemmkit's pool; node-llama-cpp's own default is not the core count), a batch as large as the longest
// prompt so a prefill is one llama_decode, and node-llama-cpp's defaults otherwise (f16 KV cache, flash
// attention 'auto', mmap). Prefill and decode ask for the last position's token (greedy), as gemmkit's
// bench asks for the last position's logits.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
/** Where setup-llama-cpp.sh installs node-llama-cpp. */
export const LLAMA_CPP_INSTALL_DIR = path.join(repoRoot, 'build', 'peers', 'node-llama-cpp');
export const LLAMA_CPP_SETUP_SCRIPT = path.join(repoRoot, 'bench', 'peers', 'setup-llama-cpp.sh');

// ---- the part of node-llama-cpp's API used here (typed locally: it is not installed when typechecking)

type Token = number;
type GenerateNext = { token?: boolean; logits?: boolean };
type EvaluateItem = Token | [Token, { generateNext?: GenerateNext }];
interface EvaluateOutput {
  next: { token?: Token | null; logits?: Map<Token, number> };
}
interface NlcSequence {
  clearHistory(): Promise<void>;
  controlledEvaluate(input: EvaluateItem[]): Promise<Array<EvaluateOutput | undefined>>;
}
interface NlcContext {
  readonly contextSize: number;
  readonly batchSize: number;
  readonly flashAttention: 'auto' | boolean;
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcModel {
  createContext(o: { contextSize: number; batchSize: number; threads: number; sequences: number }): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  readonly buildType: string;
  readonly llamaCppRelease: { repo: string; release: string };
  readonly maxThreads: number;
  readonly systemInfo: string;
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<NlcModel>;
  dispose(): Promise<void>;
}
interface NlcModule {
  getLlama(o: Record<string, unknown>): Promise<NlcLlama>;
  LlamaLogLevel: { error: unknown; warn: unknown };
}

// ---- set-up and status ----------------------------------------------------------------------------------

export interface LlamaCppStatus {
  available: boolean;
  /** The installed version, or why the peer is not available. */
  detail: string;
  version?: string;
}

/** Whether node-llama-cpp is installed in `dir` (default build/peers/node-llama-cpp); reads files only. */
export function llamaCppStatus(dir = LLAMA_CPP_INSTALL_DIR): LlamaCppStatus {
  const pkg = path.join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
  const binary = path.join(dir, 'node_modules', '@node-llama-cpp', 'linux-x64', 'package.json');
  if (!existsSync(pkg) || !existsSync(binary)) {
    return { available: false, detail: `not set up: run ${path.relative(process.cwd(), LLAMA_CPP_SETUP_SCRIPT) || LLAMA_CPP_SETUP_SCRIPT}` };
  }
  const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  return { available: true, detail: `node-llama-cpp ${version}`, version };
}

// ---- running it -----------------------------------------------------------------------------------------

export interface LlamaCppOptions {
  threads: number;
  /** Install directory (default build/peers/node-llama-cpp). */
  dir?: string;
}

/** node-llama-cpp's llama.cpp on the CPU with a fixed thread count. */
export class LlamaCppPeer {
  private constructor(private readonly llama: NlcLlama, readonly threads: number, readonly detail: string) {}

  /** Loads node-llama-cpp's prebuilt CPU binary (never downloads or builds); { error } says why it could not. */
  static async open(opts: LlamaCppOptions): Promise<LlamaCppPeer | { error: string }> {
    const dir = opts.dir ?? LLAMA_CPP_INSTALL_DIR;
    const status = llamaCppStatus(dir);
    if (!status.available) return { error: status.detail };
    try {
      const entry = path.join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
      const nlc = (await import(pathToFileURL(entry).href)) as NlcModule;
      const llama = await nlc.getLlama({
        gpu: false,
        build: 'never',
        usePrebuiltBinaries: true,
        skipDownload: true,
        progressLogs: false,
        logLevel: nlc.LlamaLogLevel.error,
        maxThreads: opts.threads,
      });
      // systemInfo lists the ISA features of the ggml CPU variant it loaded (e.g. AVX512_BF16, AMX_INT8).
      const features = llama.systemInfo.replace(/\s*=\s*1\s*/g, '').split('|').map((s) => s.replace(/^CPU\s*:\s*/, '').trim()).filter((s) => s && !s.includes('= 0'));
      const detail = `${status.detail}, llama.cpp ${llama.llamaCppRelease.release} (${llama.buildType} CPU binary: ${features.join(' ')}), ${opts.threads} threads`;
      return new LlamaCppPeer(llama, opts.threads, detail);
    } catch (e) {
      return { error: `node-llama-cpp did not load: ${(e as Error).message.split('\n')[0]}` };
    }
  }

  /** Loads a GGUF with a context of `contextSize` positions that evaluates up to `batchSize` tokens at once. */
  async load(ggufPath: string, o: { contextSize: number; batchSize: number }): Promise<LlamaCppModel> {
    const model = await this.llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: o.contextSize, batchSize: o.batchSize, threads: this.threads, sequences: 1 });
    return new LlamaCppModel(model, context);
  }

  async dispose(): Promise<void> {
    await this.llama.dispose();
  }
}

export class LlamaCppModel {
  private readonly sequence: NlcSequence;

  constructor(private readonly model: NlcModel, private readonly context: NlcContext) {
    this.sequence = context.getSequence();
  }

  /** What the context runs with, for the bench's header. */
  get settings(): string {
    return `context ${this.context.contextSize}, batch ${this.context.batchSize}, flash attention ${this.context.flashAttention}`;
  }

  /** Starts a new, empty sequence (clears the KV cache). */
  async newSequence(): Promise<void> {
    await this.sequence.clearHistory();
  }

  /** Appends `ids` to the sequence in one batch (a prefill after newSequence); returns the greedy next token. */
  async prefill(ids: readonly number[]): Promise<number> {
    return this.evaluate(ids, { token: true });
  }

  /** Appends one token to the sequence; returns the greedy next token. */
  async decode(id: number): Promise<number> {
    return this.evaluate([id], { token: true });
  }

  /** The logits after `ids` (a new sequence), [vocab] as a Float32Array. */
  async logits(ids: readonly number[], vocab: number): Promise<Float32Array> {
    await this.sequence.clearHistory();
    const items: EvaluateItem[] = [...ids.slice(0, -1), [ids[ids.length - 1], { generateNext: { logits: true } }]];
    const out = (await this.sequence.controlledEvaluate(items)).at(-1)?.next.logits;
    if (out === undefined) throw new Error('node-llama-cpp returned no logits');
    const logits = new Float32Array(vocab);
    for (const [token, value] of out) logits[token] = value;
    return logits;
  }

  private async evaluate(ids: readonly number[], next: GenerateNext): Promise<number> {
    const items: EvaluateItem[] = [...ids.slice(0, -1), [ids[ids.length - 1], { generateNext: next }]];
    const token = (await this.sequence.controlledEvaluate(items)).at(-1)?.next.token;
    if (token === undefined || token === null) throw new Error('node-llama-cpp returned no token');
    return token;
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}

// ---- comparing next-token distributions ----------------------------------------------------------------

export interface LogitsComparison {
  /** max |ours - theirs| / max |ours|. */
  relativeMaxDiff: number;
  topOurs: number;
  topTheirs: number;
  /** Our logit gap between our top token and theirs (0 when they agree): how close a tie it was. */
  topGap: number;
}

const argmax = (a: Float32Array) => {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
};

export function compareLogits(ours: Float32Array, theirs: Float32Array): LogitsComparison {
  if (ours.length !== theirs.length) throw new RangeError(`compareLogits: ${ours.length} logits against ${theirs.length}`);
  let diff = 0, scale = 0;
  for (let i = 0; i < ours.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i] - theirs[i])); // Math.max keeps a NaN
    scale = Math.max(scale, Math.abs(ours[i]));
  }
  const topOurs = argmax(ours), topTheirs = argmax(theirs);
  return { relativeMaxDiff: diff / (scale || 1), topOurs, topTheirs, topGap: ours[topOurs] - ours[topTheirs] };
}
