// The emulated GPUs (emu-cuda, emu-hip; npm run build:emu): the emulator's instruction self-tests, a
// fast subset of the GPU kernel checks under emulation (npm run test:emu runs every config and the
// full op plan), the planted defects the emulator must name, and the emulated backends behind the
// public API: device tensors, matmul, the ops, explain, info() and the tuner, which times them but
// never writes their rows.
// Skipped where the emulator is not built, unless GEMMKIT_REQUIRE_EMU=1 (CI) makes that a failure.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstGpuDevice, parseDevice } from '../src/device.js';
import { type DType, explain, info, matmul, matmulSync, tensor, zeros } from '../src/index.js';
import { type GpuBackendName, type NativeGpuAddon, cpuNative, gpuAddonPath, isEmulatedBackend, loadGpuAddon } from '../src/native.js';
import { add, argmax, attention, columns, kvStore, rmsNorm, rope, ropeTables, softmax, swiglu } from '../src/ops.js';
import { tune } from '../src/tuner/tune.js';
import { expectMatches, intTensor, randTensor, referenceMatmul, rng } from './helpers.js';
import { QUICK, ROOT, runCli, runNode, scratchDir, spec } from './tuner_helpers.js';

const REQUIRE = process.env.GEMMKIT_REQUIRE_EMU === '1';
const BUILD = join(ROOT, 'build-emu');
const built = existsSync(join(BUILD, 'gemmkit-emu-cuda-check')) && existsSync(gpuAddonPath('emu-cuda'));

interface Run {
  code: number | null;
  out: string;
}

