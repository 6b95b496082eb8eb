// A stand-in for a GPU addon on machines without a GPU: device memory is host memory, GEMMs run on the
// CPU addon. It implements the GPU addons' raw surface (src/native.ts, NativeGpuAddon) so the device
// tensor layer, matmul's placement rules and the tuner's GPU path can be tested here; the real
// addons' own paths (no device, load failures, config tables) are tested against the built addons. Its
// opSync / opAsync run the CPU addon's ops on the emulated memory, so the ops' GPU dispatch is tested too.
import type { DType } from '../src/dtype.js';
import {
  type GpuBackendName, type NativeDeviceBuffer, type NativeGpuAddon, type NativeGpuConfig, type NativeGpuInfo,
  type NativeTimingOptions, type OpDesc, OP_KINDS, type ProblemDesc, cpuNative,
} from '../src/native.js';

interface EmulatedBuffer {
  device: number;
  bytes: Uint8Array;
  freed: boolean;
}

function isBuffer(x: unknown): x is EmulatedBuffer {
  return typeof x === 'object' && x !== null && (x as EmulatedBuffer).bytes instanceof Uint8Array;
}

function view(buf: EmulatedBuffer, dtype: DType): Float32Array | Uint16Array {
  if (buf.freed) throw new TypeError('emulated GPU: buffer was freed');
  const b = buf.bytes;
  return dtype === 'f32' ? new Float32Array(b.buffer, b.byteOffset, b.byteLength >> 2) : new Uint16Array(b.buffer, b.byteOffset, b.byteLength >> 1);
}

export class EmulatedGpu implements NativeGpuAddon {
  /** Bytes currently allocated. */
  used = 0;
  /** Every GEMM description it ran, for assertions on placement. */
  readonly calls: ProblemDesc[] = [];
  /** Every op description it ran. */
  readonly opCalls: OpDesc[] = [];
  /** Bytes copied from the device to the host (download), e.g. to see what a model's step brings back. */
  downloadedBytes = 0;

  constructor(readonly name: GpuBackendName, readonly deviceCount = 1, readonly memoryBytes = 1 << 20) {}

  info(): NativeGpuInfo {
    const devices = Array.from({ length: this.deviceCount }, (_, index) => ({
      index, name: 'Emulated GPU', arch: this.name === 'cuda' ? 'sm_90' : 'gfx942:sramecc+:xnack-', computeUnits: 4,
      memoryBytes: this.memoryBytes, sharedBytesPerBlock: 232448, tables: [], kernels: 1,
    }));
    return {
      backends: [{ name: this.name, devices }],
      libraries: [{ name: `${this.name}-runtime`, version: 'emulated', path: '', config: '' }],
      threads: 0,
      compiler: 'none',
      gpu: { backend: this.name, runtimeVersion: 'emulated', driverVersion: 'emulated', builtArchs: '', unavailable: '' },
    };
  }

  alloc(device: number, bytes: number): NativeDeviceBuffer {
    if (device < 0 || device >= this.deviceCount) throw new RangeError(`emulated GPU: no device ${device}`);
    if (this.used + bytes > this.memoryBytes) {
      const e = new Error(`${this.name}:${device}: allocating ${bytes} bytes: out of memory`) as Error & { code?: string };
      e.code = 'GEMMKIT_OUT_OF_MEMORY';
      throw e;
    }
    this.used += bytes;
    return { device, bytes: new Uint8Array(bytes), freed: false } as unknown as NativeDeviceBuffer;
  }

  private buffer(x: unknown): EmulatedBuffer {
    if (!isBuffer(x)) throw new TypeError('emulated GPU: not a device buffer');
    if (x.freed) throw new TypeError('emulated GPU: buffer was freed');
    return x;
  }

  free(buffer: NativeDeviceBuffer): void {
    const b = this.buffer(buffer);
    b.freed = true;
    this.used -= b.bytes.byteLength;
  }

  bufferInfo(buffer: NativeDeviceBuffer): { freed: boolean; device: number; bytes: number } {
    const b = buffer as unknown as EmulatedBuffer;
    return { freed: b.freed, device: b.device, bytes: b.bytes.byteLength };
  }

  upload(buffer: NativeDeviceBuffer, source: ArrayBufferView, byteOffset = 0): void {
    this.buffer(buffer).bytes.set(new Uint8Array(source.buffer, source.byteOffset, source.byteLength), byteOffset);
  }

