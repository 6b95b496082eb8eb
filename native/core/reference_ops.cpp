#include "reference_ops.h"

#include <cmath>

#include "op_check.h"

namespace gemmkit {

namespace {

double load(const void* p, DType t, int64_t i) { return double(loadAsF32(p, t, i)); }

// Softmax of scores in place (max subtracted first), float64.
void softmaxInPlace(std::vector<double>& s) {
  double m = -INFINITY;
  for (double v : s) m = std::fmax(m, v);
  double sum = 0;
  for (double& v : s) sum += (v = std::exp(v - m));
  for (double& v : s) v /= sum;
}

}  // namespace

Status referenceOp(const OpDesc& op, const OpBuffers& buf, std::vector<double>* out64) {
  Status s = checkOp(op, buf);
  if (!s.isOk()) return s;
  const int64_t rows = op.rows, cols = op.cols;
  std::vector<double> result(static_cast<size_t>(rows * cols));
  auto at = [&](int64_t r, int64_t c) -> double& { return result[size_t(r * cols + c)]; };
  bool writeOut = true;  // store result into out (ldout, dtypeOut)
  switch (op.kind) {
    case OpKind::Embedding:
      for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) at(r, c) = load(buf.x, op.dtypeX, buf.ids[r] * op.ldx + c);
      }
      break;
    case OpKind::RmsNorm:
    case OpKind::LayerNorm:
      for (int64_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        if (op.kind == OpKind::LayerNorm) {
          for (int64_t c = 0; c < cols; c++) mean += load(buf.x, op.dtypeX, r * op.ldx + c);
          mean /= double(cols);
        }
        for (int64_t c = 0; c < cols; c++) {
          const double d = load(buf.x, op.dtypeX, r * op.ldx + c) - mean;
          var += d * d;
        }
        const double inv = 1.0 / std::sqrt(var / double(cols) + double(op.eps));
        for (int64_t c = 0; c < cols; c++) {
          double v = (load(buf.x, op.dtypeX, r * op.ldx + c) - mean) * inv * load(buf.weight, op.dtypeWeight, c);
          if (buf.bias && op.kind == OpKind::LayerNorm) v += load(buf.bias, op.dtypeWeight, c);
          at(r, c) = v;
        }
      }
      break;
    case OpKind::Rope: {
      const int64_t half = op.headDim / 2;
      const float* cosT = static_cast<const float*>(buf.weight);
      const float* sinT = static_cast<const float*>(buf.bias);
      for (int64_t r = 0; r < rows; r++) {
        const int64_t p = buf.positions[r];
        for (int64_t h = 0; h < op.heads; h++) {
          for (int64_t i = 0; i < half; i++) {
            const int64_t c = h * op.headDim + i;
            const double a = load(buf.x, op.dtypeX, r * op.ldx + c), b = load(buf.x, op.dtypeX, r * op.ldx + c + half);
            const double cs = cosT[p * half + i], sn = sinT[p * half + i];
            at(r, c) = a * cs - b * sn;
            at(r, c + half) = b * cs + a * sn;
          }
        }
      }
      // In place: the rotated rows go back into x.
      void* x = const_cast<void*>(buf.x);
      for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) storeFromF32(x, op.dtypeX, r * op.ldx + c, float(at(r, c)));
      }
      writeOut = false;
      break;
    }
    case OpKind::KvStore:
      for (int64_t b = 0; b < op.batch; b++) {
        for (int64_t t = 0; t < op.tokens; t++) {
          const int64_t r = b * op.tokens + t;
          for (int64_t h = 0; h < op.kvHeads; h++) {
            const int64_t base = ((int64_t(buf.slotIndex[b]) * op.kvHeads + h) * op.capacity + buf.past[b] + t) * op.headDim;
            for (int64_t i = 0; i < op.headDim; i++) {
              const double v = load(buf.x, op.dtypeX, r * op.ldx + h * op.headDim + i);
              at(r, h * op.headDim + i) = v;
              static_cast<float*>(buf.out)[base + i] = float(v);
            }
          }
        }
      }
      writeOut = false;
      break;
    case OpKind::Attention: {
      const int64_t group = op.heads / op.kvHeads, d = op.headDim;
      for (int64_t b = 0; b < op.batch; b++) {
        for (int64_t t = 0; t < op.tokens; t++) {
          const int64_t r = b * op.tokens + t, span = int64_t(buf.past[b]) + t + 1;
          for (int64_t h = 0; h < op.heads; h++) {
            const int64_t base = (int64_t(buf.slotIndex[b]) * op.kvHeads + h / group) * op.capacity * d;
            std::vector<double> p(static_cast<size_t>(span));
            for (int64_t j = 0; j < span; j++) {
              double dot = 0;
              for (int64_t i = 0; i < d; i++) dot += load(buf.x, op.dtypeX, r * op.ldx + h * d + i) * double(buf.kCache[base + j * d + i]);
              p[size_t(j)] = double(op.scale) * dot;
            }
            softmaxInPlace(p);
            for (int64_t i = 0; i < d; i++) {
              double sum = 0;
              for (int64_t j = 0; j < span; j++) sum += p[size_t(j)] * double(buf.vCache[base + j * d + i]);
              at(r, h * d + i) = sum;
            }
          }
        }
      }
      break;
    }
    case OpKind::Softmax:
      for (int64_t r = 0; r < rows; r++) {
        std::vector<double> row(static_cast<size_t>(cols));
        for (int64_t c = 0; c < cols; c++) row[size_t(c)] = load(buf.x, op.dtypeX, r * op.ldx + c);
        softmaxInPlace(row);
        for (int64_t c = 0; c < cols; c++) at(r, c) = row[size_t(c)];
      }
      break;
    case OpKind::Swiglu:
    case OpKind::Add:
    case OpKind::Activate:
    case OpKind::Cast:
      for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
          const double x = load(buf.x, op.dtypeX, r * op.ldx + c);
          double v = x;
          if (op.kind == OpKind::Swiglu) v = applyActivation(Activation::Silu, x) * load(buf.y, op.dtypeY, r * op.ldy + c);
          if (op.kind == OpKind::Add) v = x + load(buf.y, op.dtypeY, r * op.ldy + c);
          if (op.kind == OpKind::Activate) v = applyActivation(op.activation, x);
          at(r, c) = v;
        }
      }
      break;
    case OpKind::Argmax:
      for (int64_t r = 0; r < rows; r++) {
        int32_t best = 0;
        double bestValue = NAN;
        for (int64_t c = 0; c < cols; c++) {
          const double v = load(buf.x, op.dtypeX, r * op.ldx + c);
          if (!std::isnan(v) && (std::isnan(bestValue) || v > bestValue)) {
            best = int32_t(c);
            bestValue = v;
          }
        }
        buf.idsOut[r] = best;
        for (int64_t c = 0; c < cols; c++) at(r, c) = double(best);
      }
      writeOut = false;
      break;
  }
  if (writeOut) {
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++) storeFromF32(buf.out, op.dtypeOut, r * op.ldout + c, float(at(r, c)));
    }
  }
  if (out64) *out64 = std::move(result);
  return Status::ok();
}

}  // namespace gemmkit
