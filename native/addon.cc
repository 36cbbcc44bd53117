// fastvision's only C++: a thin, generic bridge from JavaScript to libtorch.
//
// Every ATen operator is called boxed through the dispatcher, with arguments
// converted by the operator's own schema, so adding an op to the TypeScript
// side never needs a rebuild. The rest is what the dispatcher cannot do for us:
// tensor lifetime, TypedArray I/O, autograd entry points and global settings.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/version.h>

#include <napi.h>

#include "tensor_box.h"

#include <atomic>
#include <cmath>
#include <sstream>
#include <cstdlib>
#include <malloc.h>
#include <mutex>
#include <cstring>
#include <dlfcn.h>
#include <link.h>
#include <string>
#include <vector>

namespace {

// A tensor owned by JavaScript is a TensorBox (tensor_box.h, shared with dist.cc).
// `reported` is what we told V8 this handle keeps alive, so the garbage collector
// feels native memory it cannot see.

std::atomic<int64_t> gLiveHandles{0};

// Whether tensor sizes are reported to V8 (FASTVISION_REPORT_MEMORY=0 turns it off).
bool gReportMemory = true;
// c10's flag that zero-fills every CPU allocation, where this libtorch has it (see FindZeroFillFlag).
bool* gZeroFillFlag = nullptr;

std::vector<c10::OperatorHandle> gOps;

int64_t TensorBytes(const at::Tensor& t) {
  if (!t.defined()) return 0;
  return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
}

void ReleaseBox(napi_env env, TensorBox* box) {
  if (box->tensor.defined()) {
    box->tensor = at::Tensor();
    gLiveHandles--;
  }
  if (box->reported != 0) {
    int64_t ignored;
    napi_adjust_external_memory(env, -box->reported, &ignored);
    box->reported = 0;
  }
}

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  auto* box = new TensorBox();
  box->reported = gReportMemory ? TensorBytes(t) : 0;
  box->tensor = std::move(t);
  gLiveHandles++;
  auto ext = Napi::External<TensorBox>::New(env, box, [](Napi::Env e, TensorBox* b) {
    ReleaseBox(e, b);
    delete b;
  });
  napi_type_tag_object(env, ext, &kTensorTag);
  if (box->reported != 0) {
    int64_t ignored;
    napi_adjust_external_memory(env, box->reported, &ignored);
  }
  return ext;
}

bool IsTensorHandle(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) return false;
  bool ok = false;
  napi_check_object_type_tag(env, v, &kTensorTag, &ok);
  return ok;
}

TensorBox* BoxOf(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!IsTensorHandle(env, v)) {
    throw Napi::TypeError::New(env, std::string(what) + ": expected a tensor handle");
  }
  return v.As<Napi::External<TensorBox>>().Data();
}

const at::Tensor& TensorOf(Napi::Env env, const Napi::Value& v, const char* what) {
  TensorBox* box = BoxOf(env, v, what);
  if (!box->tensor.defined()) {
    throw Napi::Error::New(env, std::string(what) + ": tensor was disposed");
  }
  return box->tensor;
}

// ---- argument conversion -------------------------------------------------

struct ArgError {
  std::string message;
};

int64_t ToInt(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) {
      throw ArgError{"argument '" + name + "' must be an integer, got " + std::to_string(d)};
    }
    return static_cast<int64_t>(d);
  }
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  throw ArgError{"argument '" + name + "' must be an integer"};
}

double ToDouble(const Napi::Value& v, const std::string& name) {
  if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue();
  if (v.IsBigInt()) {
    bool lossless;
    return static_cast<double>(v.As<Napi::BigInt>().Int64Value(&lossless));
  }
  throw ArgError{"argument '" + name + "' must be a number"};
}

bool ToBool(const Napi::Value& v, const std::string& name) {
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
  if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue() != 0;
  throw ArgError{"argument '" + name + "' must be a boolean"};
}

// A JS number is an integer Scalar when it holds an exact integer, so integer
// tensors stay integer (x.add(1)) while float tensors promote as in Python.
c10::Scalar ToScalar(const Napi::Value& v, const std::string& name) {
  if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
  if (v.IsBigInt()) {
    bool lossless;
    return c10::Scalar(static_cast<int64_t>(v.As<Napi::BigInt>().Int64Value(&lossless)));
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
      return c10::Scalar(static_cast<int64_t>(d));
    }
    return c10::Scalar(d);
  }
  throw ArgError{"argument '" + name + "' must be a number or boolean"};
}

