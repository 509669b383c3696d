// Op schemas (one forward and one backward op shared by the three neuron
// families, switched by `model`/`reset`) and the Python module stub. Each
// backend registers its kernels in its own file (cpu/, cuda/).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing snn_cuda._C only needs to load this shared object so that the
// TORCH_LIBRARY registrations below run; the ops are reached as
// torch.ops.snn_cuda.*.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(snn_cuda, m) {
  // T = -1: x is [T, ...]; T >= 1: x is [...], the same input at every step.
  // batch_first (every neuron and model op): the sequences, x among them,
  // are [B, T, ...] (torch.nn.RNN's batch_first) and read and written in
  // place; per-neuron tensors stay [B, ...] and checkpoints [ceil(T/8), B, ...].
  // surrogate/surrogate_param/detach_reset only matter to the backward; the
  // forward takes them so that autograd can hand them on.
  // save_mode: 0 nothing for backward, 1 the charged potential of every step
  // ([T, ...]), 2 the membrane before every 8th step ([ceil(T/8), ...]; the
  // backward re-reads x and rebuilds the rest). A Leaky with store_v_seq
  // uses 1 and returns that membrane sequence as `saved` (v_seq stays empty).
  // Returns (spikes [T, ...] in x's dtype, or uint8 0/1 when spikes_uint8,
  // saved, v_seq (empty unless store_v_seq), v_last), the last three in the
  // state dtype.
  // decay_param / threshold_param: tensor-valued (learnable or per-neuron)
  // parameters in the state dtype, one element or the shape of the trailing
  // dims of a step; they override the scalars. decay_param is k = sigmoid(w)
  // for ParametricLIF (model 3, required) and beta for Leaky (model 2).
  m.def(
      "neuron_forward(Tensor x, Tensor? v0, Tensor? decay_param, Tensor? threshold_param, int T, int model, "
      "int reset, int surrogate, float surrogate_param, float tau, float v_threshold, float v_reset, "
      "float v_floor, float beta, float v_init, bool decay_input, bool has_floor, bool detach_reset, "
      "int save_mode, bool store_v_seq, bool spikes_uint8=False, bool batch_first=False) -> (Tensor, Tensor, Tensor, "
      "Tensor)");
  // Returns (grad_x in x_dtype: [T, ...], or [...] summed over T when T >= 0;
  // grad_v0 in the state dtype; then, when grad_decay / grad_threshold, the
  // per-neuron sums over time of the parameter gradients ([...], state dtype;
  // empty otherwise), which the caller reduces to the parameter's shape).
  // readout_grad [T, ..., K] / readout_weight [K, F] (CPU, fp32/fp64; with
  // grad_spikes None): the neurons feed a Linear layer (NeuronLinear) and
  // grad_spikes = readout_grad @ readout_weight is computed in the kernel.
  m.def(
      "neuron_backward(Tensor? grad_spikes, Tensor? grad_v_seq, Tensor? grad_v_last, Tensor saved, Tensor? x, "
      "Tensor? v0, Tensor? decay_param, Tensor? threshold_param, int T, int save_mode, int model, int reset, "
      "int surrogate, float surrogate_param, float tau, float v_threshold, float v_reset, float v_floor, "
      "float beta, float v_init, bool decay_input, bool has_floor, bool detach_reset, bool grad_decay, "
      "bool grad_threshold, ScalarType x_dtype, Tensor? readout_grad=None, Tensor? readout_weight=None, "
      "bool batch_first=False) -> (Tensor, Tensor, Tensor, Tensor)");
  // The declared multi-state models (kernels/model_list.h): model and variant
  // index that list. x: [T, ...] (T = -1) or [...] fed at each of T steps;
  // params: [kParams, P] in the state dtype (neuron n reads column n % P);
  // state0: [kStates, ...] or None (the model's initial state). Returns
  // (spikes [T, ...] in x's dtype, state_seq [kStates, T, ...] (empty unless
  // return_states), state_last [kStates, ...], ckpt: the states before every
  // 8th step when save, for the backward, which replays the steps from them).
  // surrogate/surrogate_param/detach_reset are for the backward; the forward
  // takes them so that autograd can hand them on. spikes_uint8: the spikes
  // are uint8 values (0/1, or a counting model's counts) for spike_linear.
  m.def(
      "model_forward(Tensor x, Tensor params, Tensor? state0, int T, int model, int variant, int surrogate, "
      "float surrogate_param, bool detach_reset, bool return_states, bool save, bool batch_first=False, "
      "bool spikes_uint8=False) -> (Tensor, Tensor, Tensor, Tensor)");
  // Returns (grad_x: x's shape and dtype, grad_state0 [kStates, ...], and when
  // grad_params the per-neuron sums over time of the parameter gradients,
  // [kParams, N], which the caller reduces to each parameter's shape).
  // state_seq: the forward's state sequence when it returned one; the CPU
  // kernels then read the states before each step from it instead of
  // replaying the checkpoints (the same bits, fewer passes), so ckpt may then
  // be empty there (the layers save none); the CUDA kernels replay anyway
  // (flops are cheaper than bytes there) and need ckpt.
  // readout_grad / readout_weight: as neuron_backward's (CPU, fp32/fp64).
  m.def(
      "model_backward(Tensor? grad_spikes, Tensor? grad_state_seq, Tensor? grad_state_last, Tensor x, Tensor params, "
      "Tensor? state0, Tensor ckpt, int T, int model, int variant, int surrogate, float surrogate_param, "
      "bool detach_reset, bool grad_params, bool batch_first=False, Tensor? state_seq=None, "
      "Tensor? readout_grad=None, Tensor? readout_weight=None) -> (Tensor, Tensor, Tensor)");
  // The host side of model_forward / model_backward (model_host.h: checks,
  // outputs, launch struct) without the kernel, for tensors on any device: the
  // CuPy path (snn_cuda/cupy_backend.py) launches the NVRTC-compiled kernels
  // with what these return. The same arguments as the model op; returns its
  // outputs, then the tensors the launch struct points into (keep them alive
  // until the kernel has run), the struct (snn::MFwdParams / MBwdParams) as a
  // CPU uint8 tensor of its sizeof bytes, and the kernel's work items N.
  m.def(
      "model_prepare_forward(Tensor x, Tensor params, Tensor? state0, int T, int model, int variant, int surrogate, "
      "float surrogate_param, bool detach_reset, bool return_states, bool save, bool batch_first=False, "
      "bool spikes_uint8=False) -> (Tensor, Tensor, Tensor, Tensor, Tensor[], Tensor, int)");
  m.def(
      "model_prepare_backward(Tensor? grad_spikes, Tensor? grad_state_seq, Tensor? grad_state_last, Tensor x, "
      "Tensor params, Tensor? state0, Tensor ckpt, int T, int model, int variant, int surrogate, "
      "float surrogate_param, bool detach_reset, bool grad_params, bool batch_first=False, Tensor? state_seq=None, "
      "Tensor? readout_grad=None, Tensor? readout_weight=None) -> (Tensor, Tensor, Tensor, Tensor[], Tensor, int)");
  // The same for the one-state ops (host.h), with the same arguments as the
  // op each prepares: their outputs, the tensors to keep alive, the launch
  // struct (snn::FwdParams / BwdParams / PoissonParams / NarrowParams /
  // WidenParams) as bytes, the kernel's work items and its template instance
  // ([dtype, combo, surrogate] for the neuron backward, [dtype, combo] for the
  // forward, [dtype] for the others; see csrc/prepare.cpp).
  m.def(
      "neuron_prepare_forward(Tensor x, Tensor? v0, Tensor? decay_param, Tensor? threshold_param, int T, int model, "
      "int reset, int surrogate, float surrogate_param, float tau, float v_threshold, float v_reset, "
      "float v_floor, float beta, float v_init, bool decay_input, bool has_floor, bool detach_reset, "
      "int save_mode, bool store_v_seq, bool spikes_uint8=False, bool batch_first=False) -> (Tensor, Tensor, Tensor, "
      "Tensor, Tensor[], Tensor, int, int[])");
  m.def(
      "neuron_prepare_backward(Tensor? grad_spikes, Tensor? grad_v_seq, Tensor? grad_v_last, Tensor saved, "
      "Tensor? x, Tensor? v0, Tensor? decay_param, Tensor? threshold_param, int T, int save_mode, int model, "
      "int reset, int surrogate, float surrogate_param, float tau, float v_threshold, float v_reset, "
      "float v_floor, float beta, float v_init, bool decay_input, bool has_floor, bool detach_reset, "
      "bool grad_decay, bool grad_threshold, ScalarType x_dtype, Tensor? readout_grad=None, "
      "Tensor? readout_weight=None, bool batch_first=False) -> (Tensor, Tensor, Tensor, Tensor, Tensor[], Tensor, int, "
      "int[])");
  m.def("poisson_prepare(Tensor x, int T, Tensor seed) -> (Tensor, Tensor[], Tensor, int, int[])");
  m.def("narrow_prepare(Tensor x) -> (Tensor, Tensor[], Tensor, int, int[])");
  m.def("widen_prepare(Tensor x, ScalarType dtype) -> (Tensor, Tensor[], Tensor, int, int[])");
  // Rate coding: x [...] of probabilities -> [T, ...] spikes in x's dtype,
  // element (t, n) firing when Philox(key = seed)'s uniform for t*N+n is < x[n].
  // seed: one-element int64 tensor on x's device, read by the kernel when it
  // runs (so a key that torch's generator draws on the device before the call
  // makes the op safe under CUDA-graph replay and torch.compile: no Python int
  // ever holds it), or on the CPU (read when the op is called).
  m.def("poisson_encode(Tensor x, int T, Tensor seed) -> Tensor");
  // Spikes as bytes: (x != 0) as uint8, the shape of x. Whether x holds 0/1
  // spikes is the caller's knowledge; the op never looks (on a GPU that
  // would cost a host synchronisation), so it always returns the full shape.
  m.def("binary_to_uint8(Tensor x) -> Tensor");
  // 0/1 bytes back to `dtype` (the inverse of binary_to_uint8).
  m.def("uint8_to(Tensor x, ScalarType dtype) -> Tensor");
  // A Linear layer whose input is spikes stored one byte per element (a
  // nonzero byte is a spike): spikes [..., N] uint8, weight [K, N], bias [K]
  // or None -> [..., K] in weight's dtype. Each product spike * weight is
  // exact, so only the summation order is a choice (see cpu/spike_linear_cpu.cpp).
  // counts: the bytes are integer counts 0..255 (I-LIF), multiplied as
  // values; a count times a weight is one rounding, so the summation order
  // and that rounding are the choices.
  m.def("spike_linear(Tensor spikes, Tensor weight, Tensor? bias, bool counts=False) -> Tensor");
  // Its weight gradient: grad_out [..., K], spikes [..., N] uint8 -> [K, N]
  // in grad_out's dtype (the sum over rows of grad_out[r, k] where spike[r, n];
  // with counts, of grad_out[r, k] * count[r, n]).
  m.def("spike_linear_weight_grad(Tensor grad_out, Tensor spikes, bool counts=False) -> Tensor");
  // Integer counts in [0, max_count] (max_count <= 255) of a floating x as
  // uint8, the shape of x; any other value is an error (on CUDA a device-side
  // assertion, never a host read).
  m.def("counts_to_uint8(Tensor x, int max_count) -> Tensor");
}
