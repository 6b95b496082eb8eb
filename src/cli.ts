#!/usr/bin/env node
// The gemmkit command: `gemmkit tune ...` (also `npm run tune -- ...`), `gemmkit info`, and text generation:
// `gemmkit run <checkpoint> --prompt ...` and `gemmkit serve <checkpoint>`.
import { Command, InvalidArgumentError, Option } from 'commander';
import { type Device, parseDevice } from './device.js';
import { type DType, DTYPES } from './dtype.js';
import { info } from './info.js';
import { type BackendName, resolveBackend } from './backend.js';
import { ACTIVATIONS, type Activation, GPU_BACKENDS, cpuNative, isEmulatedBackend } from './native.js';
import { tunedFiles } from './tuner/dispatch.js';
import { type GemmSpec, parseInteger } from './tuner/key.js';
import { progressReporter, summaryJson, summaryText } from './tuner/report.js';
import { type ShapeDefaults, modelShapes, parseShapeArg, readShapesFile } from './tuner/shapes.js';
import { DEFAULT_TUNE_OPTIONS, type TuneOptions, tune } from './tuner/tune.js';
import { VERSION } from './version.js';

function integer(min: number) {
  return (v: string): number => {
    const x = parseInteger(v, min);
    if (x === undefined) throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return x;
  };
}

function positiveNumber(v: string): number {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || x < 0) throw new InvalidArgumentError('expected a number >= 0');
  return x;
}

function intList(v: string): number[] {
  const parts = v.split(',');
  if (parts.some((p) => !/^[0-9]+$/.test(p.trim()))) throw new InvalidArgumentError('expected a comma-separated list of integers, e.g. 1,8,32');
  return parts.map((p) => Number(p.trim()));
}

function collect(v: string, previous: string[]): string[] {
  return [...previous, v];
}

// Commander's parse of `gemmkit tune`: the tuning options under their own names, plus what picks the shapes.
interface TuneCliOptions extends TuneOptions {
  shapes: string[];
  shape: string[];
  model?: string;
  batch?: number[];
  backend: BackendName;
  device?: number;
  devices?: number[];
  dtype: DType;
  outDtype?: DType;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  prepacked: boolean;
  activation: Activation;
  out: string;
  resume: boolean;
  json: boolean;
  quiet: boolean;
}

