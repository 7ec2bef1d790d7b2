// Training checkpoints: everything a run needs to continue with bit-identical steps, written so
// that a crash, kill -9 or a full disk mid-save never costs the previous checkpoint.
//
// A checkpoint is a folder DIR/step-<step> (step zero-padded to 9 digits) holding
//   model.safetensors      every parameter under its name (F32), trainable and frozen
//   optimizer.safetensors  the optimizer's flat m and v buffers (ParamStore layout) as F32 [n]
//   state.json             step, optimizer step count, loader position (seed, epoch, cursor),
//                          RNG state, learning rate, loss scale and the run's config (JSON text)
// Save: everything goes into DIR/.step-<step>.tmp/, each file written atomically (fsynced), the
// folder fsynced, then renamed to step-<step> and DIR fsynced: the rename is the commit point.
// A checkpoint exists exactly when its folder has that name; leftover .tmp folders are partial
// saves, ignored by latest_checkpoint() and removed by the next save. Rotation (keep N) removes
// the oldest complete checkpoints only after the new one is committed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmkit/autograd/param_store.h"
#include "llmkit/train/data.h"

namespace llmkit::train {

struct CheckpointState {
  int64_t step = 0;             // optimizer steps taken by the run
  SamplerState data;            // where the loader continues
  uint64_t rng = 0;             // the trainer's RNG state
  double lr = 0.0;              // learning rate of the last step (the schedule is a function of step)
  double loss_scale = 1.0;      // FP16 dynamic loss scale
  int64_t scale_good_steps = 0;  // steps since the scale last changed (it doubles after scale_window)
  std::string config_json = "{}";  // the run's resolved config
};

// Saves params (values, optimizer m/v and step count) and st as DIR/step-<st.step>; keeps the
// newest `keep` checkpoints (0 = all). Returns the checkpoint's path. Throws Error(kIo) naming the
// file on any write failure (disk full included), leaving every committed checkpoint as it was.
std::string save_checkpoint(const std::string& dir, ag::ParamStore& params, const CheckpointState& st, int keep = 0);

// Committed checkpoints in DIR, oldest first (empty when none; DIR may not exist).
std::vector<std::string> list_checkpoints(const std::string& dir);
// The newest committed checkpoint, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);

// Restores params (values, m, v, step count) from a checkpoint; the store must have been declared
// with the same parameters (names, shapes, trainable flags) and allocated. Throws
// Error(kInvalidFile) naming a missing or mis-shaped tensor.
CheckpointState load_checkpoint(const std::string& path, ag::ParamStore& params);

}  // namespace llmkit::train
