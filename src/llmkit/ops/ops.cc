// Placeholder: device-agnostic ops land with the ops work.
namespace llmkit::ops {}
