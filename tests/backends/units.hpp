// Functions defined once in a host-compiled unit (unit_host.cpp) and once in an nvcc-compiled unit
// (unit_cuda.cu) from the same mixtape headers. If any header body that differs with __CUDACC__
// escaped the backend namespace, the linker would keep one copy for both units and one of these
// would report the other unit's backend, depending on link order.
#pragma once

#include <string>

namespace units {
std::string host_unit_backend();
std::string cuda_unit_backend();
/// Fills a host tensor through kernels::fill and returns the sum of its elements.
double host_unit_fill_host(float value);
double cuda_unit_fill_host(float value);
/// GPU only: fill a device tensor from each unit. The host unit must refuse with BackendError.
std::string host_unit_fill_device(float value);  // returns the exception message
double cuda_unit_fill_device(float value);
}  // namespace units
