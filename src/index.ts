// gemmkit: GEMM for Node on CPUs (and GPUs once their addons are built), with tuned dispatch.
export { type DType, DTYPES, dtypeSize, f32ToBf16, f32ToF16, bf16ToF32, f16ToF32, toBf16Bits, toF16Bits, fromBf16Bits, fromF16Bits } from './dtype.js';
export { Tensor, type TensorData, type Device, type GpuDevice, tensor, zeros } from './tensor.js';
export { matmul, matmulSync, explain, type MatmulOptions, type BackendName, type Activation } from './matmul.js';
export { prepack, PackedWeight, type PrepackOptions } from './prepack.js';
export {
  embedding, rmsNorm, layerNorm, rope, ropeTables, kvStore, attention, softmax, swiglu, add, activate, argmax, cast,
  type OutOptions, type NormOptions, type RopeOptions, type CacheOptions, type AttentionOptions,
} from './ops.js';
export { info, type GemmkitInfo, type GpuBackendInfo } from './info.js';
export { VERSION } from './version.js';
export {
  SafetensorsError, SafetensorsFile, Checkpoint, readSafetensorsHeader, parseSafetensorsHeader, loadSafetensors, saveSafetensors,
  MAX_TENSOR_DIM, MAX_TENSOR_RANK,
  type SafetensorsHeader, type SafetensorsTensorInfo, type CheckpointTensorInfo, type RawTensor, type SafetensorsOpenOptions,
} from './safetensors.js';
export {
  loadModel, forward, createKVCache, modelGemmShapes, KVCache, LLAMA_MAX_POSITIONS,
  type Model, type TokenIds, type ForwardOptions, type LoadModelOptions, type GemmShape, type GemmShapeOptions, type LlamaConfig, type LlamaModel,
  type MlpModel, type MlpSpec,
  MLP_METADATA_KEY, Linear, prepareWeight, linearForward, linearInputDtype, type PreparedWeight, writeRandomLlamaCheckpoint, type RandomLlamaOptions,
} from './models/index.js';
export {
  generate, stream, sampleToken, resolveSampling, type GenerateOptions, type SamplingOptions, type Sampling, type FinishReason, type Prompt,
} from './generate.js';
export { loadTokenizer, TextTokenizer, type ChatMessage, type EncodeOptions, type DecodeOptions } from './text/tokenizer.js';
export { setTunedFile, tunedFiles, type Explanation, type TunedFileStatus, TunedFileError } from './tuner/dispatch.js';
