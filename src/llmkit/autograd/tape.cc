// Placeholder: the autograd tape lands with the autograd work.
namespace llmkit::ag {}
