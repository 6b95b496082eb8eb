// The GPU layers on a machine without a GPU: the addons' absent, failed-to-load and no-device paths
// (against the real built addons, which CI builds: GEMMKIT_REQUIRE_GPU_ADDONS=1 makes their absence a
// failure), the config tables' names and limits through the addons, and device tensors, matmul
// placement and the tuner's GPU path on an emulated GPU addon (test/gpu_emulator.ts).
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type DType, DTYPES, Tensor, info, matmul, matmulSync, tensor } from '../src/index.js';
import {
  type GpuBackendName, type NativeDeviceBuffer, type NativeGpuAddon, type OpDesc, type ProblemDesc, cpuNative, gpuAddonPath, loadGpuAddon,
  setGpuAddonForTesting,
} from '../src/native.js';
import { readTunedFile } from '../src/tuner/tuned_file.js';
import { tune } from '../src/tuner/tune.js';
import { EmulatedGpu } from './gpu_emulator.js';
import { expectMatches, intTensor, referenceMatmul } from './helpers.js';
import { QUICK, ROOT, runNode, scratchDir, spec } from './tuner_helpers.js';

const REQUIRE_ADDONS = process.env.GEMMKIT_REQUIRE_GPU_ADDONS === '1';
const built = (name: GpuBackendName) => existsSync(gpuAddonPath(name));

