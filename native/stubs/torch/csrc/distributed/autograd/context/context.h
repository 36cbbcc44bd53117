// Debian's libtorch headers leave out torch/csrc/distributed/autograd, which
// c10d's reducer.hpp includes for two names only: the type of a gradient
// callback (checked by a static_assert) and a shared pointer to an RPC context
// (a member whose size does not depend on the class). native/dist.cc never uses
// distributed autograd; this stands in for the missing header, on the include
// path after libtorch's own, so a complete install's real header wins.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
