// Soak: many GEMMs from several threads at once, with the memory of some of them taken away mid-call,
// and prepack/dispose cycles; then checks that the process's RSS came back to within a stated bound of
// its level after warm-up, and that every result that should be right was right.
//
//   node --expose-gc --import tsx test/soak/soak.ts [--workers 3] [--small 100000] [--large 1000]
//        [--prepacks 5000] [--bound-mb 128]
//
// Not part of `npm test` (it takes minutes); .ci/run runs it. Prints one line of figures per phase and
// exits 1 when a result was wrong or RSS grew by more than the bound.
import { Command, InvalidArgumentError } from 'commander';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Tensor, matmul, matmulSync, prepack, tensor, zeros } from '../../src/index.js';
import { cpuNative } from '../../src/native.js';

interface Plan {
  small: number;
  large: number;
  prepacks: number;
  seed: number;
}

interface Tally {
  small: number;
  large: number;
  prepacks: number;
  rejected: number; // async calls whose caller-owned out was transferred away mid-call, as expected
  wrong: number;
}

type ToWorker = { kind: 'run' } | { kind: 'collect' };
type FromWorker = { kind: 'warm' } | { kind: 'done'; tally: Tally } | { kind: 'collected' };

const gc = (globalThis as { gc?: () => void }).gc;
const MB = 2 ** 20;

// Small integers in [-r, r]: every GEMM of them is exact in f32, so a result is checked with ===.
function ints(n: number, seed: number, r = 3): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) % (2 * r + 1)) - r;
  }
  return out;
}

// C = A B on the host, in float64 (exact here).
function reference(a: Float32Array, b: Float32Array, m: number, n: number, k: number): Float32Array {
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let l = 0; l < k; l++) {
      const x = a[i * k + l];
      if (x === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += x * b[l * n + j];
    }
  }
  return c;
}

