#include "model_launch_impl.cuh"
SNN_DEFINE_MODEL_LAUNCHERS(f64, double)
