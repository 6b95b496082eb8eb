// The tuner across processes: the CLI (`gemmkit tune`, as `npm run tune` runs it) and its error paths,
// two tune processes writing one file, GEMMKIT_TUNED_FILE and GEMMKIT_RECORD_UNTUNED with several
// processes recording at once.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { modelGemmShapes, writeRandomLlamaCheckpoint } from '../src/index.js';
import { linearInputDtype } from '../src/models/layers.js';
import { keyString } from '../src/tuner/key.js';
import { UNTUNED_COLUMNS } from '../src/tuner/record.js';
import { readShapesFile } from '../src/tuner/shapes.js';
import { readTunedFile } from '../src/tuner/tuned_file.js';
import { row, runCli, runNode, scratchDir, spec, tunedFileText } from './tuner_helpers.js';

const TINY_LLAMA = {
  hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
  rms_norm_eps: 1e-5, rope_theta: 10000, vocab_size: 50, tie_word_embeddings: false,
};
const FAST = ['--warmup', '0', '--iters', '2', '--fast-iters', '1', '--top-k', '2', '--max-ms-per-shape', '1500', '--rotating-mb', '0'];

describe('gemmkit tune (CLI)', () => {
  it('tunes --shape and --shapes into --out, prints a summary with the geometric mean, and --json', async () => {
    const dir = scratchDir();
    const out = join(dir, 'tuned.csv');
    const shapes = join(dir, 'untuned.csv');
    writeFileSync(shapes, `${UNTUNED_COLUMNS.join(',')}\ncpu,bf16,f32,false,true,plain,bias,9,40,50\n`);
    const r = await runCli(['tune', '--shape', '16x32x48', '--trans-b', '--shapes', shapes, '--out', out, ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/shape\s+default\s+tuned\s+speedup\s+winner/);
    expect(r.stdout).toMatch(/16x32x48 f32->f32 nt/);
    expect(r.stdout).toMatch(/9x40x50 bf16->f32 nt bias/);
    expect(r.stdout).toMatch(/geometric-mean speedup over the default: \d+\.\d+x \(2 shape\(s\)\)/);
    expect(r.stderr).toMatch(/\[1\/2\] 16x32x48/); // not a terminal: one line per shape
    expect(readTunedFile(out).rows).toHaveLength(2);
    const j = await runCli(['tune', '--shape', '3x8x8', '--out', out, '--json', '--quiet', ...FAST]);
    expect(j.code, j.stderr).toBe(0);
    const parsed = JSON.parse(j.stdout);
    expect(parsed.shapes[0].row.config).toMatch(/^cpu\./);
    expect(parsed.shapes[0].candidates.length).toBeGreaterThan(1);
    expect(parsed.validators.backend).toBe('cpu');
    expect(j.stderr).toBe('');
    expect(readTunedFile(out).rows).toHaveLength(3);
  });

  it('two tune processes writing one file lose no rows', async () => {
    const out = join(scratchDir(), 'shared.csv');
    const a = ['4x16x16', '5x16x16', '6x16x16', '7x16x16'];
    const b = ['8x16x16', '9x16x16', '10x16x16', '7x16x16'];
    const args = (shapes: string[]) => ['tune', ...shapes.flatMap((s) => ['--shape', s]), '--out', out, '--quiet', ...FAST];
    const [ra, rb] = await Promise.all([runCli(args(a)), runCli(args(b))]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    const ms = readTunedFile(out).rows.map((r) => r.m).sort((x, y) => x - y);
    expect(ms).toEqual([4, 5, 6, 7, 8, 9, 10]);
  });

  it('--devices 0,1 on the CPU tunes on its one device and says so', async () => {
    const out = join(scratchDir(), 'dev.csv');
    const r = await runCli(['tune', '--shape', '4x8x8', '--devices', '0,1', '--out', out, ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/backend 'cpu' has one device; --devices 0,1 tunes every shape on device 0/);
    expect(readTunedFile(out).rows).toHaveLength(1);
  });

  const errors: [string, string[], RegExp][] = [
    ['no shapes', ['tune'], /give the shapes to tune with --shape/],
    ['a shape with two dimensions', ['tune', '--shape', '12x3'], /--shape "12x3" is not MxNxK/],
    ['a shape with letters', ['tune', '--shape', 'axbxc'], /--shape "axbxc" is not MxNxK/],
    ['a zero dimension', ['tune', '--shape', '0x4x4'], /--shape "0x4x4" is not MxNxK with positive integers/],
    ['four dimensions', ['tune', '--shape', '1x2x3x4'], /is not MxNxK/],
    ['an unknown option', ['tune', '--shape', '4x4x4', '--frobnicate'], /unknown option '--frobnicate'/],
    ['an unknown command', ['tunes'], /unknown command 'tunes'/],
    ['a bad dtype', ['tune', '--shape', '4x4x4', '--dtype', 'f64'], /option '--dtype <dtype>' argument 'f64' is invalid/],
    ['a bad backend', ['tune', '--shape', '4x4x4', '--backend', 'tpu'], /argument 'tpu' is invalid/],
    ['a backend that is not built', ['tune', '--shape', '4x4x4', '--backend', 'cuda'], /backend 'cuda' is not available/],
    ['a bad iteration count', ['tune', '--shape', '4x4x4', '--iters', '0'], /--iters <n>' argument '0' is invalid. expected an integer >= 1/],
    ['a bad device list', ['tune', '--shape', '4x4x4', '--devices', 'a,b'], /comma-separated list of integers/],
    ['--device with --devices', ['tune', '--shape', '4x4x4', '--device', '0', '--devices', '0'], /either --device or --devices/],
    ['a missing shapes file', ['tune', '--shapes', '/nonexistent/shapes.csv'], /--shapes \/nonexistent\/shapes.csv: cannot read the file \(ENOENT\)/],
    ['--model without --batch', ['tune', '--model', 'm.safetensors'], /--model needs --batch/],
    ['--batch without --model', ['tune', '--shape', '4x4x4', '--batch', '1,8'], /--batch is only meaningful with --model/],
    ['a bad drop factor', ['tune', '--shape', '4x4x4', '--drop-factor', '0.5'], /--drop-factor must be >= 1/],
  ];
  for (const [what, args, want] of errors) {
    it(`error: ${what}`, async () => {
      const r = await runCli(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(want);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    });
  }

  it('error: a malformed shapes file names the file and line', async () => {
    const dir = scratchDir();
    const f = join(dir, 'bad.csv');
    writeFileSync(f, `${UNTUNED_COLUMNS.join(',')}\ncpu,f32,f32,false,true,plain,none,4,4,4\ncpu,f32,f32,maybe,true,plain,none,4,4,4\n`);
    const r = await runCli(['tune', '--shapes', f]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${f}:3: not a valid row`);
    writeFileSync(f, 'a,b,c\n1,2,3\n');
    expect((await runCli(['tune', '--shapes', f])).stderr).toContain(`${f}:1: unknown shape file header`);
  });

  it('error: a malformed --out file is named with its line and never overwritten', async () => {
    const f = join(scratchDir(), 'out.csv');
    const text = tunedFileText([row(spec(8, 8, 8), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')]).replace(/,ok\n$/, ',o');
    writeFileSync(f, text);
    const r = await runCli(['tune', '--shape', '4x4x4', '--out', f, ...FAST]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${f}:9: column status is "o"`);
    expect(readFileSync(f, 'utf8')).toBe(text);
  });

  it('error: --model with a file that is not a model names it', async () => {
    const r = await runCli(['tune', '--model', '/nonexistent/x.safetensors', '--batch', '1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--model \/nonexistent\/x\.safetensors: /);
  });

  it('--model --batch tunes exactly the GEMMs forward runs, and forward then dispatches from the file', async () => {
    const dir = scratchDir();
    const model = join(dir, 'llama');
    writeRandomLlamaCheckpoint(model, TINY_LLAMA, { dtype: 'bf16', seed: 1 });
    const out = join(dir, 'tuned.csv');
    const r = await runCli(['tune', '--model', model, '--batch', '1,3', '--out', out, '--quiet', ...FAST]);
    expect(r.code, r.stderr).toBe(0);
    const want = await modelGemmShapes(model, [1, 3]);
    const rows = readTunedFile(out).rows;
    // q/k/v/o, gate/up/down and the head at two batch sizes; k_proj and v_proj share a key.
    expect(new Set(rows.map(keyString))).toEqual(new Set(want.map((s) => keyString({ ...s, dtypeB: s.dtype, outDtype: s.dtypeC, transA: false, prepacked: true }))));
    for (const row of rows) expect(row).toMatchObject({ dtypeA: linearInputDtype('bf16'), dtypeB: 'bf16', outDtype: 'f32', transB: true, prepacked: true });
    // A decode step of the loaded model: every weight GEMM finds its tuned row.
    const check = `
      import { loadModel, forward, createKVCache, explain, setTunedFile } from './src/index.js';
      import { observeLinear } from './src/models/index.js';
      setTunedFile(${JSON.stringify(out)});
      const model = await loadModel(${JSON.stringify(model)});
      const sources = [];
      observeLinear((c) => sources.push(explain(c.x, c.weight.packed, { transB: true, bias: c.bias, activation: c.activation, outDtype: 'f32' }).source));
      await forward(model, [[1, 2, 3]]);
      const cache = createKVCache(model, 1, 8);
      await forward(model, [5], { cache });
      console.log(JSON.stringify(sources));
    `;
    const f = await runNode(['--input-type=module', '-e', check]);
    expect(f.code, f.stderr).toBe(0);
    const sources = JSON.parse(f.stdout) as string[];
    expect(sources.length).toBeGreaterThan(8);
    expect(new Set(sources)).toEqual(new Set(['tuned']));
  });

  it('gemmkit info prints the machine, the libraries and the tuned files', async () => {
    const r = await runCli(['info']);
    expect(r.code, r.stderr).toBe(0);
    const i = JSON.parse(r.stdout);
    expect(i.cpu.model).toBeTruthy();
    expect(Array.isArray(i.tunedFiles)).toBe(true);
  });
});

describe('shape files', () => {
  it('reads a gemmkit tuned file: its rows\' keys, each labelled with its line', () => {
    const f = join(scratchDir(), 'tuned.csv');
    const specs = [spec(8, 16, 16), spec(3, 40, 50, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'f32', bias: true, prepacked: true })];
    writeFileSync(f, tunedFileText(specs.map((s) => row(s, 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1'))));
    const lines = readTunedFile(f).rows.map((r) => `${f}:${r.line}`);
    const shapes = readShapesFile(f, { dtype: 'f16', transA: true, transB: false, bias: false, activation: 'relu' });
    expect(shapes.map(keyString).sort()).toEqual(specs.map(keyString).sort());
    expect(shapes.map((s) => s.label).sort()).toEqual(lines.sort());
  });

  it('reads the vLLM/Gradlib format M,N,K,bias,dtype as x @ W^T', () => {
    const f = join(scratchDir(), 'gradlib.csv');
    writeFileSync(f, 'M,N,K,bias,dtype\n1,4096,4096,False,torch.bfloat16\n32,14336,4096,True,torch.float16\n8,128,64,False,torch.float32\n');
    const shapes = readShapesFile(f, { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' });
    expect(shapes.map((s) => [s.m, s.n, s.k, s.dtypeA, s.outDtype, s.transB, s.bias])).toEqual([
      [1, 4096, 4096, 'bf16', 'bf16', true, false],
      [32, 14336, 4096, 'f16', 'f16', true, true],
      [8, 128, 64, 'f32', 'f32', true, false],
    ]);
    writeFileSync(f, 'M,N,K,bias,dtype,outdtype\n1,64,64,False,torch.bfloat16,torch.float32\n');
    expect(readShapesFile(f, { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' })[0].outDtype).toBe('f32');
    for (const [bad, want] of [
      ['1,64,64,False,torch.int8', /:2: dtype "torch.int8" is not one of/],
      ['1,64,64,maybe,torch.float32', /:2: bias must be True or False/],
      ['1,0,64,False,torch.float32', /:2: M, N and K must be positive integers/],
      ['1,64,False,torch.float32', /:2: has 4 fields but the header has 5/],
    ] as const) {
      writeFileSync(f, `M,N,K,bias,dtype\n${bad}\n`);
      expect(() => readShapesFile(f, { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' })).toThrow(want);
    }
  });
});

describe('GEMMKIT_TUNED_FILE and GEMMKIT_RECORD_UNTUNED in a fresh process', () => {
  // A script that runs a few matmuls and prints what explain() says for the first.
  const script = (shapes: number[][]) => `
    import { explain, matmulSync, tensor } from './src/index.js';
    process.on('warning', (w) => console.error('WARNING ' + w.message));
    const z = (r, c) => tensor(new Float32Array(r * c), [r, c]);
    const shapes = ${JSON.stringify(shapes)};
    for (const [m, n, k] of shapes) for (let i = 0; i < 3; i++) matmulSync(z(m, k), z(n, k), { transB: true });
    const [m, n, k] = shapes[0];
    console.log(JSON.stringify(explain(z(m, k), z(n, k), { transB: true })));
  `;
  const run = (shapes: number[][], env: Record<string, string>) => runNode(['--input-type=module', '-e', script(shapes)], env);

  it('dispatches from GEMMKIT_TUNED_FILE; a malformed one is warned about once and not used', async () => {
    const dir = scratchDir();
    const good = join(dir, 'good.csv'), bad = join(dir, 'bad.csv');
    writeFileSync(good, tunedFileText([row(spec(8, 16, 16), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')]));
    writeFileSync(bad, 'garbage\n');
    const r = await run([[8, 16, 16]], { GEMMKIT_TUNED_FILE: `${bad}:${good}` });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ source: 'tuned', config: 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1' });
    expect(r.stderr.match(/WARNING/g)).toHaveLength(1);
    expect(r.stderr).toContain(`${bad}:1: not a gemmkit tuned file`);
  });

  it('records each missed key once, with several processes appending to one file', async () => {
    const dir = scratchDir();
    const rec = join(dir, 'untuned.csv');
    const tuned = join(dir, 'tuned.csv');
    writeFileSync(tuned, tunedFileText([row(spec(8, 16, 16), 'cpu.scalar.f32.4x8.mc8.kc16.nc16.t1')]));
    const sets = [
      [[8, 16, 16], [1, 32, 32], [2, 32, 32], [3, 32, 32]], // 8x16x16 is tuned: not recorded
      [[3, 32, 32], [2, 32, 32], [5, 16, 16], [1, 32, 32]], // 5x16x16: a bucket hit, still recorded
      [[1, 32, 32], [4, 32, 32], [3, 32, 32], [2, 32, 32]],
      [[4, 32, 32], [1, 32, 32], [2, 32, 32], [3, 32, 32]],
    ];
    const results = await Promise.all(sets.map((s) => run(s, { GEMMKIT_RECORD_UNTUNED: rec, GEMMKIT_TUNED_FILE: tuned })));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const lines = readFileSync(rec, 'utf8').trim().split('\n');
    expect(lines[0]).toBe(UNTUNED_COLUMNS.join(','));
    const keys = lines.slice(1);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.map((l) => l.split(',').slice(7).join('x')).sort()).toEqual(['1x32x32', '2x32x32', '3x32x32', '4x32x32', '5x16x16']);
    // The recorded file is a shape file the tuner reads.
    const shapes = readShapesFile(rec, { dtype: 'f32', transA: false, transB: false, bias: false, activation: 'none' });
    expect(shapes.map(keyString)).toContain(keyString(spec(5, 16, 16)));
    // A second round of the same processes adds nothing.
    await Promise.all(sets.map((s) => run(s, { GEMMKIT_RECORD_UNTUNED: rec, GEMMKIT_TUNED_FILE: tuned })));
    expect(readFileSync(rec, 'utf8').trim().split('\n')).toHaveLength(6);
  });
});
