// fastvision's bridge to c10d, the layer under torch.distributed: TCPStore
// (rendezvous and small keys), PrefixStore, and ProcessGroupGloo's collectives
// (all-reduce, broadcast, all-gather, barrier). Collectives run on a worker
// thread and return promises, so the event loop stays free while they wait.
// A separate addon from addon.cc so that a machine without Gloo's headers still
// builds everything else; it reads the same type-tagged tensor handles.
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/version.h>

#include "tensor_box.h"

namespace {

const napi_type_tag kStoreTag = {0x6661737476697369ULL, 0x6f6e73746f726521ULL};
const napi_type_tag kGroupTag = {0x6661737476697369ULL, 0x6f6e67726f757021ULL};
const napi_type_tag kReducerTag = {0x6661737476697369ULL, 0x6f6e726564756321ULL};

struct StoreBox {
  c10::intrusive_ptr<c10d::Store> store;
};

struct ReducerBox {
  std::unique_ptr<c10d::Reducer> reducer;
};

// The group as torch.distributed holds it: a ProcessGroup. Since PyTorch 2.0 the
// Gloo implementation is a c10d Backend that a ProcessGroup dispatches to (one per
// device type); in 1.13 ProcessGroupGloo was the ProcessGroup itself.
struct GroupBox {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::chrono::milliseconds timeout;
};

template <typename T>
Napi::Value Boxed(Napi::Env env, T* box, const napi_type_tag& tag) {
  auto ext = Napi::External<T>::New(env, box, [](Napi::Env, T* b) { delete b; });
  napi_type_tag_object(env, ext, &tag);
  return ext;
}

template <typename T>
T* Unbox(Napi::Env env, const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(env, v, &tag, &ok);
  if (!ok) throw Napi::TypeError::New(env, std::string("expected ") + what);
  return v.As<Napi::External<T>>().Data();
}

c10::intrusive_ptr<c10d::Store>& StoreOf(Napi::Env env, const Napi::Value& v) {
  auto* b = Unbox<StoreBox>(env, v, kStoreTag, "a store");
  if (!b->store) throw Napi::Error::New(env, "the store was closed");
  return b->store;
}

GroupBox* GroupOf(Napi::Env env, const Napi::Value& v) {
  auto* b = Unbox<GroupBox>(env, v, kGroupTag, "a process group");
  if (!b->pg) throw Napi::Error::New(env, "the process group was destroyed");
  return b;
}

at::Tensor TensorOf(Napi::Env env, const Napi::Value& v) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(env, v, &kTensorTag, &ok);
  if (!ok) throw Napi::TypeError::New(env, "expected a tensor handle");
  auto* box = v.As<Napi::External<TensorBox>>().Data();
  if (!box->tensor.defined()) throw Napi::Error::New(env, "tensor was disposed");
  return box->tensor;
}

std::vector<at::Tensor> TensorsOf(Napi::Env env, const Napi::Value& v) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, "expected an array of tensor handles");
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(TensorOf(env, arr.Get(i)));
  return out;
}

// Errors from C++ become JavaScript errors with c10d's message.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// createStore(host, port, isServer, worldSize, timeoutMs, waitWorkers)
Napi::Value CreateStore(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  o.isServer = info[2].As<Napi::Boolean>().Value();
  o.numWorkers = static_cast<std::size_t>(info[3].As<Napi::Number>().Uint32Value());
  o.timeout = std::chrono::milliseconds(info[4].As<Napi::Number>().Int64Value());
  o.waitWorkers = info[5].As<Napi::Boolean>().Value();
  auto host = info[0].As<Napi::String>().Utf8Value();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  // PyTorch 2.4+ serves the store with libuv by default; builds without it (Debian's)
  // refuse that, and the classic server speaks the same protocol to every client.
  try {
    return Boxed(env, new StoreBox{c10::make_intrusive<c10d::TCPStore>(host, o)}, kStoreTag);
  } catch (const std::exception& e) {
    if (!o.useLibUV || std::string(e.what()).find("libuv") == std::string::npos) throw;
    o.useLibUV = false;
  }
#endif
  auto store = c10::make_intrusive<c10d::TCPStore>(host, o);
  return Boxed(env, new StoreBox{store}, kStoreTag);
}

Napi::Value PrefixStore(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto inner = StoreOf(env, info[0]);
  auto store = c10::make_intrusive<c10d::PrefixStore>(info[1].As<Napi::String>().Utf8Value(), inner);
  return Boxed(env, new StoreBox{store}, kStoreTag);
}

Napi::Value StoreSet(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto buf = info[2].As<Napi::Buffer<uint8_t>>();
  StoreOf(env, info[0])->set(info[1].As<Napi::String>().Utf8Value(), std::vector<uint8_t>(buf.Data(), buf.Data() + buf.Length()));
  return env.Undefined();
}

