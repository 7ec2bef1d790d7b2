// Placeholder so the layer library is never empty; delete when the layer has real sources.
namespace llmkit::models_layer {}