function same(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// One thread's share: small GEMMs (sync and async, several in flight), large ones, prepack/dispose
// cycles, with operands in gemmkit memory and in the caller's, some disposed or transferred mid-call.
async function work(plan: Plan, tally: Tally): Promise<void> {
  let seed = plan.seed;
  const check = (c: Tensor, want: Float32Array) => {
    if (!same(c.toFloat32(), want)) tally.wrong++;
  };
  const pending: Promise<void>[] = [];
  const drain = async () => {
    await Promise.all(pending);
    pending.length = 0;
  };
  for (let i = 0; i < plan.small; i++) {
    seed++;
    const m = 1 + (seed % 24), n = 8 + (seed % 40), k = 4 + (seed % 56);
    const av = ints(m * k, seed), bv = ints(k * n, seed * 7);
    // Every 8th operand pair is the caller's memory; the rest gemmkit's.
    const a = i % 8 === 0 ? new Tensor('f32', [m, k], av) : tensor(av, [m, k]);
    const b = i % 8 === 1 ? new Tensor('f32', [k, n], bv) : tensor(bv, [k, n]);
    const want = i % 50 === 0 ? reference(av, bv, m, n, k) : undefined;
    if (i % 3 === 0) {
      const c = matmulSync(a, b);
      if (want) check(c, want);
    } else if (i % 500 === 2) {
      // The caller's out transferred away while the call runs: a clear rejection, never a crash.
      const out = new Tensor('f32', [m, n], new Float32Array(m * n));
      const p = matmul(a, b, { out });
      structuredClone(out.data.buffer, { transfer: [out.data.buffer as ArrayBuffer] });
      pending.push(p.then(() => { tally.wrong++; }, () => { tally.rejected++; }));
    } else {
      pending.push(matmul(a, b).then((c) => { if (want) check(c, want); }));
      if (i % 7 === 0) a.dispose();
    }
    tally.small++;
    if (pending.length >= 16) await drain();
    if (i % 256 === 0) await yieldToLoop();
  }
  await drain();
  for (let i = 0; i < plan.large; i++) {
    seed++;
    const m = 192 + (seed % 5) * 32, n = 256, k = 256 + (seed % 3) * 64;
    const av = ints(m * k, seed), bv = ints(k * n, seed * 7);
    const a = tensor(av, [m, k], i % 4 === 3 ? 'bf16' : 'f32'), b = tensor(bv, [k, n]);
    const want = i % 25 === 0 ? reference(av, bv, m, n, k) : undefined;
    const p = i % 2 === 0 ? matmul(a, b) : Promise.resolve(matmulSync(a, b));
    if (i % 5 === 0) b.dispose(); // freed at once for sync; after the call for async
    pending.push(p.then((c) => { if (want) check(c, want); }));
    tally.large++;
    if (pending.length >= 4) await drain();
  }
  await drain();
  const weight = new Tensor('f32', [256, 256], ints(256 * 256, plan.seed));
  const x = tensor(ints(256, plan.seed + 1), [1, 256]);
  const want = reference(x.toFloat32(), (() => {
    const t = new Float32Array(256 * 256); // weight^T, as prepack's transB applies it
    const w = weight.toFloat32();
    for (let r = 0; r < 256; r++) for (let c = 0; c < 256; c++) t[c * 256 + r] = w[r * 256 + c];
    return t;
  })(), 1, 256, 256);
  for (let i = 0; i < plan.prepacks; i++) {
    const source = i % 2 === 0 ? weight : tensor(weight.toFloat32(), [256, 256]);
    const pw = prepack(source, { transB: true });
    if (i % 10 === 0) check(i % 20 === 0 ? await matmul(x, pw) : matmulSync(x, pw), want);
    pw.dispose();
    if (source !== weight) source.dispose();
    tally.prepacks++;
    if (i % 100 === 0) await yieldToLoop();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

if (!isMainThread) {
  const plan = workerData as Plan;
  const tally: Tally = { small: 0, large: 0, prepacks: 0, rejected: 0, wrong: 0 };
  const send = (m: FromWorker) => parentPort!.postMessage(m);
  // Warm-up: a slice of the same mix, so the allocators and pools reach their working size first.
  await work({ small: 2000, large: 20, prepacks: 50, seed: plan.seed + 999 }, { ...tally });
  await settle();
  send({ kind: 'warm' });
  parentPort!.on('message', async (m: ToWorker) => {
    if (m.kind === 'run') {
      await work(plan, tally);
      send({ kind: 'done', tally });
    } else {
      await settle();
      send({ kind: 'collected' });
    }
  });
} else {
  const positive = (v: string) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError('expected a non-negative integer');
    return n;
  };
  const opts = new Command()
    .option('--workers <n>', 'worker threads sharing the work', positive, 3)
    .option('--small <n>', 'small matmuls in all', positive, 100_000)
    .option('--large <n>', 'large matmuls in all', positive, 1_000)
    .option('--prepacks <n>', 'prepack/dispose cycles in all', positive, 5_000)
    .option('--bound-mb <n>', 'largest RSS growth over the run allowed, in MiB', positive, 128)
    .parse()
    .opts<{ workers: number; small: number; large: number; prepacks: number; boundMb: number }>();
  if (!gc) {
    console.error('soak: run with node --expose-gc');
    process.exit(2);
  }
  const workers = Math.max(1, opts.workers);
  const share = (total: number, i: number) => Math.floor(total / workers) + (i < total % workers ? 1 : 0);
  const started = performance.now();
  // Workers load this file through tsx's API (the --import hooks of the main thread do not reach them).
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const threads = Array.from({ length: workers }, (_, i) =>
    new Worker(boot, {
      eval: true,
      workerData: { small: share(opts.small, i), large: share(opts.large, i), prepacks: share(opts.prepacks, i), seed: 1000 * (i + 1) } satisfies Plan,
    }));
  const next = (w: Worker, kind: FromWorker['kind']) =>
    new Promise<FromWorker>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.kind === kind) {
          w.off('message', onMessage);
          resolve(m);
        }
      };
      w.on('message', onMessage);
      w.once('error', reject);
    });
  await Promise.all(threads.map((w) => next(w, 'warm')));
  await settle();
  const rss = () => process.memoryUsage().rss;
  const warm = rss();
  let peak = warm;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 50);
  const tallies = (await Promise.all(threads.map((w) => {
    const done = next(w, 'done');
    w.postMessage({ kind: 'run' } satisfies ToWorker);
    return done;
  }))).map((m) => (m as { tally: Tally }).tally);
  const ranMs = performance.now() - started;
  await Promise.all(threads.map((w) => {
    const collected = next(w, 'collected');
    w.postMessage({ kind: 'collect' } satisfies ToWorker);
    return collected;
  }));
  await settle();
  clearInterval(sampler);
  const end = rss();
  const total = tallies.reduce((t, x) => ({
    small: t.small + x.small, large: t.large + x.large, prepacks: t.prepacks + x.prepacks,
    rejected: t.rejected + x.rejected, wrong: t.wrong + x.wrong,
  }));
  const counts = cpuNative().hostCounts();
  await Promise.all(threads.map((w) => w.terminate()));
  const grew = (end - warm) / MB;
  console.log(`soak: ${workers} workers, ${total.small} small + ${total.large} large matmuls, ${total.prepacks} prepack/dispose cycles in ${(ranMs / 1000).toFixed(1)} s`);
  console.log(`soak: RSS after warm-up ${(warm / MB).toFixed(0)} MiB, peak ${(peak / MB).toFixed(0)} MiB, at the end ${(end / MB).toFixed(0)} MiB (grew ${grew.toFixed(1)} MiB; bound ${opts.boundMb} MiB)`);
  console.log(`soak: addon memory at the end: ${counts.blocks} blocks, ${(counts.bytes / MB).toFixed(1)} MiB; out transferred mid-call and rejected: ${total.rejected}; wrong results: ${total.wrong}`);
  if (total.wrong > 0 || grew > opts.boundMb) {
    console.error(`soak: FAILED (${total.wrong > 0 ? `${total.wrong} wrong results` : `RSS grew ${grew.toFixed(1)} MiB, more than ${opts.boundMb} MiB`})`);
    process.exit(1);
  }
  console.log('soak: ok');
}