async function runTune(o: TuneCliOptions, cmd: Command): Promise<void> {
  if (o.shapes.length === 0 && o.shape.length === 0 && !o.model) {
    cmd.error('error: give the shapes to tune with --shape MxNxK, --shapes file.csv or --model file.safetensors --batch 1,8');
  }
  if (o.model && !o.batch) cmd.error('error: --model needs --batch with the batch sizes (M) to tune, e.g. --batch 1,8,32,128');
  if (o.batch && !o.model) cmd.error('error: --batch is only meaningful with --model');
  if (o.batch?.some((b) => b < 1)) cmd.error('error: --batch sizes must be >= 1');
  if (o.device !== undefined && o.devices) cmd.error('error: give either --device or --devices, not both');
  if (o.iters < 1 || o.fastIters < 1) cmd.error('error: --iters and --fast-iters must be >= 1');
  if (o.dropFactor < 1) cmd.error('error: --drop-factor must be >= 1');
  const defaults: ShapeDefaults = {
    dtype: o.dtype, outDtype: o.outDtype, transA: o.transA, transB: o.transB, bias: o.bias, activation: o.activation, prepacked: o.prepacked,
  };
  const shapes: GemmSpec[] = [];
  for (const s of o.shape) shapes.push(parseShapeArg(s, defaults));
  for (const f of o.shapes) shapes.push(...readShapesFile(f, defaults));
  // --model lists what forward runs on the device it is tuned for (prepacked on the CPU, plain on a GPU).
  const modelDevice: Device = o.backend === 'cuda' || o.backend === 'hip' ? `${o.backend}:${o.device ?? o.devices?.[0] ?? 0}` : 'cpu';
  if (o.model) shapes.push(...(await modelShapes(o.model, o.batch!, defaults, modelDevice)));
  const backend = { name: o.backend === 'auto' ? 'cpu' : o.backend, native: resolveBackend('gemmkit tune', o.backend) };
  if (o.device !== undefined) {
    // One device named: it must exist (--devices spreads shapes over what there is, see tune()).
    const count = backend.native.info().backends.find((b) => b.name === backend.name)?.devices.length ?? 0;
    if (o.device >= count) {
      const which = count === 1 ? ' (device 0)' : count > 1 ? ` (0 to ${count - 1})` : '';
      cmd.error(`error: --device ${o.device} does not exist: backend '${backend.name}' has ${count} device(s)${which}`);
    }
  }
  const opts: TuneOptions = {
    warmup: o.warmup, iters: o.iters, fastIters: o.fastIters, topK: o.topK, dropFactor: o.dropFactor,
    maxMsPerShape: o.maxMsPerShape, rotatingMb: o.rotatingMb, check: o.check, checkTol: o.checkTol, noisePct: o.noisePct,
  };
  // An emulated GPU's timings never go to a tuned file: without --out nothing is written (an explicit
  // --out is refused by tune() with the reason).
  const emulated = isEmulatedBackend(backend.name);
  const out = emulated && cmd.getOptionValueSource('out') === 'default' ? undefined : o.out;
  const progress = progressReporter(o.quiet);
  const started = performance.now();
  let summary;
  try {
    summary = await tune({
      backend, cpu: cpuNative(), shapes, opts, out, resume: o.resume, devices: o.devices ?? [o.device ?? 0],
      onEvent: progress.onEvent, onNote: (m) => process.stderr.write(`gemmkit tune: ${m}\n`),
    });
  } finally {
    progress.stop();
  }
  const wall = performance.now() - started;
  process.stdout.write(`${o.json ? summaryJson(summary, out, wall) : summaryText(summary, out, wall)}\n`);
  if (emulated && !o.json) {
    process.stdout.write(`timings are emulated: host time of the CPU emulator running the ${backend.name} kernels, not GPU time; no tuned file was written\n`);
  }
  if (summary.results.some((r) => !r.row)) process.exitCode = 1;
}

const program = new Command('gemmkit').version(VERSION).description('GEMM kernels for Node with a Gradlib-style tuner');

program
  .command('tune')
  .description('time every candidate kernel config for each shape, check it against a reference, and merge the winners into a tuned file')
  .option('--shapes <file>', 'CSV of shapes (GEMMKIT_RECORD_UNTUNED output, vLLM/Gradlib M,N,K,bias,dtype, or a tuned file); repeatable', collect, [])
  .option('--shape <MxNxK>', 'one shape, e.g. 128x4096x4096; repeatable', collect, [])
  .option('--model <file>', 'a model (gemmkit MLP .safetensors or Llama checkpoint): the GEMMs forward runs on --backend\'s device, at each --batch size')
  .option('--batch <list>', 'batch sizes (M) for --model, e.g. 1,8,32,128', intList)
  .addOption(new Option('--backend <name>', 'backend to tune (emu-cuda, emu-hip: the emulated GPUs, timed but never written to --out)')
    .choices(['cpu', ...GPU_BACKENDS]).default('cpu'))
  .option('--device <n>', 'device index', integer(0))
  .option('--devices <list>', 'device indices to split the shapes over, e.g. 0,1 (the CPU has one)', intList)
  .addOption(new Option('--dtype <dtype>', 'input dtype for --shape').choices([...DTYPES]).default('f32'))
  .addOption(new Option('--out-dtype <dtype>', 'output dtype (default: the input dtype)').choices([...DTYPES]))
  .option('--trans-a', 'A is stored transposed ([K, M]) for --shape', false)
  .option('--trans-b', 'B is stored transposed ([N, K], x @ W^T) for --shape', false)
  .option('--bias', 'with a bias epilogue, for --shape', false)
  .option('--prepacked', 'B is a prepack()ed weight, for --shape and --shapes (--model always is)', false)
  .addOption(new Option('--activation <act>', 'activation epilogue for --shape').choices([...ACTIVATIONS]).default('none'))
  .option('--warmup <n>', 'untimed runs before the final timing', integer(0), DEFAULT_TUNE_OPTIONS.warmup)
  .option('--iters <n>', 'timed runs per finalist', integer(1), DEFAULT_TUNE_OPTIONS.iters)
  .option('--fast-iters <n>', 'timed runs per candidate in the fast pass', integer(1), DEFAULT_TUNE_OPTIONS.fastIters)
  .option('--top-k <n>', 'candidates re-timed in the final rounds', integer(1), DEFAULT_TUNE_OPTIONS.topK)
  .option('--drop-factor <x>', 'drop a candidate slower than x times the best in the fast pass', positiveNumber, DEFAULT_TUNE_OPTIONS.dropFactor)
  .option('--max-ms-per-shape <ms>', 'time budget per shape', integer(1), DEFAULT_TUNE_OPTIONS.maxMsPerShape)
  .option('--rotating-mb <mb>', 'inputs rotate through copies of at least this many MiB (0: cache-hot)', positiveNumber, DEFAULT_TUNE_OPTIONS.rotatingMb)
  .option('--check-tol <x>', 'allowed check error per unit of magnitude (default 16 sqrt(K) 2^-24)', positiveNumber)
  .option('--no-check', 'skip the numerical check (rows are marked unchecked)')
  .option('--noise-pct <p>', 'keep the default unless the winner is faster by more than p percent', positiveNumber, DEFAULT_TUNE_OPTIONS.noisePct)
  .option('--out <file>', 'tuned file to merge the results into', 'gemmkit_tuned.csv')
  .option('--resume', 'skip shapes the out file already has', false)
  .option('--json', 'print machine-readable results instead of the summary table', false)
  .option('--quiet', 'no progress output', false)
  .action(async (o: TuneCliOptions, cmd: Command) => runTune(o, cmd));

