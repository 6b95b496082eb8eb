// Memory the native side uses never vanishes under it: each scenario detaches, transfers, shrinks,
// disposes or collects the memory of a call while it runs, in a child process (a crash there fails the
// test instead of ending the run). Plus: addon memory is visible to V8 and released at once by dispose().
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { PackedWeight, Tensor, matmul, matmulSync, prepack, tensor, zeros } from '../src/index.js';
import { cpuNative } from '../src/native.js';
import { HOST_MEMORY_MIN_BYTES } from '../src/tensor.js';
import { describeRun, runScript } from './script.js';

// One large GEMM (~0.1-1 s here), so what the scenario does to its memory happens while it runs.
const SETUP = `
const N = 1536;
const userA = () => new g.Tensor('f32', [N, N], ints(N * N, 7, 3));
const userB = () => new g.Tensor('f32', [N, N], ints(N * N, 5, 2));
const expected = g.matmulSync(userA(), userB()).toFloat32().slice();
`;

async function scenario(body: string): Promise<Record<string, unknown>> {
  const r = await runScript(SETUP + body);
  expect(r.code, describeRun(r)).toBe(0);
  expect(r.result, describeRun(r)).toBeDefined();
  return r.result!;
}

describe('memory a call uses stays valid until it settles', () => {
  it("a caller's out transferred away while matmul runs: the promise rejects, naming out", async () => {
    const r = await scenario(`
      const out = new g.Tensor('f32', [N, N], new Float32Array(N * N));
      const p = g.matmul(userA(), userB(), { out });
      let clone = structuredClone(out.data.buffer, { transfer: [out.data.buffer] });
      clone = null;
      churn();
      report({ outcome: await outcome(p) });`);
    expect(r.outcome).toMatch(/^TypeError: gemmkit: the output c \(matmul's out\) was detached while the call ran; the result \(\d+ bytes\) was dropped/);
  });

  it("a caller's a transferred away while matmul runs: the result is still right", async () => {
    const r = await scenario(`
      const a = userA();
      const p = g.matmul(a, userB());
      let clone = structuredClone(a.data.buffer, { transfer: [a.data.buffer] });
      clone = null;
      churn();
      const c = await p;
      report({ right: same(c.toFloat32(), expected), aDetached: a.data.length === 0 });`);
    expect(r).toEqual({ right: true, aDetached: true });
  });

  it('a resizable ArrayBuffer shrunk to 0 under a, and under out, while matmul runs', async () => {
    const r = await scenario(`
      const bufA = new ArrayBuffer(N * N * 4, { maxByteLength: N * N * 4 });
      new Float32Array(bufA).set(ints(N * N, 7, 3));
      const p1 = g.matmul(new g.Tensor('f32', [N, N], new Float32Array(bufA)), userB());
      bufA.resize(0);
      churn();
      const c = await p1;
      const bufC = new ArrayBuffer(N * N * 4, { maxByteLength: N * N * 4 });
      const p2 = g.matmul(userA(), userB(), { out: new g.Tensor('f32', [N, N], new Float32Array(bufC)) });
      bufC.resize(16);
      churn();
      report({ right: same(c.toFloat32(), expected), out: await outcome(p2) });`);
    expect(r.right).toBe(true);
    expect(r.out).toMatch(/^RangeError: gemmkit: the output c \(matmul's out\) was shrunk to 16 bytes while the call ran/);
  });

  it("gemmkit's own tensors: a transfer copies (the data stays), dispose() and collection wait for the call", async () => {
    const r = await scenario(`
      const a = g.tensor(ints(N * N, 7, 3), [N, N]), b = g.tensor(ints(N * N, 5, 2), [N, N]);
      const out = g.zeros([N, N]);
      const owned = [a, b, out].every((t) => native.hostOwns(t.data.buffer));
      const p = g.matmul(a, b, { out });
      const clone = structuredClone(out.data.buffer, { transfer: [out.data.buffer] });
      const kept = out.data.length === N * N && new Float32Array(clone).length === N * N;
      a.dispose();
      const p2 = g.matmul(g.tensor(ints(N * N, 7, 3), [N, N]), g.tensor(ints(N * N, 5, 2), [N, N]));
      churn();
      const c2 = await p2;
      await p;
      report({ owned, kept, aDisposed: a.disposed, right: same(out.toFloat32(), expected), right2: same(c2.toFloat32(), expected) });`);
    expect(r).toEqual({ owned: true, kept: true, aDisposed: true, right: true, right2: true });
  });

  it("a PackedWeight's source detached or disposed during M = 1 calls", async () => {
    const r = await scenario(`
      const K = 2048, M = 1;
      const x = g.tensor(ints(M * K, 7, 3), [M, K]);
      // The caller's memory: prepack keeps a copy of its own, so a transfer of theirs changes nothing.
      const theirs = new g.Tensor('f32', [K, K], ints(K * K, 5, 2));
      const want = g.matmulSync(x, theirs, { transB: true }).toFloat32().slice();
      const pw1 = g.prepack(theirs, { transB: true });
      const calls = Array.from({ length: 8 }, () => g.matmul(x, pw1));
      let clone = structuredClone(theirs.data.buffer, { transfer: [theirs.data.buffer] });
      clone = null;
      churn();
      const results = await Promise.all(calls);
      // gemmkit's memory: pinned in place, so disposing the tensor changes nothing either.
      const ours = g.tensor(ints(K * K, 5, 2), [K, K]);
      const pw2 = g.prepack(ours, { transB: true });
      const more = Array.from({ length: 4 }, () => g.matmul(x, pw2));
      ours.dispose();
      churn();
      const results2 = await Promise.all(more);
      const after = await g.matmul(x, pw2);
      report({ right: results.concat(results2, [after, g.matmulSync(x, pw1)]).every((c) => same(c.toFloat32(), want)), oursDisposed: ours.disposed });`);
    expect(r).toEqual({ right: true, oursDisposed: true });
  });

  it('a PackedWeight disposed while calls on its panel run: they finish, its memory goes after them', async () => {
    const r = await scenario(`
      const a = g.tensor(ints(N * N, 7, 3), [N, N]);
      const pw = g.prepack(userB());
      const calls = [g.matmul(a, pw), g.matmul(a, pw)];
      pw.dispose();
      churn();
      const results = await Promise.all(calls);
      report({ right: results.every((c) => same(c.toFloat32(), expected)), bytes: pw.bytes, after: await outcome(g.matmul(a, pw)) });`);
    expect(r.right).toBe(true);
    expect(r.bytes).toBe(0);
    expect(r.after).toMatch(/^TypeError: matmul: b is a PackedWeight .* that was disposed/);
  });

  it('referenceAsync outputs transferred away while it runs: rejected, not written', async () => {
    const r = await scenario(`
      const n = 160;
      const desc = { backend: 'cpu', m: n, n, k: n, batch: 1, transA: false, transB: false, lda: n, ldb: n, ldc: n,
        strideA: 0, strideB: 0, strideC: 0, dtypeA: 'f32', dtypeB: 'f32', dtypeC: 'f32', alpha: 1, beta: 0,
        activation: 'none', a: ints(n * n, 7, 3), b: ints(n * n, 5, 2), c: new Float32Array(n * n) };
      const c64 = new Float64Array(n * n);
      const p = native.referenceAsync(desc, c64);
      let clone = structuredClone(c64.buffer, { transfer: [c64.buffer] });
      clone = null;
      churn();
      report({ outcome: await outcome(p) });`);
    expect(r.outcome).toMatch(/^TypeError: gemmkit: the output c64 was detached while the call ran/);
  });

  it('a worker terminated while its matmuls run does not take the process down', async () => {
    const r = await scenario(`
      const { Worker } = await import('node:worker_threads');
      const code = "Promise.all([import('node:worker_threads'), import(process.env.GEMMKIT_TEST_ENTRY)]).then(async ([{ parentPort }, g]) => {" +
        "  const n = 1024, f = (m) => Float32Array.from({ length: n * n }, (_, i) => i % m);" +
        "  const a = g.tensor(f(7), [n, n]), b = new g.Tensor('f32', [n, n], f(5));" +
        "  const calls = Array.from({ length: 6 }, () => g.matmul(a, b));" +
        "  parentPort.postMessage('running'); await Promise.all(calls); });";
      // Workers load the compiled package (dist/, built by npm install), or the build under test.
      const entry = new URL((root.endsWith('src') ? './dist' : root) + '/index.js', 'file://' + process.cwd() + '/').href;
      const w = new Worker(code, { eval: true, env: { ...process.env, GEMMKIT_TEST_ENTRY: entry } });
      await new Promise((res) => w.once('message', res));
      await w.terminate();
      churn();
      report({ right: same(g.matmulSync(userA(), userB()).toFloat32(), expected) });`);
    expect(r.right).toBe(true);
  });
});

describe('memory an async op uses stays valid until it settles', () => {
  // Softmax over 64 MiB of rows (tens of ms), with the caller's own arrays, through the addon's opAsync.
  const OP_SETUP = `
    const R = 1024, C = 16384;
    const softmax = (x, out) => ({ kind: 6, rows: R, cols: C, ldx: C, ldout: C, x, out });
    const values = () => { const v = new Float32Array(R * C); for (let i = 0; i < v.length; i++) v[i] = (i % 97) / 16; return v; };
    const want = new Float32Array(R * C);
    native.opSync(softmax(values(), want));
  `;

  it("the caller's x transferred away while softmax runs: the result is still right", async () => {
    const r = await scenario(OP_SETUP + `
      const x = values(), out = new Float32Array(R * C);
      const p = native.opAsync(softmax(x, out));
      let clone = structuredClone(x.buffer, { transfer: [x.buffer] });
      clone = null;
      churn();
      await p;
      report({ right: same(out, want), xDetached: x.length === 0 });`);
    expect(r).toEqual({ right: true, xDetached: true });
  });

  it("the caller's out transferred away, or rotary embedding's x (rotated in place), or argmax's ids: rejected, naming it", async () => {
    const r = await scenario(OP_SETUP + `
      const out = new Float32Array(R * C);
      const p1 = native.opAsync(softmax(values(), out));
      let clone = structuredClone(out.buffer, { transfer: [out.buffer] });
      churn();
      const heads = 64, headDim = 256, rows = R;
      const cos = new Float32Array(rows * headDim / 2).fill(0.5), sin = new Float32Array(rows * headDim / 2).fill(0.25);
      const q = values().subarray(0, rows * heads * headDim);
      const positions = Int32Array.from({ length: rows }, (_, i) => i);
      const p2 = native.opAsync({ kind: 3, rows, cols: heads * headDim, ldx: heads * headDim, heads, headDim,
        ropePositions: rows, x: q, weight: cos, bias: sin, positions });
      clone = structuredClone(q.buffer, { transfer: [q.buffer] });
      churn();
      const ids = new Int32Array(R);
      const p3 = native.opAsync({ kind: 10, rows: R, cols: C, ldx: C, vocab: C, x: values(), idsOut: ids });
      clone = structuredClone(ids.buffer, { transfer: [ids.buffer] });
      clone = null;
      churn();
      report({ out: await outcome(p1), rope: await outcome(p2), argmax: await outcome(p3) });`);
    expect(r.out).toMatch(/^TypeError: gemmkit: the output out was detached while the call ran/);
    expect(r.rope).toMatch(/^TypeError: gemmkit: the output x was detached while the call ran/);
    expect(r.argmax).toMatch(/^TypeError: gemmkit: the output idsOut was detached while the call ran/);
  });
});

describe('memory of every kind given to the addon directly', () => {
  it('SharedArrayBuffer- and resizable-buffer-backed arrays: read in place by sync calls, snapshotted by async ones', async () => {
    const native = cpuNative();
    const n = 64;
    const shared = (len: number) => new Float32Array(new SharedArrayBuffer(len * 4));
    // Resizable ArrayBuffers are in Node 20 but not in the ES2022 lib the project compiles against.
    const Resizable = ArrayBuffer as unknown as new (bytes: number, opts: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void };
    const resizable = new Resizable(n * n * 4, { maxByteLength: n * n * 8 });
    const desc = {
      backend: 'cpu', m: n, n, k: n, batch: 1, transA: false, transB: false, lda: n, ldb: n, ldc: n, strideA: 0, strideB: 0,
      strideC: 0, dtypeA: 'f32', dtypeB: 'f32', dtypeC: 'f32', alpha: 1, beta: 0, activation: 'none',
      a: shared(n * n).fill(1), b: new Float32Array(resizable).fill(2), c: shared(n * n),
    } as const;
    await native.matmulAsync(desc);
    expect([desc.c[0], desc.c[n * n - 1]]).toEqual([128, 128]);
    desc.c.fill(0);
    native.matmulSync(desc);
    expect([desc.c[0], desc.c[n * n - 1]]).toEqual([128, 128]);
    resizable.resize(16);
    expect(() => native.matmulSync(desc)).toThrow(/b has 4 elements but the problem reads 4096/);
  });
});

describe('host memory gemmkit allocates', () => {
  it('tensors from HOST_MEMORY_MIN_BYTES up are addon memory; smaller ones and matmulSync results ordinary memory', async () => {
    const native = cpuNative();
    expect(native.hostOwns(zeros([HOST_MEMORY_MIN_BYTES / 4]).data.buffer)).toBe(true);
    expect(native.hostOwns(zeros([HOST_MEMORY_MIN_BYTES / 4 - 1]).data.buffer)).toBe(false);
    expect(native.hostOwns(tensor(new Float32Array(1 << 16), [1 << 16], 'bf16').data.buffer)).toBe(true);
    expect(native.hostOwns((await matmul(zeros([256, 1]), zeros([1, 256]))).data.buffer)).toBe(true);
    expect(native.hostOwns(matmulSync(zeros([256, 1]), zeros([1, 256])).data.buffer)).toBe(false);
    expect(native.hostOwns(zeros([256, 256]).toDType('bf16').data.buffer)).toBe(true);
    expect(native.hostOwns(new Float32Array(1 << 16).buffer)).toBe(false);
  });

  it('postMessage with its ArrayBuffer in the transfer list copies it: the data stays, the receiver gets it', async () => {
    const t = zeros([1 << 16]);
    t.data[5] = 7;
    const { port1, port2 } = new MessageChannel();
    try {
      const received = new Promise<ArrayBuffer>((resolve) => port2.once('message', resolve));
      try {
        port1.postMessage(t.data.buffer, [t.data.buffer as ArrayBuffer]);
      } catch (e) {
        // Node 21 and later refuse to transfer an external ArrayBuffer rather than copy it.
        expect((e as Error).name).toBe('DataCloneError');
        expect(t.data[5]).toBe(7);
        return;
      }
      expect(new Float32Array(await received)[5]).toBe(7);
      expect(t.data.length).toBe(1 << 16);
      expect(t.data[5]).toBe(7);
      expect(cpuNative().hostOwns(t.data.buffer)).toBe(true);
    } finally {
      port1.close();
      port2.close();
    }
  });

  it('tensor() copies its values: the tensor never aliases the array it was given', () => {
    const values = new Float32Array([1, 2, 3, 4]);
    const t = tensor(values, [2, 2]);
    values[0] = 9;
    expect(t.data[0]).toBe(1);
  });

  it('V8 counts addon memory as external memory, and dispose() releases it at once', async () => {
    const native = cpuNative();
    const bytes = 64 << 20;
    const before = process.memoryUsage().external;
    const lentBefore = native.hostCounts().lentBytes;
    const t = zeros([bytes / 4]);
    const r = t.reshape([2, bytes / 8]);
    expect(process.memoryUsage().external - before).toBeGreaterThanOrEqual(bytes);
    expect(native.hostCounts().lentBytes - lentBefore).toBe(bytes);
    t.dispose();
    // The ArrayBuffer's share is gone at once; the memory itself when nothing else holds it.
    expect(native.hostCounts().lentBytes).toBe(lentBefore);
    expect(t.disposed && r.disposed).toBe(true);
    expect(() => matmulSync(r, zeros([bytes / 8, 0]))).toThrow(/a: data is backed by a detached ArrayBuffer \(transferred, or released by dispose\(\)\)/);
    t.dispose(); // idempotent
    await new Promise((res) => setTimeout(res, 20));
    expect(process.memoryUsage().external - before).toBeLessThan(bytes / 2);
  });

  it('dispose() leaves memory the caller gave, and views of part of a buffer, alone', () => {
    const mine = new Float32Array(1 << 16);
    const t = new Tensor('f32', [1 << 16], mine);
    t.dispose();
    expect(t.disposed).toBe(false);
    expect(mine.length).toBe(1 << 16);
    const whole = zeros([1 << 16]);
    const part = new Tensor('f32', [16], whole.data.subarray(0, 16));
    part.dispose();
    expect(whole.disposed).toBe(false);
  });

  it('the counts never go negative and return to where they were once everything is collected', async () => {
    const native = cpuNative();
    const gc = (globalThis as { gc?: () => void }).gc!;
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((res) => setTimeout(res, 10));
      }
    };
    await settle();
    const start = native.hostCounts();
    // In a function of its own: a suspended async frame would keep its last tensors alive.
    const run = async () => {
      const pending: Promise<Tensor>[] = [];
      for (let i = 0; i < 20; i++) {
        const a = zeros([128, 256]), b = tensor(new Float32Array(256 * 128).fill(1), [256, 128]);
        pending.push(matmul(a, b));
        if (i % 3 === 0) a.dispose();
        if (i % 4 === 0) b.dispose();
        const c = native.hostCounts();
        expect(Math.min(c.blocks, c.bytes, c.lentBytes)).toBeGreaterThanOrEqual(0);
      }
      await Promise.all(pending);
    };
    await run();
    await settle();
    expect(native.hostCounts()).toEqual(start);
  });
});

describe('packed weights are memory V8 sees and frees', () => {
  it('2,000 prepacks of a 1 MB weight in a loop that never yields stay within a bounded RSS', async () => {
    const r = await runScript(`
      const w = new g.Tensor('f32', [512, 512], ints(512 * 512, 5, 2));
      for (let i = 0; i < 50; i++) g.prepack(w, { transB: true });
      gc();
      const start = process.memoryUsage().rss;
      for (let i = 0; i < 2000; i++) {
        g.prepack(w, { transB: true });
        if (i % 10 === 0) gc();
      }
      report({ grewMB: (process.memoryUsage().rss - start) / 2 ** 20 });`);
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.result!.grewMB).toBeLessThan(256); // 2,000 MB when the panels waited for finalisers
  });

  it('PackedWeight.dispose() frees the panel at once and bytes says 0 afterwards', () => {
    const w = tensor(new Float32Array(1024 * 1024).fill(1), [1024, 1024]);
    const pw = prepack(w, { transB: true });
    expect(pw.bytes).toBeGreaterThanOrEqual(4 << 20);
    const before = process.memoryUsage().arrayBuffers;
    pw.dispose();
    expect(before - process.memoryUsage().arrayBuffers).toBeGreaterThanOrEqual(4 << 20);
    expect(pw.bytes).toBe(0);
    expect(pw.source).toBeUndefined();
    expect(pw.disposed).toBe(true);
    expect(w.disposed).toBe(false); // the caller's tensor is not the PackedWeight's to free
    pw.dispose();
  });

  it("a source in the caller's memory is copied once; gemmkit's own is pinned in place", () => {
    const x = tensor(new Float32Array(256).fill(1), [1, 256]);
    const theirs = new Tensor('f32', [256, 256], new Float32Array(256 * 256).fill(2));
    const pw = prepack(theirs);
    expect(pw.source).toBe(theirs);
    structuredClone(theirs.data.buffer, { transfer: [theirs.data.buffer as ArrayBuffer] });
    const gemv = 'cpu.gemv.scalar.kc256.ks1.t1'; // a config that reads the source, not the panel
    expect([...matmulSync(x, pw, { config: gemv }).toFloat32()]).toEqual(new Array(256).fill(512));
    const ours = tensor(new Float32Array(256 * 256).fill(3), [256, 256]);
    const before = process.memoryUsage().arrayBuffers;
    const pw2 = prepack(ours);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(256 * 256 * 4 * 2); // the panel, no copy
    ours.dispose();
    expect([...matmulSync(x, pw2, { config: gemv }).toFloat32()]).toEqual(new Array(256).fill(768));
    pw2.dispose();
    expect(() => matmulSync(x, pw2, { config: gemv })).toThrow(/b is a PackedWeight .* that was disposed/);
    expect(() => matmulSync(x, prepack(zeros([256, 256]), { keepSource: false }), { config: gemv })).toThrow(/keepSource: false/);
  });

  it('a PackedWeight is still a PackedWeight to matmul after its source goes', () => {
    const pw = prepack(zeros([8, 8]), { keepSource: false });
    expect(pw).toBeInstanceOf(PackedWeight);
    expect([...matmulSync(tensor(new Float32Array(8).fill(1), [1, 8]), pw).toFloat32()]).toEqual(new Array(8).fill(0));
  });
});