  download(buffer: NativeDeviceBuffer, destination: ArrayBufferView, byteOffset = 0): void {
    const b = this.buffer(buffer).bytes;
    this.downloadedBytes += destination.byteLength;
    new Uint8Array(destination.buffer, destination.byteOffset, destination.byteLength).set(b.subarray(byteOffset, byteOffset + destination.byteLength));
  }

  copy(destination: NativeDeviceBuffer, source: NativeDeviceBuffer, bytes: number, dstOffset = 0, srcOffset = 0): void {
    this.buffer(destination).bytes.set(this.buffer(source).bytes.subarray(srcOffset, srcOffset + bytes), dstOffset);
  }

  synchronize(): void {}

  configs(): NativeGpuConfig[] {
    return [];
  }

  parseConfig(name: string): NativeGpuConfig {
    throw new RangeError(`emulated GPU: '${name}' is not a GPU config name`);
  }

  // The same GEMM on the CPU addon, reading and writing the emulated device memory (or the typed arrays
  // of a staged call) in place.
  private onCpu(desc: ProblemDesc): ProblemDesc {
    const host = (x: ProblemDesc['a'], dtype: DType) => (isBuffer(x) ? view(this.buffer(x), dtype) : x);
    return {
      ...desc, backend: 'cpu', config: '', device: undefined,
      a: host(desc.a, desc.dtypeA), b: host(desc.b, desc.dtypeB), c: host(desc.c, desc.dtypeC),
      ...(desc.bias !== undefined ? { bias: host(desc.bias, desc.biasDtype!) } : {}),
    };
  }

  matmulSync(desc: ProblemDesc): void {
    this.calls.push(desc);
    cpuNative().matmulSync(this.onCpu(desc));
  }

  async matmulAsync(desc: ProblemDesc): Promise<void> {
    this.calls.push(desc);
    await cpuNative().matmulAsync(this.onCpu(desc));
  }

  // The same op on the CPU addon, on typed-array views of the emulated device memory at each operand's
  // byte offset (as the real addons take { buffer, byteOffset }).
  private opOnCpu(desc: OpDesc): OpDesc {
    const host = (x: OpDesc['x'], dtype: DType | undefined) => {
      if (x === undefined || ArrayBuffer.isView(x)) return x;
      const b = this.buffer(x.buffer).bytes;
      if (!Number.isSafeInteger(x.byteOffset) || x.byteOffset < 0 || x.byteOffset > b.byteLength) throw new RangeError('emulated GPU: byteOffset outside the buffer');
      const at = b.byteOffset + x.byteOffset, bytes = b.byteLength - x.byteOffset;
      return (dtype ?? 'f32') === 'f32' ? new Float32Array(b.buffer, at, bytes >> 2) : new Uint16Array(b.buffer, at, bytes >> 1);
    };
    const weightDtype = desc.kind === OP_KINDS.rope ? 'f32' : desc.dtypeWeight; // rope's cos/sin tables are f32
    const out: OpDesc = {
      ...desc, device: undefined,
      x: host(desc.x, desc.dtypeX), y: host(desc.y, desc.dtypeY), out: host(desc.out, desc.dtypeOut),
      weight: host(desc.weight, weightDtype), bias: host(desc.bias, weightDtype),
      kCache: host(desc.kCache, 'f32') as Float32Array | undefined, vCache: host(desc.vCache, 'f32') as Float32Array | undefined,
    };
    for (const k of Object.keys(out) as (keyof OpDesc)[]) if (out[k] === undefined) delete out[k];
    return out;
  }

  opSync(desc: OpDesc): void {
    this.opCalls.push(desc);
    cpuNative().opSync(this.opOnCpu(desc));
  }

  async opAsync(desc: OpDesc): Promise<void> {
    this.opCalls.push(desc);
    await cpuNative().opAsync(this.opOnCpu(desc));
  }

  heuristic(): string {
    return `${this.name}.emulated`;
  }

  candidates(): string[] {
    return [`${this.name}.emulated`];
  }

  supports(): string | null {
    return null;
  }

  async timeConfig(_desc: ProblemDesc, _config: string, opts: NativeTimingOptions): Promise<number[]> {
    return Array.from({ length: opts.iterations }, () => 10);
  }
}
