// The reference kernel table: every KernelTable entry filled with its scalar oracle from ref/ops.h.
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/kernels/ref/ops.h"

namespace llmkit {

const KernelTable& ref_table() {
  static const KernelTable t = {
      .name = "ref",
      .matmul = ref::matmul,
      .matmul_bf16 = ref::matmul_bf16,
      .gemm = ref::gemm,
      .add = ref::add,
      .mul = ref::mul,
      .scale = ref::scale,
      .silu = ref::silu,
      .gelu = ref::gelu,
      .gelu_backward = ref::gelu_backward,
      .swiglu = ref::swiglu,
      .swiglu_backward = ref::swiglu_backward,
      .adamw = ref::adamw,
      .logsumexp_rows = ref::logsumexp_rows,
      .xent_grad_rows = ref::xent_grad_rows,
      .rmsnorm = ref::rmsnorm,
      .rmsnorm_backward = ref::rmsnorm_backward,
      .layernorm = ref::layernorm,
      .layernorm_backward = ref::layernorm_backward,
      .rope_apply = ref::rope_apply,
      .softmax = ref::softmax,
      .attention = ref::attention,
      .attention_backward = ref::attention_backward,
      .paged_attention = ref::paged_attention,
      .paged_kv_write = ref::paged_kv_write,
  };
  return t;
}

}  // namespace llmkit