c10::IValue ToIValue(Napi::Env env, const Napi::Value& v, const c10::TypePtr& type,
                     const std::string& name, c10::optional<int32_t> n);

c10::IValue ToList(Napi::Env env, const Napi::Value& v, const c10::ListTypePtr& lt,
                   const std::string& name, c10::optional<int32_t> n) {
  const c10::TypePtr& elem = lt->getElementType();
  auto kind = elem->kind();
  bool intLike = kind == c10::TypeKind::IntType || kind == c10::TypeKind::SymIntType;
  // `int[2] stride=1`: a single value stands for the whole fixed-size list.
  if (!v.IsArray()) {
    if (n.has_value() && (intLike || kind == c10::TypeKind::FloatType || kind == c10::TypeKind::BoolType)) {
      if (intLike) return c10::IValue(std::vector<int64_t>(*n, ToInt(env, v, name)));
      if (kind == c10::TypeKind::FloatType) return c10::IValue(std::vector<double>(*n, ToDouble(v, name)));
      c10::List<bool> l;
      for (int32_t i = 0; i < *n; i++) l.push_back(ToBool(v, name));
      return c10::IValue(l);
    }
    if (kind == c10::TypeKind::TensorType && IsTensorHandle(env, v)) {
      return c10::IValue(std::vector<at::Tensor>{TensorOf(env, v, name.c_str())});
    }
    throw ArgError{"argument '" + name + "' must be an array"};
  }
  auto arr = v.As<Napi::Array>();
  uint32_t len = arr.Length();
  if (intLike) {
    std::vector<int64_t> out(len);
    for (uint32_t i = 0; i < len; i++) out[i] = ToInt(env, arr.Get(i), name);
    return c10::IValue(out);
  }
  switch (kind) {
    case c10::TypeKind::FloatType: {
      std::vector<double> out(len);
      for (uint32_t i = 0; i < len; i++) out[i] = ToDouble(arr.Get(i), name);
      return c10::IValue(out);
    }
    case c10::TypeKind::BoolType: {
      c10::List<bool> out;
      for (uint32_t i = 0; i < len; i++) out.push_back(ToBool(arr.Get(i), name));
      return c10::IValue(out);
    }
    case c10::TypeKind::TensorType: {
      std::vector<at::Tensor> out;
      out.reserve(len);
      for (uint32_t i = 0; i < len; i++) out.push_back(TensorOf(env, arr.Get(i), name.c_str()));
      return c10::IValue(out);
    }
    case c10::TypeKind::OptionalType: {
      auto inner = elem->expectRef<c10::OptionalType>().getElementType();
      if (inner->kind() == c10::TypeKind::TensorType) {
        c10::List<c10::optional<at::Tensor>> out;
        for (uint32_t i = 0; i < len; i++) {
          Napi::Value e = arr.Get(i);
          if (e.IsNull() || e.IsUndefined()) {
            out.push_back(c10::nullopt);
          } else {
            out.push_back(TensorOf(env, e, name.c_str()));
          }
        }
        return c10::IValue(out);
      }
      break;
    }
    default:
      break;
  }
  c10::impl::GenericList out(elem);
  for (uint32_t i = 0; i < len; i++) out.push_back(ToIValue(env, arr.Get(i), elem, name, c10::nullopt));
  return c10::IValue(out);
}

