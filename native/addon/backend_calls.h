// The Node-API calls every addon (CPU, CUDA, HIP) exposes the same way over its registered Backend:
// heuristic, candidates, supports, packedLayout and timeConfig. One implementation, bound by each addon.
#pragma once

#include <napi.h>

namespace gemmkit {

// Sets exports.heuristic, .candidates, .supports, .packedLayout and .timeConfig.
void exportBackendCalls(Napi::Env env, Napi::Object exports);

}  // namespace gemmkit
