// Which native surface runs a call: the backend names a user may give (`backend` option, a tuned file's
// backend validator) resolved to the CPU addon or a GPU addon. The public API, the problem validation
// and tuned dispatch all resolve backends here, so none of them needs another.
import type { Placement } from './device.js';
import { type NativeSurface, cpuNative, gpuNative } from './native.js';

export type BackendName = 'auto' | 'cpu' | 'cuda' | 'hip';
const BACKENDS: readonly BackendName[] = ['auto', 'cpu', 'cuda', 'hip'];

/** The backend option, checked: undefined is 'auto'; anything else not in BACKENDS is a TypeError. */
export function checkBackendName(where: string, backend: unknown): BackendName {
  if (backend === undefined) return 'auto';
  if (!BACKENDS.includes(backend as BackendName)) {
    throw new TypeError(`${where}: backend must be one of ${BACKENDS.map((b) => `'${b}'`).join(', ')}, got ${JSON.stringify(backend)}`);
  }
  return backend as BackendName;
}

/** The native surface of a backend ('auto' is the CPU here); an Error saying why a GPU one is not available. */
export function resolveBackend(where: string, backend: unknown): NativeSurface {
  const name = checkBackendName(where, backend);
  return name === 'auto' || name === 'cpu' ? cpuNative() : gpuNative(name, where);
}

/** Where a call runs: the backend's name, the device index and its native surface. */
export interface CallPlacement {
  name: string;
  device: number;
  native: NativeSurface;
}

/**
 * Which backend and device run a call whose tensors are at `place`: 'auto' follows the tensors; 'cuda'
 * or 'hip' with CPU tensors stages them through device 0 and returns a CPU result.
 */
export function placeCall(where: string, backendOption: unknown, place: Placement): CallPlacement {
  const name = checkBackendName(where, backendOption);
  if (place.backend === 'cpu') {
    if (name === 'auto' || name === 'cpu') return { name: 'cpu', device: 0, native: cpuNative() };
    return { name, device: 0, native: gpuNative(name, where) };
  }
  const at = `${place.backend}:${place.index}`;
  if (name !== 'auto' && name !== place.backend) {
    throw new TypeError(`${where}: backend '${name}' cannot read tensors on ${at}; copy them with .to(${name === 'cpu' ? "'cpu'" : `'${name}:0'`}) or use backend 'auto'`);
  }
  return { name: place.backend, device: place.index, native: gpuNative(place.backend, where) };
}
