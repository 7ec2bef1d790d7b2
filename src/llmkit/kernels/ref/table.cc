// The reference kernel table (placeholder until the reference ops land).
#include "llmkit/kernels/kernel_table.h"

namespace llmkit {

const KernelTable& ref_table() {
  static const KernelTable t = {.name = "ref"};
  return t;
}

}  // namespace llmkit
