import { cpuNative, type NativeDevice, type NativeKernel, type NativeLibrary } from './native.js';
import { VERSION } from './version.js';

export interface GemmkitInfo {
  version: string;
  /** Backends whose addon loaded, with their devices. */
  backends: { name: string; devices: NativeDevice[] }[];
  /** Backends that are not available here, and why. */
  unavailable: { name: string; reason: string }[];
  cpu: { model: string; cores: number; features: string[] };
  /** Compute threads of the CPU pool (GEMMKIT_NUM_THREADS overrides the core count). */
  threads: number;
  /** Every CPU micro-kernel compiled in, and whether this CPU can run it. */
  kernels: NativeKernel[];
  /** System BLAS libraries found at run time; each is a tuner candidate (see README, Tuning). */
  libraries: NativeLibrary[];
  compiler: string;
}

export function info(): GemmkitInfo {
  const n = cpuNative().info();
  return {
    version: VERSION,
    backends: n.backends,
    unavailable: [
      { name: 'cuda', reason: 'not built: this package has no CUDA addon yet' },
      { name: 'hip', reason: 'not built: this package has no HIP addon yet' },
    ],
    cpu: n.cpu,
    threads: n.threads,
    kernels: n.kernels,
    libraries: n.libraries,
    compiler: n.compiler,
  };
}