c10::IValue ToIValue(Napi::Env env, const Napi::Value& v, const c10::TypePtr& type,
                     const std::string& name, c10::optional<int32_t> n) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      return c10::IValue(TensorOf(env, v, name.c_str()));
    case c10::TypeKind::OptionalType: {
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      auto inner = type->expectRef<c10::OptionalType>().getElementType();
      return ToIValue(env, v, inner, name, n);
    }
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
      return c10::IValue(ToInt(env, v, name));
    case c10::TypeKind::FloatType:
      return c10::IValue(ToDouble(v, name));
    case c10::TypeKind::BoolType:
      return c10::IValue(ToBool(v, name));
    case c10::TypeKind::NumberType:
      return c10::IValue(ToScalar(v, name));
    case c10::TypeKind::StringType:
      if (!v.IsString()) throw ArgError{"argument '" + name + "' must be a string"};
      return c10::IValue(v.As<Napi::String>().Utf8Value());
    case c10::TypeKind::ScalarTypeType:
    case c10::TypeKind::LayoutType:
    case c10::TypeKind::MemoryFormatType:
      return c10::IValue(ToInt(env, v, name));
    case c10::TypeKind::DeviceObjType:
      if (!v.IsString()) throw ArgError{"argument '" + name + "' must be a device string like 'cpu'"};
      return c10::IValue(c10::Device(v.As<Napi::String>().Utf8Value()));
    case c10::TypeKind::ListType:
      return ToList(env, v, type->expect<c10::ListType>(), name, n);
    case c10::TypeKind::GeneratorType:
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      throw ArgError{"argument '" + name + "': generators are not supported, use manualSeed"};
    default:
      throw ArgError{"argument '" + name + "' has unsupported type " + type->str()};
  }
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    if (!t.defined()) return env.Null();
    return Wrap(env, t);
  }
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isScalar()) {
    auto s = v.toScalar();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    return Napi::Number::New(env, s.toDouble());
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    auto arr = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) arr.Set(static_cast<uint32_t>(i), FromIValue(env, elems[i]));
    return arr;
  }
  if (v.isTensorList()) {
    auto list = v.toTensorVector();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), Wrap(env, list[i]));
    return arr;
  }
  if (v.isIntList()) {
    auto list = v.toIntVector();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(list[i])));
    return arr;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), FromIValue(env, list[i]));
    return arr;
  }
  if (v.isDevice()) return Napi::String::New(env, v.toDevice().str());
  throw Napi::Error::New(env, std::string("unsupported result type ") + v.tagKind());
}

std::string CleanMessage(const c10::Error& e) { return e.what_without_backtrace(); }

// ---- exported functions --------------------------------------------------

// op(name, overload) -> id. Resolving once and calling by id keeps the hot
// path free of string lookups.
Napi::Value Op(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle.has_value()) {
    throw Napi::Error::New(env, "unknown operator " + name + (overload.empty() ? "" : "." + overload));
  }
  gOps.push_back(*handle);
  return Napi::Number::New(env, static_cast<double>(gOps.size() - 1));
}

Napi::Value Schema(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= gOps.size()) throw Napi::RangeError::New(env, "bad operator id");
  std::ostringstream os;
  os << gOps[id].schema();
  return Napi::String::New(env, os.str());
}

// Runs an operator; `discard` skips converting results (in-place ops whose
// result is the tensor the caller already holds).
Napi::Value CallImpl(const Napi::CallbackInfo& info, bool discard) {
  Napi::Env env = info.Env();
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  if (id >= gOps.size()) throw Napi::RangeError::New(env, "bad operator id");
  const c10::OperatorHandle& op = gOps[id];
  const c10::FunctionSchema& schema = op.schema();
  const auto& params = schema.arguments();
  Napi::Array args = info[1].As<Napi::Array>();
  uint32_t given = args.Length();
  if (given > params.size()) {
    throw Napi::TypeError::New(env, schema.name() + ": expected at most " + std::to_string(params.size()) +
                                        " arguments, got " + std::to_string(given));
  }
  torch::jit::Stack stack;
  stack.reserve(params.size());
  try {
    for (size_t i = 0; i < params.size(); i++) {
      const c10::Argument& p = params[i];
      Napi::Value v = i < given ? args.Get(static_cast<uint32_t>(i)) : env.Undefined();
      if (v.IsUndefined()) {
        if (p.default_value().has_value()) {
          stack.push_back(*p.default_value());
          continue;
        }
        if (p.type()->kind() == c10::TypeKind::OptionalType) {
          stack.emplace_back();
          continue;
        }
        throw ArgError{"missing argument '" + p.name() + "'"};
      }
      stack.push_back(ToIValue(env, v, p.real_type(), p.name(), p.N()));
    }
  } catch (const ArgError& e) {
    throw Napi::TypeError::New(env, schema.name() + (schema.overload_name().empty() ? "" : "." + schema.overload_name()) +
                                        ": " + e.message);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
  try {
    op.callBoxed(&stack);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  if (discard) return env.Undefined();
  if (stack.empty()) return env.Undefined();
  if (stack.size() == 1) return FromIValue(env, stack[0]);
  auto arr = Napi::Array::New(env, stack.size());
  for (size_t i = 0; i < stack.size(); i++) arr.Set(static_cast<uint32_t>(i), FromIValue(env, stack[i]));
  return arr;
}

Napi::Value Call(const Napi::CallbackInfo& info) { return CallImpl(info, false); }
Napi::Value CallVoid(const Napi::CallbackInfo& info) { return CallImpl(info, true); }

// dtype codes are c10::ScalarType values; the TypeScript side holds the table.
at::ScalarType DtypeOfTypedArray(napi_typedarray_type t, bool asBool) {
  switch (t) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int32_array: return at::kInt;
    case napi_bigint64_array: return at::kLong;
    case napi_uint8_array: return asBool ? at::kBool : at::kByte;
    case napi_int8_array: return at::kChar;
    case napi_int16_array: return at::kShort;
    default: throw std::runtime_error("unsupported TypedArray type");
  }
}

std::vector<int64_t> ShapeArg(Napi::Env env, const Napi::Value& v) {
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> shape(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    double d = arr.Get(i).As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d))) {
      throw Napi::RangeError::New(env, "shape entries must be non-negative integers");
    }
    shape[i] = static_cast<int64_t>(d);
  }
  return shape;
}