program
  .command('info')
  .description('print what gemmkit found on this machine (backends, CPU features, kernels, libraries, tuned files)')
  .action(() => {
    process.stdout.write(`${JSON.stringify({ ...info(), tunedFiles: tunedFiles() }, null, 2)}\n`);
  });

// --- text generation: run and serve ---------------------------------------------------------------------

function probability(v: string): number {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || x < 0 || x > 1) throw new InvalidArgumentError('expected a number in [0, 1]');
  return x;
}

function anyInteger(v: string): number {
  if (!/^-?[0-9]+$/.test(v.trim()) || !Number.isSafeInteger(Number(v))) throw new InvalidArgumentError('expected an integer');
  return Number(v);
}

// Where the model runs: 'cpu', 'cuda:<n>', 'hip:<n>' or 'auto' (loadModel checks that it is there).
function checkDevice(cmd: Command, device: string): Device | 'auto' {
  if (device === 'auto') return device;
  try {
    parseDevice('--device', device);
  } catch (e) {
    cmd.error(`error: ${(e as Error).message}`);
  }
  return device as Device;
}

interface RunCliOptions {
  prompt: string;
  chat: boolean;
  system?: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  seed?: number;
  stop: string[];
  device: string;
}

program
  .command('run')
  .description('generate text from a checkpoint directory (config.json, safetensors weights, tokenizer.json) and stream it to stdout')
  .argument('<checkpoint>', 'checkpoint directory')
  .requiredOption('--prompt <text>', 'the prompt')
  .option('--chat', 'send the prompt as a user message through the chat template', false)
  .option('--system <text>', 'with --chat: a system message first')
  .option('--max-tokens <n>', 'tokens to generate at most', integer(1), 128)
  .option('--temperature <t>', 'sampling temperature; 0: greedy', positiveNumber, 0)
  .option('--top-k <k>', 'sample among the k most likely tokens (0: all)', integer(0), 0)
  .option('--top-p <p>', 'nucleus sampling: the most likely tokens adding up to p', probability, 1)
  .option('--min-p <p>', 'drop tokens less likely than p times the most likely', probability, 0)
  .option('--repetition-penalty <x>', 'penalty for tokens already seen (1: off)', positiveNumber, 1)
  .option('--seed <n>', 'seed of the sampler (same seed, same text)', anyInteger)
  .option('--stop <text>', 'stop when the text contains this; repeatable', collect, [])
  .option('--device <device>', "where the model runs: cpu, cuda:<n>, hip:<n> or auto (the first GPU, else the CPU)", 'cpu')
  .action(async (checkpoint: string, o: RunCliOptions, cmd: Command) => {
    const device = checkDevice(cmd, o.device);
    if (o.system !== undefined && !o.chat) cmd.error('error: --system needs --chat');
    const [{ stream }, { loadModel }, { loadTokenizer }] = await Promise.all([import('./generate.js'), import('./models/index.js'), import('./text/tokenizer.js')]);
    const tokenizer = loadTokenizer(checkpoint);
    const model = await loadModel(checkpoint, { device });
    const prompt = o.chat ? [...(o.system === undefined ? [] : [{ role: 'system', content: o.system }]), { role: 'user', content: o.prompt }] : o.prompt;
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort());
    try {
      for await (const piece of stream(model, prompt, {
        tokenizer, maxNewTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP,
        repetitionPenalty: o.repetitionPenalty, seed: o.seed, stop: o.stop, signal: abort.signal,
      })) process.stdout.write(piece);
    } catch (e) {
      if (!abort.signal.aborted) throw e;
    }
    process.stdout.write('\n');
  });