function runBinary(name: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(BUILD, name), args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

it.runIf(REQUIRE)('the emulator is built (GEMMKIT_REQUIRE_EMU=1)', () => {
  expect(built, `no ${BUILD}/gemmkit-emu-cuda-check or ${gpuAddonPath('emu-cuda')}: run npm run build:emu`).toBe(true);
});

describe.runIf(built || REQUIRE)('the CPU emulator of the GPU kernels', () => {
  for (const flavour of ['cuda', 'hip']) {
    it(`emu-${flavour}: every emulated instruction and check against its plain reference`, async () => {
      const r = await runBinary(`gemmkit-emu-${flavour}-selftest`, []);
      expect(r.out).not.toMatch(/^FAIL/m);
      expect(r.out).toMatch(/ tests, 0 failures/);
      expect(r.code).toBe(0);
      const instructions = flavour === 'cuda'
        ? ['mma.m16n8k16 bf16', 'mma.m16n8k16 f16', 'ldmatrix.x4 (PTX layout)', 'ldmatrix.x4.trans (PTX layout)', 'cp.async 16 bytes', 'shfl.xor lane mask 16']
        : ['v_mfma_f32_32x32x8 bf16', 'v_mfma_f32_32x32x8 f16', 'shfl.xor lane mask 32'];
      for (const name of instructions) expect(r.out).toContain(`ok   ${name}`);
    });
  }

  // A config of each family and table at the edge sizes, among them those the planted defects below
  // break (npm run test:emu runs every config).
  const subset: Record<string, string[]> = {
    cuda: ['cuda.sm80.any.simt.64x64x16.w4.s1', 'cuda.sm80.bf16.mma.128x128x32.w4.s3.g8', 'cuda.sm80.f16.mma.64x64x64.w4.s3.sk4',
      'cuda.sm90a.f16.mma.128x128x32.w4.s6.g8', 'cuda.sm80.bf16.skinny.4x8x1024.w4.s1.sk4'],
    hip: ['hip.gfx942.any.simt.64x64x16.w4.s1.sk4', 'hip.gfx942.bf16.mfma.128x128x32.w4.s2.g8', 'hip.gfx90a.f16.mfma.64x64x64.w4.s2.sk4',
      'hip.gfx942.f32.skinny.16x4x1024.w4.s1'],
  };
  for (const flavour of ['cuda', 'hip']) {
    it(`emu-${flavour}: a kernel of each family agrees with the float64 reference at the tile edges`, async () => {
      const r = await runBinary(`gemmkit-emu-${flavour}-check`, ['--edges', ...subset[flavour].flatMap((c) => ['--config', c])]);
      expect(r.out).not.toMatch(/^FAIL/m);
      for (const c of subset[flavour]) expect(r.out).toMatch(new RegExp(`^ok   ${c.replace(/\./g, '\\.')}: 15 problems$`, 'm'));
      expect(r.out).toMatch(new RegExp(`^${subset[flavour].length} configs, ${15 * subset[flavour].length} checks, 0 failures$`, 'm'));
      expect(r.code).toBe(0);
    });
  }

  for (const flavour of ['cuda', 'hip']) {
    it(`emu-${flavour}: every op kernel agrees with the float64 reference (the quick plan of gemmkit-gpu-ops-check)`, async () => {
      const r = await runBinary(`gemmkit-emu-${flavour}-ops-check`, ['--quick']);
      expect(r.out).not.toMatch(/^FAIL/m);
      for (const part of ['row ops', 'in place', 'argmax ties and NaN', 'rope', 'kv store', 'attention', 'rejections']) {
        expect(r.out).toMatch(new RegExp(`^ok   ${part}: \\d+ checks$`, 'm'));
      }
      expect(r.out).toMatch(/^\d+ checks, 0 failures$/m);
      expect(r.code).toBe(0);
    });
  }

  // Each planted defect (GEMMKIT_PLANT_*, built only into gemmkit-emu-planted-*) must fail its kernel's
  // check for the right reason; the same config passes without the defect (above, and npm run test:emu).
  const planted: { defect: string; config: string; why: RegExp }[] = [
    {
      defect: 'bounds-off-by-one', config: 'cuda.sm80.any.simt.64x64x16.w4.s1',
      why: /^FAIL .* cuda\.sm80\.any\.simt\.64x64x16\.w4\.s1: emulated CUDA launch of the GEMM kernel for cuda\.sm80\.any\.simt\.64x64x16\.w4\.s1 failed: emuErrorKernelFault: cuda\.sm80\.any\.simt\.64x64x16\.w4\.s1, block \(\d+,0,0\), thread \(\d+,0,0\): global read of [24] bytes at 0x[0-9a-f]+ is outside every device buffer of the launch: \d+ bytes past the end of device buffer #\d+/m,
    },
    {
      defect: 'missing-cp-async-wait', config: 'cuda.sm80.bf16.mma.128x128x32.w4.s3.g8',
      why: /^FAIL .*: emuErrorKernelFault: cuda\.sm80\.bf16\.mma\.128x128x32\.w4\.s3\.g8, block \(\d+,0,\d+\), thread \(\d+,0,0\): shared-memory read of 16 bytes at offset \d+ touches bytes that (this thread|thread \(\d+,0,0\)) is still copying with cp\.async: they arrive only at the cp\.async\.wait_group covering that copy/m,
    },
    {
      defect: 'swapped-fragment', config: 'cuda.sm80.bf16.mma.128x128x32.w4.s3.g8',
      why: /^FAIL .* cuda\.sm80\.bf16\.mma\.128x128x32\.w4\.s3\.g8: relative error [0-9.e+-]+ > [0-9.e+-]+\n {5}worst element of cuda\.sm80\.bf16\.mma\.128x128x32\.w4\.s3\.g8: item \d+, row \d+, col \d+: got -?[0-9.e+-]+, want -?[0-9.e+-]+$/m,
    },
    {
      defect: 'missing-barrier', config: 'hip.gfx942.bf16.mfma.128x128x32.w4.s2.g8',
      why: /^FAIL .*: emuErrorKernelFault: hip\.gfx942\.bf16\.mfma\.128x128x32\.w4\.s2\.g8, block \(\d+,0,\d+\), thread \(\d+,0,0\): shared-memory race at offset \d+: this thread (writes|reads) a byte that thread \(\d+,0,0\) (read|wrote) since the last __syncthreads\(\)/m,
    },
  ];
  for (const p of planted) {
    it(`a planted defect is named: ${p.defect} in ${p.config}`, async () => {
      const r = await runBinary(`gemmkit-emu-planted-${p.defect}`, ['--edges', '--config', p.config], { GEMMKIT_EMU_THREADS: '1' });
      expect(r.out).toMatch(new RegExp(`^FAIL ${p.config.replace(/\./g, '\\.')}: 15 problems$`, 'm'));
      expect(r.out).toMatch(p.why);
      expect(r.code).toBe(1);
    });
  }

});

describe.runIf(built || REQUIRE)('the emulated backends behind the public API', () => {
  const names: GpuBackendName[] = ['emu-cuda', 'emu-hip'];

  it('load and describe themselves as emulated; info() lists them with their tables', () => {
    for (const name of names) {
      const s = loadGpuAddon(name);
      expect(s.reason).toBeUndefined();
      expect(s.devices).toBe(1);
      const i = (s.addon as NativeGpuAddon).info();
      expect(i.gpu).toMatchObject({ backend: name, emulated: true, unavailable: '', builtArchs: name === 'emu-cuda' ? '80,90a' : 'gfx942,gfx90a' });
      const device = i.backends[0].devices[0];
      expect(device.tables).toEqual(name === 'emu-cuda' ? ['sm90a', 'sm80'] : ['gfx942', 'gfx90a']);
      expect(device.kernels).toBe(name === 'emu-cuda' ? 41 : 62);
      expect(device.name).toMatch(/gemmkit CPU emulator/);
      expect((s.addon as NativeGpuAddon).configs().every((c) => c.compiled)).toBe(true);
    }
    const i = info();
    for (const name of names) {
      expect(i.backends.map((b) => b.name)).toContain(name);
      expect(i.gpus.find((g) => g.name === name)).toMatchObject({ loaded: true, emulated: true });
    }
    expect(i.gpus.filter((g) => !g.emulated).map((g) => g.name)).toEqual(['cuda', 'hip']);
    expect(isEmulatedBackend('emu-hip') && !isEmulatedBackend('hip')).toBe(true);
  });

  it('resolve every symbol at load (nothing of the engine left undefined)', async () => {
    for (const name of names) {
      const r = await runNode(['-e', `require(${JSON.stringify(gpuAddonPath(name))}).info()`], { LD_BIND_NOW: '1' });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
  });

  it('device strings name them; \'auto\' never picks them', () => {
    expect(parseDevice('t', 'emu-cuda:0')).toEqual({ backend: 'emu-cuda', index: 0 });
    expect(parseDevice('t', 'emu-hip:3')).toEqual({ backend: 'emu-hip', index: 3 });
    expect(() => parseDevice('t', 'emu:0')).toThrow(/or an emulated GPU 'emu-cuda:<n>' or 'emu-hip:<n>'\)/);
    expect(firstGpuDevice() ?? 'none').not.toMatch(/^emu-/);
    const a = tensor([1, 2, 3, 4], [2, 2]);
    expect(explain(a, a).backend).toBe('cpu');
    expect(explain(a, a, { backend: 'auto' }).backend).toBe('cpu');
  });

  for (const name of names) {
    it(`${name}: matmul on device tensors runs the GPU kernels there, checked against float64`, async () => {
      let seed = 11;
      const cases: [number, number, number, DType][] = [[1, 45, 129, 'bf16'], [77, 45, 129, 'bf16'], [7, 33, 64, 'f16'], [45, 77, 7, 'f32']];
      for (const [m, n, k, dtype] of cases) {
        const a = intTensor([m, k], dtype, seed++), w = intTensor([n, k], dtype, seed++), bias = intTensor([n], 'f32', seed++);
        const ref = referenceMatmul(a, w, { transB: true, bias, activation: 'relu' });
        const device = `${name}:0` as const;
        const da = a.to(device), dw = w.to(device), dbias = bias.to(device);
        const c = await matmul(da, dw, { transB: true, bias: dbias, activation: 'relu', outDtype: 'f32' });
        expect(c.device).toBe(device);
        expectMatches(c.to('cpu'), ref, k, `${m}x${n}x${k} ${dtype} on ${device}`, true);
        const e = explain(da, dw, { transB: true, bias: dbias, activation: 'relu', outDtype: 'f32' });
        expect(e).toMatchObject({ backend: name, source: 'default' });
        expect(e.config).toMatch(name === 'emu-cuda' ? /^cuda\.sm(80|90a)\./ : /^hip\.gfx(942|90a)\./);
      }
      // Every family by name, through the public API: a forced config runs that kernel.
      const families = name === 'emu-cuda'
        ? ['cuda.sm80.bf16.mma.128x256x32.w8.s3.g8', 'cuda.sm80.any.simt.128x128x8.w8.s1.g8', 'cuda.sm80.bf16.skinny.16x4x1024.w4.s1.sk4']
        : ['hip.gfx90a.bf16.mfma.256x128x32.w8.s2.g8', 'hip.gfx942.any.simt.128x128x8.w4.s1.g8', 'hip.gfx942.bf16.skinny.16x4x2048.w4.s1.sk4'];
      const a = intTensor([13, 300], 'bf16', 1), b = intTensor([300, 130], 'bf16', 2);
      const ref = referenceMatmul(a, b, {});
      for (const config of families) {
        const c = matmulSync(a.to(`${name}:0`), b.to(`${name}:0`), { config, outDtype: 'f32' });
        expectMatches(c.to('cpu'), ref, 300, `${config} on ${name}:0`, true);
      }
    });
  }

  for (const name of names) {
    it(`${name}: the ops run their GPU kernels on device tensors and agree with the CPU's`, () => {
      const device = `${name}:0` as const;
      const heads = 4, kvHeads = 2, d = 16, tokens = 3;
      const qkv = randTensor([6, (heads + 2 * kvHeads) * d], 'f32', 1), w = randTensor([heads * d], 'bf16', 2);
      const { cos, sin } = ropeTables(10000, 16, d);
      const keys = zeros([2, kvHeads, 8, d]), vals = zeros([2, kvHeads, 8, d]);
      const r = rng(3);
      for (const t of [keys, vals]) (t.data as Float32Array).forEach((_, i, a) => (a[i] = r() * 2 - 1));
      type Inputs = { qkv: typeof qkv; w: typeof w; cos: typeof cos; sin: typeof sin; keys: typeof keys; vals: typeof vals };
      const run = (t: Inputs) => {
        const q = columns(t.qkv, 0, heads * d), k = columns(t.qkv, heads * d, kvHeads * d), v = columns(t.qkv, (heads + kvHeads) * d, kvHeads * d);
        rope(q, [0, 1, 2, 3, 4, 5], { heads, headDim: d, cos: t.cos, sin: t.sin, inPlace: true });
        kvStore(t.keys, k, { slots: [1, 0], past: [2, 0], tokens });
        kvStore(t.vals, v, { slots: [1, 0], past: [2, 0], tokens });
        const attn = attention(q, t.keys, t.vals, { slots: [1, 0], past: [2, 0], tokens, heads });
        const normed = rmsNorm(attn, t.w, { eps: 1e-5 });
        const sum = add(normed, attn);
        return { out: [attn, normed, sum, softmax(sum), swiglu(sum)], ids: argmax(sum) };
      };
      // Copied first: the sequence changes qkv and the caches in place.
      const deviceInputs = { qkv: qkv.to(device), w: w.to(device), cos: cos.to(device), sin: sin.to(device), keys: keys.to(device), vals: vals.to(device) };
      const host = run({ qkv, w, cos, sin, keys, vals });
      const onDevice = run(deviceInputs);
      expect(onDevice.ids).toEqual(host.ids);
      for (let i = 0; i < host.out.length; i++) {
        expect(onDevice.out[i].device).toBe(device);
        const got = onDevice.out[i].to('cpu').toFloat32(), want = host.out[i].toFloat32();
        for (let j = 0; j < want.length; j++) expect(Math.abs(got[j] - want[j]), `op ${i} element ${j}`).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[j])));
      }
    });
  }

  it('backend \'emu-hip\' with CPU tensors stages them through the emulated device', () => {
    const a = intTensor([9, 13], 'bf16', 5), b = intTensor([13, 11], 'bf16', 6);
    const c = matmulSync(a, b, { backend: 'emu-hip', outDtype: 'f32' });
    expect(c.device).toBe('cpu');
    expectMatches(c, referenceMatmul(a, b), 13, 'staged through emu-hip', true);
  });

  it('the tuner checks and times an emulated backend but refuses to write its rows', async () => {
    const native = loadGpuAddon('emu-hip').addon as NativeGpuAddon;
    const shapes = [spec(8, 64, 96, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'bf16' })];
    const out = join(scratchDir(), 'tuned.csv');
    await expect(tune({ backend: { name: 'emu-hip', native }, cpu: cpuNative(), shapes, opts: QUICK, out }))
      .rejects.toThrow(/backend 'emu-hip' is an emulated GPU: its timings are host timings of the CPU emulator, not a GPU's, so they are never written to a tuned file/);
    expect(existsSync(out)).toBe(false);
    const summary = await tune({ backend: { name: 'emu-hip', native }, cpu: cpuNative(), shapes, opts: QUICK });
    const r = summary.results[0];
    expect(r.error).toBeUndefined();
    expect(r.reference).toBe('float64');
    expect(r.winner).toMatch(/^hip\.gfx(942|90a)\./);
    expect(r.candidates.filter((c) => c.status === 'incorrect')).toEqual([]);
    expect(r.candidates.some((c) => c.config.includes('.mfma.'))).toBe(true);
  });

  it('gemmkit tune --backend emu-hip: timings labelled emulated, no tuned file; --out is refused', async () => {
    const dir = scratchDir();
    const defaultOut = join(ROOT, 'gemmkit_tuned.csv');
    const hadDefaultOut = existsSync(defaultOut);
    const args = ['tune', '--backend', 'emu-hip', '--shape', '4x32x64', '--dtype', 'bf16', '--trans-b', '--max-ms-per-shape', '1500', '--quiet'];
    const ok = await runCli(args);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/timings are emulated: host time of the CPU emulator running the emu-hip kernels, not GPU time; no tuned file was written/);
    expect(ok.stdout).not.toMatch(/merged into/);
    expect(existsSync(defaultOut)).toBe(hadDefaultOut);
    const refused = await runCli([...args, '--out', join(dir, 'x.csv')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/gemmkit: backend 'emu-hip' is an emulated GPU: .* never written to a tuned file \(refusing .*x\.csv\)/);
    expect(existsSync(join(dir, 'x.csv'))).toBe(false);
  });
});
