// matmul / matmulSync / explain: the public API of a GEMM call. The call is validated into a flat problem
// (problem.ts), tuned dispatch picks its config (tuner/dispatch.ts), and it runs natively where the
// tensors are: the CPU addon for CPU tensors, a GPU addon for tensors on 'cuda:<n>' / 'hip:<n>'.
import type { Activation, ProblemDesc } from './native.js';
import type { PackedWeight } from './prepack.js';
import { type MatmulOptions, type ValidatedMatmul, onWeightSource, validateMatmul } from './problem.js';
import type { Tensor } from './tensor.js';
import { type Choice, type Explanation, dispatch, explainCall, packedLayoutOf, tunedRowFailed } from './tuner/dispatch.js';

export type { BackendName } from './backend.js';
export type { Activation, MatmulOptions };

/** A call ready to run: `desc` is what the backend is given (config and form of the weight decided). */
export interface PreparedMatmul extends ValidatedMatmul {
  /** The validated call before dispatch (b as the handle of a prepack()ed weight). */
  validated: ProblemDesc;
  /** What tuned dispatch chose (absent with opts.config or without dispatch). */
  choice?: Choice;
}

// The call's description for `choice`: its config, and for a prepack()ed weight the form it reads.
function withChoice(where: string, call: ValidatedMatmul, choice: Choice): ProblemDesc {
  const desc = { ...call.desc, config: choice.config };
  return choice.weight === 'source' ? onWeightSource(where, desc, call.packed!) : desc;
}

/**
 * Validates a matmul call and returns what the native layer runs; throws TypeError/RangeError. Without
 * opts.config, `tuned` picks the config from the tuned table (src/tuner/dispatch.ts); otherwise the
 * backend's heuristic runs ('' config). `forAsync`: the call runs async (see validateMatmul).
 */
export function prepareMatmul(where: string, a: unknown, b: unknown, opts: unknown, tuned = true, forAsync = false): PreparedMatmul {
  const call = validateMatmul(where, a, b, opts, forAsync);
  const validated = call.desc;
  if (call.forced !== undefined) {
    // A forced config that reads B as stored runs on a prepared weight's kept source.
    const readsSource = call.packed && packedLayoutOf(call.native, validated.backend, call.forced) === null;
    return { ...call, validated, desc: readsSource ? onWeightSource(where, validated, call.packed!) : validated };
  }
  if (!tuned) return { ...call, validated };
  const choice = dispatch(call.native, validated, call.packed?.dispatchRef());
  return { ...call, validated, desc: withChoice(where, call, choice), choice };
}

// A tuned row's config that fails to run a call (although it passed the check when its file was loaded)
// gives way to the heuristic: the call runs again with what that picks (the failure happened before any
// output was written: configs are checked before they run). Any other failure is the caller's; an
// opts.config that cannot run the call is a RangeError naming it, as explain() says.
function fallbackAfter(where: string, call: PreparedMatmul, error: unknown): ProblemDesc {
  if (call.forced !== undefined && (error as { code?: string } | undefined)?.code === 'GEMMKIT_UNSUPPORTED') {
    throw new RangeError(`${where}: config ${JSON.stringify(call.forced)} cannot run this call: ${(error as Error).message}`);
  }
  const fallback = call.choice && tunedRowFailed(call.native, call.validated, call.desc, call.packed?.dispatchRef(), call.choice, error);
  if (!fallback) throw error;
  return withChoice(where, { ...call, desc: call.validated }, fallback);
}

/**
 * C = act(alpha * op(a) op(b) + beta * out + bias), computed off the event loop.
 * a: [M, K] or [B, M, K] ([K, M] / [B, K, M] with transA); b: [K, N] or [B, K, N] ([N, K] with transB).
 * Resolves to `out` (or a new tensor): [M, N], or [B, M, N] when either input is batched.
 */
export async function matmul(a: Tensor, b: Tensor | PackedWeight, opts?: MatmulOptions): Promise<Tensor> {
  const call = prepareMatmul('matmul', a, b, opts, true, true);
  try {
    await call.native.matmulAsync(call.desc);
  } catch (e) {
    await call.native.matmulAsync(fallbackAfter('matmul', call, e));
  }
  return call.out;
}

/** The synchronous twin of matmul, for small calls where a promise costs more than the GEMM. */
export function matmulSync(a: Tensor, b: Tensor | PackedWeight, opts?: MatmulOptions): Tensor {
  const call = prepareMatmul('matmulSync', a, b, opts);
  try {
    call.native.matmulSync(call.desc);
  } catch (e) {
    call.native.matmulSync(fallbackAfter('matmulSync', call, e));
  }
  return call.out;
}

/**
 * Which config matmul(a, b, opts) would run, and why (tuned, bucket, default or forced); for a
 * prepack()ed b also which form of the weight it reads. An opts.config that cannot run this call is a
 * RangeError saying why, as matmul would fail.
 */
export function explain(a: Tensor, b: Tensor | PackedWeight, opts?: MatmulOptions): Explanation {
  const where = 'explain';
  const call = prepareMatmul(where, a, b, opts, false);
  if (call.forced !== undefined) {
    let why: string | null;
    try {
      why = call.native.supports(call.desc, call.forced);
    } catch (e) {
      why = (e as Error).message;
    }
    if (why !== null) throw new RangeError(`${where}: config ${JSON.stringify(call.forced)} cannot run this call: ${why}`);
  }
  return explainCall(call.native, call.validated, call.packed?.dispatchRef(), call.forced);
}