Napi::Value StoreGet(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto v = StoreOf(env, info[0])->get(info[1].As<Napi::String>().Utf8Value());
  return Napi::Buffer<uint8_t>::Copy(env, v.data(), v.size());
}

Napi::Value StoreAdd(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return Napi::Number::New(env, static_cast<double>(StoreOf(env, info[0])->add(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Number>().Int64Value())));
}

Napi::Value StoreCheck(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return Napi::Boolean::New(env, StoreOf(env, info[0])->check({info[1].As<Napi::String>().Utf8Value()}));
}

Napi::Value StoreSetTimeout(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  StoreOf(env, info[0])->setTimeout(std::chrono::milliseconds(info[1].As<Napi::Number>().Int64Value()));
  return env.Undefined();
}

Napi::Value CloseStore(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Unbox<StoreBox>(env, info[0], kStoreTag, "a store")->store.reset();
  return env.Undefined();
}

// newGloo(store, rank, size, timeoutMs, ifname, hostname)
Napi::Value NewGloo(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto store = StoreOf(env, info[0]);
  int rank = info[1].As<Napi::Number>().Int32Value();
  int size = info[2].As<Napi::Number>().Int32Value();
  auto timeout = std::chrono::milliseconds(info[3].As<Napi::Number>().Int64Value());
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (info[4].IsString()) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(info[4].As<Napi::String>().Utf8Value()));
  } else if (info[5].IsString()) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(info[5].As<Napi::String>().Utf8Value()));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  options->threads = 2;
  auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
#if TORCH_VERSION_MAJOR >= 2
  // As torch.distributed's new_group does for backend="gloo": the ProcessGroup shares the
  // store and routes CPU tensors to the Gloo backend, which is also its default.
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
#else
  c10::intrusive_ptr<c10d::ProcessGroup> pg = gloo;
#endif
  return Boxed(env, new GroupBox{pg, timeout}, kGroupTag);
}

// ncclAvailable() -> whether this build has ProcessGroupNCCL (a CUDA libtorch with
// NCCL's headers at build time).
Napi::Value NcclAvailable(const Napi::CallbackInfo& info) {
#ifdef USE_C10D_NCCL
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

// newNccl(store, rank, size, timeoutMs): as torch.distributed's backend="nccl" on 2.x;
// each rank has already made its own GPU the current device's choice by the tensors it passes.
Napi::Value NewNccl(const Napi::CallbackInfo& info) {
  auto env = info.Env();
#if defined(USE_C10D_NCCL) && TORCH_VERSION_MAJOR >= 2
  auto store = StoreOf(env, info[0]);
  int rank = info[1].As<Napi::Number>().Int32Value();
  int size = info[2].As<Napi::Number>().Int32Value();
  auto timeout = std::chrono::milliseconds(info[3].As<Napi::Number>().Int64Value());
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
  pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
  return Boxed(env, new GroupBox{pg, timeout}, kGroupTag);
#else
  throw Napi::Error::New(env, "this build of fastvision has no NCCL: it was built against a libtorch without CUDA, or without nccl.h and cuda_runtime_api.h at build time");
#endif
}

// What torch.distributed does for a Gloo group after its start-up barrier: rank 0
// draws a sequence number and sets it in the store, the others read it.
Napi::Value SetSequenceNumber(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  GroupOf(env, info[0])->pg->setSequenceNumberForGroup();
  return env.Undefined();
}

Napi::Value DestroyGroup(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Unbox<GroupBox>(env, info[0], kGroupTag, "a process group")->pg.reset();
  return env.Undefined();
}

// A collective on a worker thread: `start` issues it (on the main thread, where the
// tensors were read); Execute waits for it within the group's timeout.
class CollectiveWorker : public Napi::AsyncWorker {
 public:
  CollectiveWorker(Napi::Env env, c10::intrusive_ptr<c10d::Work> work, std::chrono::milliseconds timeout, std::vector<at::Tensor> keep)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), timeout_(timeout), keep_(std::move(keep)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_->wait(timeout_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  c10::intrusive_ptr<c10d::Work> work_;
  std::chrono::milliseconds timeout_;
  std::vector<at::Tensor> keep_;
};

Napi::Value Launch(Napi::Env env, GroupBox* g, c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> keep) {
  auto* w = new CollectiveWorker(env, std::move(work), g->timeout, std::move(keep));
  auto p = w->Promise();
  w->Queue();
  return p;
}

c10d::ReduceOp ReduceOpOf(const std::string& name) {
  if (name == "sum") return c10d::ReduceOp::SUM;
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  if (name == "product") return c10d::ReduceOp::PRODUCT;
  throw std::invalid_argument("unknown reduce op '" + name + "' (sum, max, min, product)");
}

// allreduce(group, tensors, op) -> Promise: in place.
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* g = GroupOf(env, info[0]);
  auto tensors = TensorsOf(env, info[1]);
  c10d::AllreduceOptions o;
  o.reduceOp = ReduceOpOf(info[2].As<Napi::String>().Utf8Value());
  o.timeout = g->timeout;
  auto work = g->pg->allreduce(tensors, o);
  return Launch(env, g, work, tensors);
}

// broadcast(group, tensors, root) -> Promise: in place.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* g = GroupOf(env, info[0]);
  auto tensors = TensorsOf(env, info[1]);
  c10d::BroadcastOptions o;
  o.rootRank = info[2].As<Napi::Number>().Int32Value();
  o.rootTensor = 0;
  o.timeout = g->timeout;
  auto work = g->pg->broadcast(tensors, o);
  return Launch(env, g, work, tensors);
}