// fromTypedArray(data, shape, asBool) copies: JS keeps ownership of its buffer.
Napi::Value FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "fromTypedArray: expected a TypedArray");
  auto ta = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> shape = ShapeArg(env, info[1]);
  bool asBool = info.Length() > 2 && info[2].ToBoolean().Value();
  at::ScalarType dtype;
  try {
    dtype = DtypeOfTypedArray(ta.TypedArrayType(), asBool);
  } catch (const std::exception& e) {
    throw Napi::TypeError::New(env, e.what());
  }
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (static_cast<size_t>(numel) != ta.ElementLength()) {
    throw Napi::RangeError::New(env, "fromTypedArray: shape holds " + std::to_string(numel) + " elements but the array has " +
                                         std::to_string(ta.ElementLength()));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  if (numel > 0) {
    auto* src = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(t.data_ptr(), src, ta.ByteLength());
  }
  return Wrap(env, std::move(t));
}

Napi::Value ToTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor t = TensorOf(env, info[0], "toTypedArray");
  try {
    t = t.detach();
    if (!t.device().is_cpu()) t = t.to(at::kCPU);
    t = t.contiguous();
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
  size_t n = static_cast<size_t>(t.numel());
  size_t bytes = n * t.element_size();
  auto buf = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(buf.Data(), t.data_ptr(), bytes);
  switch (t.scalar_type()) {
    case at::kFloat: return Napi::Float32Array::New(env, n, buf, 0);
    case at::kDouble: return Napi::Float64Array::New(env, n, buf, 0);
    case at::kInt: return Napi::Int32Array::New(env, n, buf, 0);
    case at::kLong: return Napi::TypedArrayOf<int64_t>::New(env, n, buf, 0, napi_bigint64_array);
    case at::kByte:
    case at::kBool: return Napi::Uint8Array::New(env, n, buf, 0);
    case at::kChar: return Napi::Int8Array::New(env, n, buf, 0);
    case at::kShort: return Napi::Int16Array::New(env, n, buf, 0);
    default:
      throw Napi::TypeError::New(env, std::string("toTypedArray: no TypedArray for dtype ") + c10::toString(t.scalar_type()));
  }
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "shape");
  auto sizes = t.sizes();
  auto arr = Napi::Array::New(env, sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(sizes[i])));
  return arr;
}

Napi::Value Strides(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "strides");
  auto st = t.strides();
  auto arr = Napi::Array::New(env, st.size());
  for (size_t i = 0; i < st.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(st[i])));
  return arr;
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  const at::Tensor& t = TensorOf(info.Env(), info[0], "dtype");
  return Napi::Number::New(info.Env(), static_cast<int>(t.scalar_type()));
}

Napi::Value DeviceOf(const Napi::CallbackInfo& info) {
  const at::Tensor& t = TensorOf(info.Env(), info[0], "device");
  return Napi::String::New(info.Env(), t.device().str());
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "item");
  try {
    auto s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    return Napi::Number::New(env, s.toDouble());
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
}

Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "isContiguous");
  auto fmt = info.Length() > 1 ? static_cast<at::MemoryFormat>(info[1].As<Napi::Number>().Int32Value())
                               : at::MemoryFormat::Contiguous;
  return Napi::Boolean::New(env, t.is_contiguous(fmt));
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!IsTensorHandle(env, info[0])) throw Napi::TypeError::New(env, "dispose: expected a tensor handle");
  ReleaseBox(env, info[0].As<Napi::External<TensorBox>>().Data());
  return env.Undefined();
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  TensorBox* box = BoxOf(info.Env(), info[0], "isDisposed");
  return Napi::Boolean::New(info.Env(), !box->tensor.defined());
}

Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorOf(info.Env(), info[0], "requiresGrad").requires_grad());
}

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "setRequiresGrad");
  try {
    const_cast<at::Tensor&>(t).set_requires_grad(info[1].ToBoolean().Value());
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
  return env.Undefined();
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& g = TensorOf(env, info[0], "grad").grad();
  if (!g.defined()) return env.Null();
  return Wrap(env, g);
}

Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "setGrad");
  try {
    if (info[1].IsNull() || info[1].IsUndefined()) {
      const_cast<at::Tensor&>(t).mutable_grad().reset();
    } else {
      const_cast<at::Tensor&>(t).mutable_grad() = TensorOf(env, info[1], "setGrad");
    }
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
  return env.Undefined();
}

