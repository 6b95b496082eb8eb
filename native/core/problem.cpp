#include "problem.h"

#include <cmath>

namespace gemmkit {

std::string Problem::describe() const {
  std::string s = std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
  if (batch != 1) s += " batch " + std::to_string(batch);
  s += std::string(" ") + dtypeName(dtypeA) + "*" + dtypeName(dtypeB) + "->" + dtypeName(dtypeC);
  s += std::string(" ") + (transA ? "t" : "n") + (transB ? "t" : "n");
  if (hasBias) s += " bias";
  if (activation != Activation::None) s += std::string(" ") + activationName(activation);
  if (!packedB.empty()) s += " prepacked " + packedB;
  return s;
}

Status checkProblem(const Problem& p) {
  if (p.m < 0 || p.n < 0 || p.k < 0 || p.batch < 0) {
    return invalidArgument("negative dimension in problem " + p.describe());
  }
  if (p.lda < (p.colsA() > 0 ? p.colsA() : 1) || p.ldb < (p.colsB() > 0 ? p.colsB() : 1) ||
      p.ldc < (p.n > 0 ? p.n : 1)) {
    return invalidArgument("leading dimension smaller than the row length in problem " + p.describe());
  }
  if (p.strideA < 0 || p.strideB < 0 || p.strideC < 0) {
    return invalidArgument("negative batch stride in problem " + p.describe());
  }
  if (p.batch > 1 && p.m > 0 && p.n > 0 && p.strideC < p.m * p.ldc) {
    return invalidArgument("batch stride of C overlaps its batches in problem " + p.describe());
  }
  if (std::isnan(p.alpha) || std::isnan(p.beta)) {
    return invalidArgument("alpha or beta is NaN in problem " + p.describe());
  }
  return Status::ok();
}

}  // namespace gemmkit
