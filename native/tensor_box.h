// The tensor handle shared by fastvision's addons: a libtorch tensor in a box
// that JavaScript holds as a type-tagged External. addon.cc creates and frees
// them; dist.cc (c10d) reads the tensors they hold.
#pragma once
#include <node_api.h>
#include <ATen/ATen.h>

struct TensorBox {
  at::Tensor tensor;
  int64_t reported = 0;
};

static const napi_type_tag kTensorTag = {0x6661737476697369ULL, 0x6f6e74656e736f72ULL};