// setData(t, source): t's data becomes source's, on whatever device and in whatever
// layout source has, keeping t's identity (Python's `param.data = ...`, which
// Module.to uses to move a network between devices). Its gradient moves with it.
Napi::Value SetData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Tensor& t = const_cast<at::Tensor&>(TensorOf(env, info[0], "setData"));
  const at::Tensor& source = TensorOf(env, info[1], "setData");
  try {
    t.set_data(source);
    if (t.grad().defined() && t.grad().device() != source.device()) t.mutable_grad() = t.grad().to(source.device());
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  }
  return env.Undefined();
}

Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), TensorOf(info.Env(), info[0], "isLeaf").is_leaf());
}

// backward(tensor, gradient?, retainGraph?)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = TensorOf(env, info[0], "backward");
  at::Tensor g;
  if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) g = TensorOf(env, info[1], "backward");
  bool retain = info.Length() > 2 && info[2].ToBoolean().Value();
  try {
    torch::autograd::backward({t}, g.defined() ? torch::autograd::variable_list{g} : torch::autograd::variable_list{},
                              retain);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, CleanMessage(e));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  return env.Undefined();
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), prev);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::manual_seed(static_cast<uint64_t>(ToInt(env, info[0], "seed")));
  return env.Undefined();
}

// getRngState() -> uint8 tensor: the CPU generator's state (what torch.get_rng_state returns),
// so that a resumed run draws the same dropout masks as an uninterrupted one.
Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return Wrap(info.Env(), gen.get_state());
}

// setRngState(state): restores a state from getRngState (libtorch checks its size).
Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& state = TensorOf(env, info[0], "setRngState");
  auto gen = at::detail::getDefaultCPUGenerator();
  try {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, "setRngState: " + CleanMessage(e));
  }
  return env.Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1) throw Napi::RangeError::New(info.Env(), "setNumThreads: need at least 1 thread");
  at::set_num_threads(n);
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value LiveHandles(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(gLiveHandles.load()));
}

// The C heap as glibc's malloc sees it: bytes handed out and not yet freed (arenas and
// mmapped chunks), and bytes it holds free for reuse. A leak grows the first; an
// allocator warming up (touching more of the heap it keeps, as libtorch 2.x's threads
// do) grows only the process's RSS and the second. -1 where the C library is not glibc.
Napi::Value HeapStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  out.Set("inUse", Napi::Number::New(env, static_cast<double>(m.uordblks + m.hblkhd)));
  out.Set("free", Napi::Number::New(env, static_cast<double>(m.fordblks)));
#else
  out.Set("inUse", Napi::Number::New(env, -1));
  out.Set("free", Napi::Number::New(env, -1));
#endif
  return out;
}

Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::hasCUDA());
}

// ---- CUDA, without CUDA's headers --------------------------------------------
//
// The addon is compiled the same way against a CPU and a CUDA libtorch: what it
// needs of CUDA it asks libtorch's CUDA hooks (registered when libtorch_cuda is
// loaded), and the CUDA runtime that libtorch_cuda loaded, found by name among the
// process's libraries. So no CUDA toolkit is needed to build it.

