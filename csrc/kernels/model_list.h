// The declared neuron models: the one list from which every dispatch table is
// generated (the CPU row tables, the CUDA instantiations, the Python model
// table snn_cuda/_model_list.py via tools/gen_model_list.py, checked in CI).
// Adding a model: write its declaration in models/<name>.h (states, parameters,
// variants, forward and backward step), include it in models.h, and add one
// line here. Nothing else in C++ names a model.
//
//   X(id, Struct, "python name", states, "state names", params, "parameter names",
//     variants, "variant names")
//
// Parameters reach the kernels as one [params, P] tensor in the state dtype
// (P = 1, or one value per neuron of a sample: neuron n reads column n % P);
// variants are compile-time switches of the math (the reset mechanism).
#pragma once

#define SNN_MODEL_LIST(X)                                                                      \
  X(0, Synaptic, "synaptic", 2, "syn mem", 3, "alpha beta threshold", 3, "subtract zero none") \
  X(1, CubaLif, "cuba_lif", 2, "c v", 4, "c_decay v_decay v_threshold v_reset", 2, "hard soft")