interface ServeCliOptions {
  host: string;
  port: number;
  maxBatch: number;
  maxQueue: number;
  contextLength?: number;
  modelName?: string;
  shutdownTimeout: number;
  device: string;
  log: boolean;
}

program
  .command('serve')
  .description('serve a checkpoint over HTTP: OpenAI-compatible /v1/completions and /v1/chat/completions, /health, /metrics')
  .argument('<checkpoint>', 'checkpoint directory (config.json, safetensors weights, tokenizer.json, tokenizer_config.json)')
  .option('--host <address>', 'address to listen on', '127.0.0.1')
  .option('--port <n>', 'port (0: any free one)', integer(0), 8000)
  .option('--max-batch <n>', 'requests decoded together (KV cache slots)', integer(1), 8)
  .option('--max-queue <n>', 'requests waiting for a slot before more get HTTP 429', integer(0), 64)
  .option('--context-length <n>', 'positions per request, prompt and output (default: max_position_embeddings, at most 2048)', integer(1))
  .option('--model-name <name>', 'the model name clients send (default: the directory name)')
  .option('--shutdown-timeout <ms>', 'on SIGTERM or SIGINT, how long in-flight requests may finish before they are cancelled', integer(0), 10_000)
  .option('--device <device>', "where the model runs: cpu, cuda:<n>, hip:<n> or auto (the first GPU, else the CPU)", 'cpu')
  .option('--log', 'log every request (JSON lines on stdout)', false)
  .action(async (checkpoint: string, o: ServeCliOptions, cmd: Command) => {
    const device = checkDevice(cmd, o.device);
    const { serveCheckpoint } = await import('./serve/index.js');
    const server = await serveCheckpoint(checkpoint, {
      device, host: o.host, port: o.port, maxBatch: o.maxBatch, maxQueue: o.maxQueue, contextLength: o.contextLength,
      modelName: o.modelName, shutdownTimeoutMs: o.shutdownTimeout, logger: o.log,
    });
    const { maxBatch, maxQueue, contextLength } = server.options;
    process.stderr.write(`gemmkit serve: '${server.modelName}' on ${server.url} (max batch ${maxBatch}, queue ${maxQueue}, context ${contextLength} tokens)\n`);
    const stop = (signal: string) => {
      process.stderr.write(`gemmkit serve: ${signal}: finishing in-flight requests (up to ${o.shutdownTimeout} ms), then closing\n`);
      server.shutdown().then(() => process.stderr.write('gemmkit serve: closed\n'), (e: Error) => {
        process.stderr.write(`gemmkit serve: ${e.message}\n`);
        process.exitCode = 1;
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

program.parseAsync(process.argv).catch((e: Error) => {
  process.stderr.write(`gemmkit: ${e.message}\n`);
  process.exitCode = 1;
});