// The CUDA runtime (libcudart) already in the process, or nullptr.
void* LoadedCudart() {
  static void* handle = [] {
    std::string found;
    dl_iterate_phdr(
        [](struct dl_phdr_info* info, size_t, void* data) {
          const char* name = info->dlpi_name;
          if (name != nullptr && std::strstr(name, "libcudart") != nullptr) {
            *static_cast<std::string*>(data) = name;
            return 1;
          }
          return 0;
        },
        &found);
    if (found.empty()) return static_cast<void*>(nullptr);
    return dlopen(found.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  }();
  return handle;
}

template <typename F>
F CudartFunction(const char* name) {
  void* lib = LoadedCudart();
  return lib == nullptr ? nullptr : reinterpret_cast<F>(dlsym(lib, name));
}

// cudaGetDeviceProperties' struct grows with CUDA's versions but has always begun
// with the device's name (char[256]); a generous buffer holds any version's.
std::string CudaDeviceName(int index) {
  using GetProps = int (*)(void*, int);
  auto get = CudartFunction<GetProps>("cudaGetDeviceProperties_v2");
  if (get == nullptr) get = CudartFunction<GetProps>("cudaGetDeviceProperties");
  if (get == nullptr) return "";
  std::vector<char> props(16384, 0);
  if (get(props.data(), index) != 0) return "";
  props[255] = 0;
  return std::string(props.data());
}

int64_t CudaCount() {
  if (!at::hasCUDA()) return 0;
  return at::detail::getCUDAHooks().getNumGPUs();
}

// cudaInfo() -> { available, deviceCount, devices: [{ name }], cudnn, cudaRuntime, config }
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  const auto& hooks = at::detail::getCUDAHooks();
  bool available = at::hasCUDA();
  int64_t count = CudaCount();
  out.Set("available", Napi::Boolean::New(env, available && count > 0));
  out.Set("deviceCount", Napi::Number::New(env, static_cast<double>(count)));
  auto devices = Napi::Array::New(env, count);
  for (int64_t i = 0; i < count; i++) {
    auto d = Napi::Object::New(env);
    d.Set("name", Napi::String::New(env, CudaDeviceName(static_cast<int>(i))));
    devices.Set(static_cast<uint32_t>(i), d);
  }
  out.Set("devices", devices);
  long cudnn = -1;
  long cudart = -1;
  std::string config;
  if (available) {
    try {
      if (hooks.hasCuDNN()) cudnn = hooks.versionCuDNN();
      cudart = hooks.versionCUDART();
      config = hooks.showConfig();
    } catch (const c10::Error&) {
      // an older hook without these answers; leave them unknown
    }
  }
  out.Set("cudnn", Napi::Number::New(env, static_cast<double>(cudnn)));
  out.Set("cudaRuntime", Napi::Number::New(env, static_cast<double>(cudart)));
  out.Set("config", Napi::String::New(env, config));
  return out;
}

// cudaMemory(index) -> { free, total } in bytes, or null where it cannot be read.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int index = info[0].As<Napi::Number>().Int32Value();
  if (index < 0 || index >= CudaCount()) return env.Null();
  using GetDevice = int (*)(int*);
  using SetDevice = int (*)(int);
  using MemGetInfo = int (*)(size_t*, size_t*);
  auto getDevice = CudartFunction<GetDevice>("cudaGetDevice");
  auto setDevice = CudartFunction<SetDevice>("cudaSetDevice");
  auto memGetInfo = CudartFunction<MemGetInfo>("cudaMemGetInfo");
  if (getDevice == nullptr || setDevice == nullptr || memGetInfo == nullptr) return env.Null();
  int current = 0;
  if (getDevice(&current) != 0) return env.Null();
  size_t freeBytes = 0, totalBytes = 0;
  bool ok = setDevice(index) == 0 && memGetInfo(&freeBytes, &totalBytes) == 0;
  setDevice(current);
  if (!ok) return env.Null();
  auto out = Napi::Object::New(env);
  out.Set("free", Napi::Number::New(env, static_cast<double>(freeBytes)));
  out.Set("total", Napi::Number::New(env, static_cast<double>(totalBytes)));
  return out;
}

// cudaSynchronize(index): waits for the device's queued work (for timing).
Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int index = info[0].As<Napi::Number>().Int32Value();
  if (index < 0 || index >= CudaCount()) throw Napi::RangeError::New(env, "cudaSynchronize: no CUDA device " + std::to_string(index));
  at::detail::getCUDAHooks().deviceSynchronize(index);
  return env.Undefined();
}

// buildInfo() -> { torchVersion, cudaLinked, config, parallel }: what the addon was
// compiled against and libtorch's own account of its build (BLAS, CUDA, cuDNN) and threads.
Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
#ifdef FASTVISION_CUDA_LINKED
  out.Set("cudaLinked", Napi::Boolean::New(env, true));
#else
  out.Set("cudaLinked", Napi::Boolean::New(env, false));