describe('GPU addons that are absent or fail to load never break CPU use', () => {
  it('a missing addon is "not built", with the command that builds it', () => {
    const s = loadGpuAddon('cuda', '/nonexistent/gemmkit_cuda.node');
    expect(s.addon).toBeUndefined();
    expect(s.devices).toBe(0);
    expect(s.reason).toMatch(/^not built: no \/nonexistent\/gemmkit_cuda.node; build it with `npm run build:cuda`/);
    expect(loadGpuAddon('hip', '/nonexistent/x.node').reason).toMatch(/npm run build:hip/);
  });

  it('a file that is not an addon, or not a GPU addon, fails to load with the loader\'s reason', () => {
    const bad = join(scratchDir(), 'gemmkit_cuda.node');
    writeFileSync(bad, 'not a shared object');
    expect(loadGpuAddon('cuda', bad).reason).toMatch(/^the addon .*gemmkit_cuda.node failed to load: /);
    expect(loadGpuAddon('cuda', join(ROOT, 'build/Release/gemmkit.node')).reason).toMatch(/failed to load: it is not a gemmkit GPU addon/);
  });

  it('with broken GPU addons, info() says why and CPU matmul works', async () => {
    const bad = join(scratchDir(), 'broken.node');
    writeFileSync(bad, 'garbage');
    const script = `
      import { info, matmulSync, tensor } from './src/index.ts';
      const i = info();
      const c = matmulSync(tensor([1, 2, 3, 4], [2, 2]), tensor([1, 0, 0, 1], [2, 2]));
      console.log(JSON.stringify({ unavailable: i.unavailable, backends: i.backends.map((b) => b.name), c: [...c.toFloat32()] }));`;
    const r = await runNode(['--input-type=module', '-e', script], { GEMMKIT_CUDA_ADDON: bad, GEMMKIT_HIP_ADDON: '/nonexistent/hip.node' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.backends).toEqual(['cpu']);
    expect(out.c).toEqual([1, 2, 3, 4]);
    expect(out.unavailable.find((u: { name: string }) => u.name === 'cuda').reason).toMatch(/broken.node failed to load/);
    expect(out.unavailable.find((u: { name: string }) => u.name === 'hip').reason).toMatch(/^not built/);
  });
});

for (const name of ['cuda', 'hip'] as const) {
  const runIt = REQUIRE_ADDONS || built(name);
  describe.runIf(runIt)(`the ${name} addon as built here`, () => {
    const status = loadGpuAddon(name);
    const addon = status.addon as NativeGpuAddon;
    const upper = name.toUpperCase();
    const noDevice = status.devices === 0;

    it('loads and describes itself; without a device it says why', () => {
      expect(status.reason ?? '').not.toMatch(/not built|failed to load/);
      const i = addon.info();
      expect(i.gpu.backend).toBe(name);
      expect(i.gpu.runtimeVersion).toMatch(/^\d+\.\d+/);
      expect(i.gpu.builtArchs).toBe(name === 'cuda' ? '80,90a' : 'gfx942,gfx90a');
      expect(i.libraries.map((l) => l.name)).toEqual(expect.arrayContaining([`${name}-runtime`, `${name}-driver`]));
      if (noDevice) {
        expect(i.gpu.unavailable).toMatch(new RegExp(`^no ${upper} device/driver \\(`));
        expect(status.reason).toBe(i.gpu.unavailable);
        const u = info().unavailable.find((x) => x.name === name);
        expect(u?.reason).toMatch(new RegExp(`no ${upper} device/driver`));
        expect(info().gpus.find((g) => g.name === name)).toMatchObject({ loaded: true, devices: [] });
      } else {
        expect(info().backends.map((b) => b.name)).toContain(name);
      }
    });

    it.runIf(noDevice)('every entry point without a device is an error value, never a crash', async () => {
      const desc: ProblemDesc = {
        backend: name, device: 0, m: 8, n: 8, k: 8, batch: 1, transA: false, transB: true, lda: 8, ldb: 8, ldc: 8,
        strideA: 64, strideB: 64, strideC: 64, dtypeA: 'bf16', dtypeB: 'bf16', dtypeC: 'bf16', alpha: 1, beta: 0, activation: 'none',
      };
      const why = new RegExp(`no ${upper} device/driver`);
      expect(addon.heuristic(desc)).toBe('');
      expect(addon.candidates(desc)).toEqual([]);
      expect(addon.supports(desc, addon.configs()[0].name)).toMatch(why);
      await expect(addon.timeConfig(desc, addon.configs()[0].name, { warmup: 0, iterations: 1, rotatingBytes: 0, maxMs: 0 })).rejects.toThrow(why);
      expect(() => addon.alloc(0, 1024)).toThrow(why);
      try {
        addon.alloc(0, 16);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('GEMMKIT_UNSUPPORTED');
      }
      // Host operands are staged through device memory, which there is none of.
      const host = { ...desc, a: new Uint16Array(64), b: new Uint16Array(64), c: new Uint16Array(64) };
      expect(() => addon.matmulSync(host)).toThrow(why);
      await expect(addon.matmulAsync(host)).rejects.toThrow(why);
      expect(() => addon.synchronize(0)).toThrow(why);
      // Through the public API.
      const x = tensor([1, 2, 3, 4], [2, 2], 'bf16');
      expect(() => x.to(`${name}:0`)).toThrow(new RegExp(`Tensor.to: backend '${name}' is not available: no ${upper} device/driver`));
      expect(() => matmulSync(x, x, { backend: name })).toThrow(new RegExp(`backend '${name}' is not available: no ${upper} device/driver`));
    });

    it('takes ops: malformed descriptions and foreign buffers are errors, and without a device the op says why', async () => {
      expect(typeof addon.opSync).toBe('function');
      expect(typeof addon.opAsync).toBe('function');
      const opSync = addon.opSync!.bind(addon), opAsync = addon.opAsync!.bind(addon);
      const fake = {} as NativeDeviceBuffer;
      const softmax: OpDesc = { kind: 6, rows: 2, cols: 4, ldx: 4, ldout: 4, x: { buffer: fake, byteOffset: 0 }, out: { buffer: fake, byteOffset: 0 } };
      expect(() => opSync(softmax)).toThrow(new TypeError('gemmkit native: x must be a device buffer from alloc()'));
      expect(() => opSync({ ...softmax, x: new Float32Array(8) as never })).toThrow(/x must be a device buffer from alloc\(\)/);
      expect(() => opSync({ ...softmax, x: undefined })).toThrow(/x is missing: the op reads 8 elements of it/);
      expect(() => opSync({ ...softmax, kind: 99 })).toThrow(RangeError);
      expect(() => opSync({ ...softmax, ldx: 3 })).toThrow(/softmax: ldx = 3 is less than cols = 4/);
      expect(() => opSync({ kind: 10, rows: 2, cols: 4, ldx: 4, x: { buffer: fake, byteOffset: 0 } })).toThrow(/x must be a device buffer/);
      expect(() => opAsync(softmax)).toThrow(TypeError);  // checked before anything is queued, as on the CPU addon
      // An empty op needs no memory: it gets as far as the device.
      const empty: OpDesc = { kind: 6, rows: 0, cols: 4, ldx: 4, ldout: 4 };
      if (noDevice) {
        const why = new RegExp(`no ${upper} device/driver`);
        expect(() => opSync(empty)).toThrow(why);
        await expect(opAsync(empty)).rejects.toThrow(why);
      } else {
        opSync(empty);
        await opAsync(empty);
      }
    });

    it('resolves every symbol at load (no CPU-engine symbol left undefined)', async () => {
      const r = await runNode(['-e', `require(${JSON.stringify(status.path)}).info()`], { LD_BIND_NOW: '1' });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    });

    it('rejects what is not a device buffer, and prepacked weights (CPU-only)', () => {
      const fake = {} as NativeDeviceBuffer;
      expect(() => addon.free(fake)).toThrow(TypeError);
      expect(() => addon.upload(fake, new Float32Array(4))).toThrow(/buffer must be a device buffer from alloc\(\)/);
      expect(() => addon.download(fake, new Float32Array(4))).toThrow(TypeError);
      expect(() => addon.bufferInfo(fake)).toThrow(TypeError);
      const desc = {
        backend: name, m: 1, n: 1, k: 1, batch: 1, transA: false, transB: false, lda: 1, ldb: 1, ldc: 1, strideA: 1, strideB: 1, strideC: 1,
        dtypeA: 'f32', dtypeB: 'f32', dtypeC: 'f32', alpha: 1, beta: 0, activation: 'none', a: fake, b: fake, c: fake,
      } as ProblemDesc;
      expect(() => addon.matmulSync(desc)).toThrow(/a must be a device buffer/);
      expect(() => addon.matmulSync({ ...desc, backend: 'cpu' })).toThrow(/backend 'cpu' is not loaded in this addon/);
      expect(() => addon.heuristic({ ...desc, packedB: {} as never })).toThrow(/prepacked weights are CPU-only/);
    });

    it('lists every table row, compiled, each named canonically', () => {
      const rows = addon.configs();
      const arches = name === 'cuda' ? ['sm80', 'sm90a'] : ['gfx90a', 'gfx942'];
      expect([...new Set(rows.map((r) => r.arch))].sort()).toEqual(arches);
      const families = new Set(rows.map((r) => r.family));
      for (const f of name === 'cuda' ? ['simt', 'mma', 'skinny'] : ['simt', 'mfma', 'skinny']) expect(families).toContain(f);
      const limit: Record<string, number> = { sm80: 166912, sm90a: 232448, gfx90a: 65536, gfx942: 65536 };
      for (const r of rows) {
        expect(r.compiled, r.name).toBe(true);
        expect(r.name.startsWith(`${name}.${r.arch}.${r.input}.${r.family}.${r.tileM}x${r.tileN}x${r.tileK}.w${r.warps}.s${r.stages}`), r.name).toBe(true);
        const { compiled: _compiled, ...fields } = r;
        expect(addon.parseConfig(r.name)).toEqual(fields);
        expect(r.threads).toBe(r.warps * (name === 'cuda' ? 32 : 64));
        expect(r.sharedBytes, r.name).toBeLessThanOrEqual(limit[r.arch]);
      }
      expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
    });

    it('parses config names strictly and applies the targets\' limits', () => {
      const c = addon.parseConfig('cuda.sm80.bf16.mma.128x256x32.w8.s3.sk2.g4');
      expect(c).toMatchObject({ arch: 'sm80', input: 'bf16', family: 'mma', tileM: 128, tileN: 256, tileK: 32, warps: 8, stages: 3, splitK: 2, group: 4, threads: 256 });
      expect(addon.parseConfig('hip.gfx942.f16.mfma.128x128x32.w4.s2')).toMatchObject({ family: 'mfma', threads: 256, sharedBytes: 36864 });
      const rejected: [string, RegExp][] = [
        ['cuda.sm80.bf16.mma.128x128x32.w4', /wrong number of fields/],
        ['cuda.gfx942.bf16.mfma.128x128x32.w4.s2', /architecture gfx942 belongs to hip/],
        ['cuda.sm75.bf16.mma.128x128x32.w4.s3', /unknown architecture 'sm75'/],
        ['cuda.sm80.bf16.mma.128x128x32.w4.s3.sk1', /not canonical; the same configuration is named cuda.sm80.bf16.mma.128x128x32.w4.s3/],
        ['cuda.sm80.bf16.mma.128x128x32.w4.s3.g8.sk2', /unexpected field 'sk2'/],
        ['cuda.sm80.f32.mma.128x128x32.w4.s3', /tensor-core kernels take f16 or bf16/],
        ['cuda.sm80.bf16.mma.128x256x64.w8.s4', /needs 196608 bytes of shared memory, more than sm80's 166912/],
        ['cuda.sm80.bf16.mma.256x256x32.w4.s3', /registers per thread/],
        ['hip.gfx942.bf16.mfma.128x128x64.w4.s2', /needs 69632 bytes of LDS, more than gfx942's 65536/],
        ['hip.gfx942.bf16.mma.128x128x32.w4.s3', /NVIDIA-only/],
        ['hip.gfx942.bf16.skinny.32x4x2048.w4.s1', /run M <= 16/],
      ];
      for (const [bad, why] of rejected) {
        expect(() => addon.parseConfig(bad), bad).toThrow(RangeError);
        expect(() => addon.parseConfig(bad), bad).toThrow(why);
      }
      // Room for Hopper's wgmma family: a well-formed name, reported as not built yet.
      expect(() => addon.parseConfig('cuda.sm90a.bf16.wgmma.128x256x64.w8.s4')).toThrow(/reserved for a later version/);
      expect(() => addon.parseConfig(42 as unknown as string)).toThrow(TypeError);
    });
  });
}

describe('device tensors on an emulated GPU', () => {
  let gpu: EmulatedGpu;
  beforeEach(() => {
    gpu = new EmulatedGpu('cuda', 1, 1 << 20);
    setGpuAddonForTesting('cuda', gpu);
  });
  afterEach(() => {
    setGpuAddonForTesting('cuda', undefined);
  });

  it('to() copies to the device and back, bit for bit, in every dtype', () => {
    for (const dtype of DTYPES) {
      const x = intTensor([7, 45], dtype, 3);
      const d = x.to('cuda:0');
      expect(d.device).toBe('cuda:0');
      expect(d.dtype).toBe(dtype);
      expect(d.shape).toEqual([7, 45]);
      expect(d.size).toBe(7 * 45);
      expect(d.to('cuda:0')).toBe(d);
      const back = d.to('cpu');
      expect(back.device).toBe('cpu');
      expect([...back.data]).toEqual([...x.data]);
      expect(x.to('cpu')).toBe(x);
    }
  });

  it('host-only accessors say to copy first; reshape keeps the device', () => {
    const d = tensor([1, 2, 3, 4, 5, 6], [2, 3]).to('cuda:0');
    expect(() => d.data).toThrow(/Tensor.data: the tensor is on cuda:0; copy it to the host with .to\('cpu'\)/);
    expect(() => d.toFloat32()).toThrow(/Tensor.toFloat32: the tensor is on cuda:0/);
    expect(() => d.toDType('bf16')).toThrow(/Tensor.toDType: the tensor is on cuda:0/);
    expect(d.toDType('f32')).toBe(d);
    const r = d.reshape([3, 2]);
    expect(r.device).toBe('cuda:0');
    expect([...r.to('cpu').toFloat32()]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => new Tensor('f32', [2], new Float32Array(2), 'cuda:0')).toThrow(/a typed array lives on 'cpu', not "cuda:0"/);
  });

  it('unknown devices and device indices that do not exist', () => {
    const x = tensor([1, 2], [2]);
    for (const bad of ['gpu', 'cuda', 'cuda:-1', 'cuda:01', 'npu:0', 7]) {
      expect(() => x.to(bad as never), String(bad)).toThrow(/Tensor.to: unknown device .* \(expected 'cpu', 'cuda:<n>' or 'hip:<n>'\)/);
    }
    expect(() => x.to('cuda:1')).toThrow(RangeError);
    expect(() => x.to('cuda:1')).toThrow(/cuda:1 does not exist; this machine has 1 CUDA device/);
  });

  it('matmul on device tensors runs there (backend auto) and returns a device tensor', async () => {
    let seed = 1;
    for (const [m, n, k] of [[1, 7, 45], [77, 45, 129], [16, 64, 100]]) {
      for (const dtype of ['f32', 'bf16'] as DType[]) {
        const a = intTensor([m, k], dtype, seed++), w = intTensor([n, k], dtype, seed++), bias = intTensor([n], 'f32', seed++);
        const ref = referenceMatmul(a, w, { transB: true, bias, activation: 'relu' });
        const da = a.to('cuda:0'), dw = w.to('cuda:0'), dbias = bias.to('cuda:0');
        const c = await matmul(da, dw, { transB: true, bias: dbias, activation: 'relu' });
        expect(c.device).toBe('cuda:0');
        const last = gpu.calls.at(-1)!;
        expect(last).toMatchObject({ backend: 'cuda', device: 0, m, n, k });
        expect(ArrayBuffer.isView(last.a)).toBe(false); // device buffers, not host arrays
        expectMatches(c.to('cpu'), ref, k, `${m}x${n}x${k} ${dtype} on cuda:0`, true);
        const s = matmulSync(da, dw, { transB: true, bias: dbias, activation: 'relu' });
        expectMatches(s.to('cpu'), ref, k, `${m}x${n}x${k} ${dtype} sync on cuda:0`, true);
      }
    }
  });

  it('out and beta on the device', () => {
    const a = intTensor([5, 6], 'f32', 1), b = intTensor([6, 7], 'f32', 2), c0 = intTensor([5, 7], 'f32', 3);
    const ref = referenceMatmul(a, b, { beta: 2, c: c0 });
    const out = c0.to('cuda:0');
    const r = matmulSync(a.to('cuda:0'), b.to('cuda:0'), { beta: 2, out });
    expect(r).toBe(out);
    expectMatches(out.to('cpu'), ref, 6, 'beta on cuda:0', true);
    const da = a.to('cuda:0');
    expect(() => matmulSync(da, b.to('cuda:0'), { out: da.reshape([5, 6]) })).toThrow(RangeError);
    const sq = tensor([1, 2, 3, 4], [2, 2]).to('cuda:0');
    expect(() => matmulSync(sq, sq, { out: sq })).toThrow(/out shares memory with a/);
  });

  it('tensors on different devices, or a backend that cannot read them, are TypeErrors', () => {
    const a = tensor([1, 2, 3, 4], [2, 2]);
    const da = a.to('cuda:0');
    expect(() => matmulSync(da, a)).toThrow(/matmulSync: a is on cuda:0 but b is on cpu; move them to one device with .to\("cuda:0"\)/);
    expect(() => matmulSync(a, da)).toThrow(/a is on cpu but b is on cuda:0/);
    expect(() => matmulSync(da, da, { bias: tensor([1, 1], [2]) })).toThrow(/a is on cuda:0 but bias is on cpu/);
    expect(() => matmulSync(da, da, { out: tensor([0, 0, 0, 0], [2, 2]) })).toThrow(/a is on cuda:0 but out is on cpu/);
    expect(() => matmulSync(da, da, { backend: 'cpu' })).toThrow(/backend 'cpu' cannot read tensors on cuda:0; copy them with .to\('cpu'\)/);
    expect(() => matmulSync(da, da, { backend: 'hip' })).toThrow(/backend 'hip' cannot read tensors on cuda:0/);
    expect(() => matmulSync(da, da, { backend: 'tpu' as never })).toThrow(/backend must be one of/);
  });

  it('backend: \'cuda\' with CPU tensors stages them and returns a CPU tensor', () => {
    const a = intTensor([9, 13], 'bf16', 5), b = intTensor([13, 11], 'bf16', 6);
    const c = matmulSync(a, b, { backend: 'cuda', outDtype: 'f32' });
    expect(c.device).toBe('cpu');
    expect(gpu.calls.at(-1)!.a).toBe(a.data); // the addon stages host arrays itself
    expectMatches(c, referenceMatmul(a, b), 13, 'staged through cuda', true);
  });

  it('dispose() frees device memory at once; later use is a TypeError naming the tensor', async () => {
    const before = gpu.used;
    const d = tensor([1, 2, 3, 4], [2, 2]).to('cuda:0');
    const view = d.reshape([4]);
    expect(gpu.used).toBe(before + 16);
    d.dispose();
    expect(gpu.used).toBe(before);
    expect(d.disposed).toBe(true);
    expect(view.disposed).toBe(true);
    d.dispose(); // idempotent
    expect(() => d.to('cpu')).toThrow(/Tensor.to: the tensor is a disposed tensor/);
    expect(() => matmulSync(d, d)).toThrow(/matmulSync: a is a disposed tensor: its cuda:0 memory was freed by dispose\(\)/);
    await expect(matmul(view.reshape([2, 2]), view.reshape([2, 2]))).rejects.toThrow(/disposed/);
    const cpuTensor = tensor([1], [1]);
    cpuTensor.dispose(); // no-op on the CPU
    expect(cpuTensor.disposed).toBe(false);
    expect([...cpuTensor.data]).toEqual([1]);
  });

  it('out of device memory is an Error with a code, and the device keeps working', () => {
    const big = new Tensor('f32', [512, 1024], new Float32Array(512 * 1024)); // 2 MiB > 1 MiB
    let error: (Error & { code?: string }) | undefined;
    try {
      big.to('cuda:0');
    } catch (e) {
      error = e as Error & { code?: string };
    }
    expect(error?.code).toBe('GEMMKIT_OUT_OF_MEMORY');
    expect(error?.message).toMatch(/Tensor.to: out of memory on cuda:0 for 2097152 bytes/);
    const a = tensor([1, 2, 3, 4], [2, 2]).to('cuda:0');
    expect([...matmulSync(a, a).to('cpu').toFloat32()]).toEqual([7, 10, 15, 22]);
    // A result that does not fit fails the same way, before anything runs.
    const wide = new Tensor('f32', [1, 600], new Float32Array(600)).to('cuda:0'); // its 600 x 600 result needs 1.4 MiB
    expect(() => matmulSync(wide, wide, { transA: true })).toThrow(/out of memory on cuda:0/);
  });

  it('info() lists a GPU backend with devices as available', () => {
    const i = info();
    expect(i.backends.map((b) => b.name)).toContain('cuda');
    expect(i.unavailable.map((u) => u.name)).not.toContain('cuda');
    expect(i.gpus.find((g) => g.name === 'cuda')).toMatchObject({ loaded: true, runtimeVersion: 'emulated' });
  });

  it('the tuner tunes a GPU backend through the same seam (validators from the GPU addon)', async () => {
    const out = join(scratchDir(), 'tuned-cuda.csv');
    const shapes = [spec(4, 32, 64, { dtypeA: 'bf16', dtypeB: 'bf16', outDtype: 'bf16' })];
    const summary = await tune({ backend: { name: 'cuda', native: gpu }, cpu: cpuNative(), shapes, opts: QUICK, out });
    expect(summary.results[0].error).toBeUndefined();
    expect(summary.results[0].winner).toBe('cuda.emulated');
    expect(summary.results[0].reference).toBe('float64'); // checked against the CPU reference through staged host arrays
    const file = readTunedFile(out);
    expect(file.validators).toMatchObject({ backend: 'cuda', device: 'Emulated GPU', arch: 'sm_90', libraries: 'cuda-runtime emulated', threads: '4' });
    expect(file.rows[0]).toMatchObject({ backend: 'cuda', config: 'cuda.emulated', status: 'ok' });
    expect(gpu.calls.every((d) => d.backend === 'cuda' && d.device === 0)).toBe(true);
  });
});