// allgather(group, outputs, input) -> Promise: outputs[r] receives rank r's input.
Napi::Value Allgather(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* g = GroupOf(env, info[0]);
  auto outputs = TensorsOf(env, info[1]);
  std::vector<at::Tensor> input{TensorOf(env, info[2])};
  std::vector<std::vector<at::Tensor>> outs{outputs};
  c10d::AllgatherOptions o;
  o.timeout = g->timeout;
  auto work = g->pg->allgather(outs, input, o);
  std::vector<at::Tensor> keep(outputs);
  keep.push_back(input[0]);
  return Launch(env, g, work, keep);
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* g = GroupOf(env, info[0]);
  c10d::BarrierOptions o;
  o.timeout = g->timeout;
  return Launch(env, g, g->pg->barrier(o), {});
}

// newReducer(group, params, bucketCapBytes): c10d's Reducer, the engine of PyTorch's
// DistributedDataParallel. It hooks each parameter's gradient accumulator, so that a
// bucket's all-reduce starts as soon as backward has produced all its gradients, and
// at backward's end waits for them and writes the averages back into .grad. Buckets
// as DDP makes them: the first 1 MiB, then bucketCapBytes each, in reverse order.
Napi::Value NewReducer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto* g = GroupOf(env, info[0]);
  auto params = TensorsOf(env, info[1]);
  auto cap = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  std::vector<bool> sparse(params.size(), false);
  auto assigned = c10d::compute_bucket_assignment_by_size(params, {static_cast<size_t>(c10d::kDefaultFirstBucketBytes), cap}, sparse);
  auto indices = std::get<0>(assigned);
  auto limits = std::get<1>(assigned);
  std::reverse(indices.begin(), indices.end());
  std::reverse(limits.begin(), limits.end());
  auto* box = new ReducerBox{std::make_unique<c10d::Reducer>(params, indices, limits, g->pg, sparse, static_cast<int64_t>(cap), false, false, std::unordered_map<size_t, std::string>{}, c10d::kDefaultFirstBucketBytes)};
  return Boxed(env, box, kReducerTag);
}

c10d::Reducer& ReducerOf(Napi::Env env, const Napi::Value& v) {
  auto* b = Unbox<ReducerBox>(env, v, kReducerTag, "a reducer");
  if (!b->reducer) throw Napi::Error::New(env, "the reducer was destroyed");
  return *b->reducer;
}

Napi::Value ReducerForward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  ReducerOf(env, info[0]).prepare_for_forward();
  return env.Undefined();
}

Napi::Value ReducerBackward(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  ReducerOf(env, info[0]).prepare_for_backward({});
  return env.Undefined();
}

Napi::Value DestroyReducer(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  Unbox<ReducerBox>(env, info[0], kReducerTag, "a reducer")->reducer.reset();
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, Guarded<fn>, name))
  EXPORT("createStore", CreateStore);
  EXPORT("prefixStore", PrefixStore);
  EXPORT("storeSet", StoreSet);
  EXPORT("storeGet", StoreGet);
  EXPORT("storeAdd", StoreAdd);
  EXPORT("storeCheck", StoreCheck);
  EXPORT("storeSetTimeout", StoreSetTimeout);
  EXPORT("closeStore", CloseStore);
  EXPORT("newGloo", NewGloo);
  EXPORT("newNccl", NewNccl);
  EXPORT("ncclAvailable", NcclAvailable);
  EXPORT("destroyGroup", DestroyGroup);
  EXPORT("setSequenceNumber", SetSequenceNumber);
  EXPORT("allreduce", Allreduce);
  EXPORT("broadcast", Broadcast);
  EXPORT("allgather", Allgather);
  EXPORT("barrier", Barrier);
  EXPORT("newReducer", NewReducer);
  EXPORT("reducerForward", ReducerForward);
  EXPORT("reducerBackward", ReducerBackward);
  EXPORT("destroyReducer", DestroyReducer);
#undef EXPORT
  return exports;
}

}  // namespace

NODE_API_MODULE(fastvision_dist, Init)