#endif
  out.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  out.Set("config", Napi::String::New(env, at::show_config()));
  out.Set("parallel", Napi::String::New(env, at::get_parallel_info()));
  out.Set("cpuZeroFillAvailable", Napi::Boolean::New(env, gZeroFillFlag != nullptr));
  return out;
}

// loadedLibraries() -> the paths of the shared libraries in this process (which BLAS,
// which libtorch and CUDA runtime were actually loaded).
Napi::Value LoadedLibraries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](struct dl_phdr_info* i, size_t, void* data) {
        if (i->dlpi_name != nullptr && i->dlpi_name[0] != 0) static_cast<std::vector<std::string>*>(data)->push_back(i->dlpi_name);
        return 0;
      },
      &names);
  auto arr = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
  return arr;
}

// ---- autocast ----------------------------------------------------------------
//
// PyTorch 2.4 made autocast's switches per device type; 1.13 had one pair for CUDA
// and one for the CPU.

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool AutocastEnabled(at::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void SetAutocastEnabled(at::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
at::ScalarType AutocastDtype(at::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void SetAutocastDtype(at::DeviceType t, at::ScalarType d) { at::autocast::set_autocast_dtype(t, d); }
#else
bool AutocastEnabled(at::DeviceType t) { return t == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
void SetAutocastEnabled(at::DeviceType t, bool on) {
  if (t == at::kCUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
}
at::ScalarType AutocastDtype(at::DeviceType t) {
  return t == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void SetAutocastDtype(at::DeviceType t, at::ScalarType d) {
  if (t == at::kCUDA) at::autocast::set_autocast_gpu_dtype(d);
  else at::autocast::set_autocast_cpu_dtype(d);
}
#endif

at::DeviceType AutocastDeviceType(Napi::Env env, const Napi::Value& v) {
  std::string name = v.As<Napi::String>().Utf8Value();
  if (name == "cpu") return at::kCPU;
  if (name == "cuda") return at::kCUDA;
  throw Napi::TypeError::New(env, "autocast: device type must be 'cpu' or 'cuda', got '" + name + "'");
}

// autocastEnter(deviceType, dtypeCode) -> [wasEnabled, previousDtypeCode]
Napi::Value AutocastEnter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType t = AutocastDeviceType(env, info[0]);
  auto dtype = static_cast<at::ScalarType>(info[1].As<Napi::Number>().Int32Value());
  bool was = AutocastEnabled(t);
  at::ScalarType prev = AutocastDtype(t);
  SetAutocastEnabled(t, true);
  SetAutocastDtype(t, dtype);
  at::autocast::increment_nesting();
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Boolean::New(env, was));
  out.Set(1u, Napi::Number::New(env, static_cast<int>(prev)));
  return out;
}

// autocastExit(deviceType, wasEnabled, previousDtypeCode): as Python's autocast.__exit__,
// the cache of cast weights is dropped when the outermost region ends.
Napi::Value AutocastExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::DeviceType t = AutocastDeviceType(env, info[0]);
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocastEnabled(t, info[1].ToBoolean().Value());
  SetAutocastDtype(t, static_cast<at::ScalarType>(info[2].As<Napi::Number>().Int32Value()));
  return env.Undefined();
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), TORCH_VERSION);
}

Napi::Value SameStorage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& a = TensorOf(env, info[0], "sameStorage");
  const at::Tensor& b = TensorOf(env, info[1], "sameStorage");
  return Napi::Boolean::New(env, a.storage().is_alias_of(b.storage()));
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const ArgError& e) {
    throw Napi::TypeError::New(info.Env(), e.message);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), CleanMessage(e));
  }
}

// Training allocates and frees the same large activation buffers every step.
// glibc's defaults hand each of them back to the kernel (munmap, heap trim), so
// every step faults in hundreds of MB of fresh zeroed pages. Keeping freed
// memory in the heap for reuse makes a ResNet step ~20% faster here and cuts
// page faults ~8x. FASTVISION_MALLOC_TUNING=0 keeps glibc's defaults.
void TuneMalloc() {
#if defined(__GLIBC__)
  const char* tuning = std::getenv("FASTVISION_MALLOC_TUNING");
  if (tuning != nullptr && std::string(tuning) == "0") return;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, 1 << 30);
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (std::getenv("MALLOC_TOP_PAD_") == nullptr) mallopt(M_TOP_PAD, 256 << 20);
#endif
}

