import {
  GPU_BACKENDS, type GpuBackendName, type NativeDevice, type NativeGpuDevice, type NativeKernel, type NativeLibrary,
  cpuNative, gpuAddonStatus, isEmulatedBackend,
} from './native.js';
import { VERSION } from './version.js';

/** A GPU backend's addon: whether it loaded, what it found, and why it cannot run GEMMs if it cannot. */
export interface GpuBackendInfo {
  name: GpuBackendName;
  /** The addon file loaded, or looked for (GEMMKIT_CUDA_ADDON / GEMMKIT_HIP_ADDON / GEMMKIT_EMU_*_ADDON override it). */
  path: string;
  loaded: boolean;
  /**
   * emu-cuda, emu-hip: the CUDA / HIP kernels on a CPU emulator that checks them (npm run build:emu).
   * Correct results, host timings; never chosen by 'auto' and never written to a tuned file.
   */
  emulated: boolean;
  runtimeVersion?: string;
  driverVersion?: string;
  /** The GPU architectures its kernels were compiled for: '80,90a', 'gfx942,gfx90a'. */
  builtArchs?: string;
  devices: NativeGpuDevice[];
  /** Runtime, driver and vendor BLAS versions (the vendor BLAS algorithms are tuner candidates). */
  libraries: NativeLibrary[];
  /** Why the backend is not usable here: not built, failed to load, no device. Absent when it is. */
  reason?: string;
}

export interface GemmkitInfo {
  version: string;
  /** Backends that can run GEMMs here, with their devices. */
  backends: { name: string; devices: NativeDevice[] }[];
  /** Backends that are not available here, and why. */
  unavailable: { name: string; reason: string }[];
  /** The GPU addons in detail. */
  gpus: GpuBackendInfo[];
  cpu: { model: string; cores: number; features: string[] };
  /** Compute threads of the CPU pool (GEMMKIT_NUM_THREADS overrides the core count). */
  threads: number;
  /** Every CPU micro-kernel compiled in, and whether this CPU can run it. */
  kernels: NativeKernel[];
  /** System BLAS libraries found at run time; each is a tuner candidate (see README, Tuning). */
  libraries: NativeLibrary[];
  compiler: string;
}

function gpuInfo(name: GpuBackendName): GpuBackendInfo {
  const s = gpuAddonStatus(name);
  const emulated = isEmulatedBackend(name);
  if (!s.addon) return { name, path: s.path, loaded: false, emulated, devices: [], libraries: [], reason: s.reason };
  const n = s.addon.info();
  return {
    name, path: s.path, loaded: true, emulated,
    runtimeVersion: n.gpu.runtimeVersion, driverVersion: n.gpu.driverVersion, builtArchs: n.gpu.builtArchs,
    devices: n.backends.find((b) => b.name === name)?.devices ?? [],
    libraries: n.libraries,
    ...(s.reason ? { reason: s.reason } : {}),
  };
}

export function info(): GemmkitInfo {
  const n = cpuNative().info();
  const gpus = GPU_BACKENDS.map(gpuInfo);
  return {
    version: VERSION,
    backends: [...n.backends, ...gpus.filter((g) => !g.reason).map((g) => ({ name: g.name, devices: g.devices }))],
    unavailable: gpus.filter((g) => g.reason).map((g) => ({ name: g.name, reason: g.reason! })),
    gpus,
    cpu: n.cpu,
    threads: n.threads,
    kernels: n.kernels,
    libraries: n.libraries,
    compiler: n.compiler,
  };
}