// libtorch 2's oneDNN convolutions leave the channel padding of their blocked buffers
// (channels rounded up to the vector width: 24 to 32 on AVX-512) as the allocator
// handed it over, and multiply it in: a stale NaN there, from a freed tensor, turned
// whole outputs NaN now and then (Debian's libtorch 2.6 with oneDNN 3.7 on AVX-512;
// PyTorch 2.6 itself does the same; libtorch 1.13 does not). c10's own flag zero-fills
// every CPU allocation, which closes it; JavaScript turns it on (cpuZeroFill) before
// the first convolution whose channels get padded (src/torch/onednn-padding.ts). The
// flag is found in libc10 by name: a plain global in builds without gflags, in
// namespace fLB in builds with them.
void FindZeroFillFlag() {
#if TORCH_VERSION_MAJOR >= 2
  if (!at::hasMKLDNN()) return;
  Dl_info where;
  if (dladdr(reinterpret_cast<void*>(&c10::GetCPUAllocator), &where) == 0 || where.dli_fname == nullptr) return;
  void* lib = dlopen(where.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (lib == nullptr) return;
  for (const char* name : {"FLAGS_caffe2_cpu_allocator_do_zero_fill", "_ZN3fLB39FLAGS_caffe2_cpu_allocator_do_zero_fillE"}) {
    if (auto* flag = static_cast<bool*>(dlsym(lib, name))) {
      gZeroFillFlag = flag;
      break;
    }
  }
  // libc10 stays loaded: the addon links it, so the flag's address outlives this handle.
  dlclose(lib);
#endif
}

// cpuZeroFill(on?) -> whether CPU allocations are zero-filled, after turning it on or
// off when asked (where this libtorch has no such flag, always false).
Napi::Value CpuZeroFill(const Napi::CallbackInfo& info) {
  if (gZeroFillFlag != nullptr && info.Length() > 0 && info[0].IsBoolean()) *gZeroFillFlag = info[0].As<Napi::Boolean>().Value();
  return Napi::Boolean::New(info.Env(), gZeroFillFlag != nullptr && *gZeroFillFlag);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const char* report = std::getenv("FASTVISION_REPORT_MEMORY");
  gReportMemory = !(report != nullptr && std::string(report) == "0");
  TuneMalloc();
  FindZeroFillFlag();
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, Guarded<fn>, name))
  EXPORT("op", Op);
  EXPORT("schema", Schema);
  EXPORT("call", Call);
  EXPORT("callVoid", CallVoid);
  EXPORT("fromTypedArray", FromTypedArray);
  EXPORT("toTypedArray", ToTypedArray);
  EXPORT("shape", Shape);
  EXPORT("strides", Strides);
  EXPORT("dtype", Dtype);
  EXPORT("device", DeviceOf);
  EXPORT("item", Item);
  EXPORT("isContiguous", IsContiguous);
  EXPORT("dispose", Dispose);
  EXPORT("isDisposed", IsDisposed);
  EXPORT("requiresGrad", RequiresGrad);
  EXPORT("setRequiresGrad", SetRequiresGrad);
  EXPORT("grad", Grad);
  EXPORT("setGrad", SetGrad);
  EXPORT("isLeaf", IsLeaf);
  EXPORT("setData", SetData);
  EXPORT("backward", Backward);
  EXPORT("setGradEnabled", SetGradEnabled);
  EXPORT("isGradEnabled", IsGradEnabled);
  EXPORT("manualSeed", ManualSeed);
  EXPORT("getRngState", GetRngState);
  EXPORT("setRngState", SetRngState);
  EXPORT("setNumThreads", SetNumThreads);
  EXPORT("getNumThreads", GetNumThreads);
  EXPORT("liveHandles", LiveHandles);
  EXPORT("heapStats", HeapStats);
  EXPORT("cudaAvailable", CudaAvailable);
  EXPORT("cudaInfo", CudaInfo);
  EXPORT("cudaMemory", CudaMemory);
  EXPORT("cudaSynchronize", CudaSynchronize);
  EXPORT("autocastEnter", AutocastEnter);
  EXPORT("buildInfo", BuildInfo);
  EXPORT("cpuZeroFill", CpuZeroFill);
  EXPORT("loadedLibraries", LoadedLibraries);
  EXPORT("autocastExit", AutocastExit);
  EXPORT("version", Version);
  EXPORT("sameStorage", SameStorage);
#undef EXPORT
  return exports;
}

}  // namespace

NODE_API_MODULE(fastvision, Init)
