// Training checkpoints: a restored run continues with bit-identical AdamW steps; --keep rotation;
// and the previous checkpoint survives a save that is killed with SIGKILL at a random moment or
// that runs out of disk (a real write failure: RLIMIT_FSIZE in a child process).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "llmkit/autograd/param_store.h"
#include "llmkit/error.h"
#include "llmkit/train/checkpoint.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;
using ag::ParamStore;
using train::CheckpointState;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("llmkit_test_ckpt_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small model's worth of parameters (one frozen); `big` makes the save take tens of ms.
void declare(ParamStore& ps, bool big = false) {
  ps.add("tok_embd", {big ? 4096 : 64, 32});
  ps.add("blk.0.attn_norm", {32}, true, false);
  ps.add("blk.0.ffn_up", {big ? 2048 : 48, 32});
  ps.add("frozen_base", {16, 32}, /*trainable=*/false);
  ps.allocate();
}

void fill(ParamStore& ps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (const auto& e : ps.entries()) {
    Tensor t = e.var.value();
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  }
}

void fake_grads(ParamStore& ps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < ps.grads().numel(); ++i) ps.grads().data<float>()[i] = nd(rng) * 0.1f;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data<float>(), b.data<float>(), a.nbytes()) == 0;
}

TEST(Checkpoint, RestoredRunContinuesBitForBit) {
  const fs::path dir = temp_dir("roundtrip");
  ParamStore a;
  declare(a);
  fill(a, 1);
  ag::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  for (int s = 0; s < 3; ++s) {
    fake_grads(a, 10 + s);
    a.step_adamw(cfg);
  }
  CheckpointState st;
  st.step = 3;
  st.data = {7, 1, 42};
  st.rng = 0xdeadbeefcafe;
  st.lr = 1e-2;
  st.loss_scale = 1024;
  st.config_json = R"({"model": "tiny", "batch": 4})";
  const std::string path = train::save_checkpoint(dir.string(), a, st);
  EXPECT_EQ(train::latest_checkpoint(dir.string()), path);

  ParamStore b;
  declare(b);
  fill(b, 99);  // different values: all must come from the checkpoint
  CheckpointState got = train::load_checkpoint(path, b);
  EXPECT_EQ(got.step, 3);
  EXPECT_EQ(got.data.seed, 7u);
  EXPECT_EQ(got.data.epoch, 1);
  EXPECT_EQ(got.data.cursor, 42);
  EXPECT_EQ(got.rng, 0xdeadbeefcafeull);
  EXPECT_EQ(got.loss_scale, 1024);
  EXPECT_NE(got.config_json.find("\"batch\":4"), std::string::npos) << got.config_json;
  EXPECT_EQ(b.step_count(), 3);
  EXPECT_TRUE(same_bits(a.params(), b.params()));
  EXPECT_TRUE(same_bits(a.m(), b.m()));
  EXPECT_TRUE(same_bits(a.v(), b.v()));
  // Two more steps on each: identical bits (bias correction included).
  for (int s = 3; s < 5; ++s) {
    fake_grads(a, 10 + s);
    fake_grads(b, 10 + s);
    a.step_adamw(cfg);
    b.step_adamw(cfg);
  }
  EXPECT_TRUE(same_bits(a.params(), b.params()));

  // Saving the same step twice is refused; another model's store is refused by name.
  EXPECT_THROW(train::save_checkpoint(dir.string(), a, st), Error);
  ParamStore other;
  other.add("something_else", {4});
  other.allocate();
  try {
    train::load_checkpoint(path, other);
    ADD_FAILURE() << "loaded into a store of other parameters";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("something_else"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Checkpoint, KeepRotatesOutTheOldest) {
  const fs::path dir = temp_dir("keep");
  ParamStore a;
  declare(a);
  fill(a, 2);
  CheckpointState st;
  for (int64_t step : {100, 200, 300, 400}) {
    st.step = step;
    train::save_checkpoint(dir.string(), a, st, /*keep=*/2);
  }
  const auto all = train::list_checkpoints(dir.string());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fs::path(all[0]).filename(), "step-000000300");
  EXPECT_EQ(fs::path(all[1]).filename(), "step-000000400");
  EXPECT_TRUE(train::list_checkpoints((dir / "nowhere").string()).empty());
  fs::remove_all(dir);
}

// A committed checkpoint at step 1 must be what latest_checkpoint() returns and loads after any
// interrupted save of step 2, and the next save must still work.
void expect_previous_survives(const fs::path& dir, const ParamStore& committed, int64_t interrupted_step) {
  const std::string latest = train::latest_checkpoint(dir.string());
  const bool new_one = fs::path(latest).filename() == "step-00000000" + std::to_string(interrupted_step);
  ASSERT_FALSE(latest.empty());
  ParamStore check;
  declare(check, true);
  CheckpointState got = train::load_checkpoint(latest, check);  // loads whole, whichever it is
  if (!new_one) {
    EXPECT_EQ(got.step, 1);
    EXPECT_TRUE(same_bits(check.params(), const_cast<ParamStore&>(committed).params()));
  }
  ParamStore again;
  declare(again, true);
  fill(again, 5);
  CheckpointState st;
  st.step = 9;
  EXPECT_NO_THROW(train::save_checkpoint(dir.string(), again, st));
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "a partial save was left: " << e.path();
  fs::remove_all(dir / "step-000000009");
}

TEST(Checkpoint, PreviousSurvivesKillMinus9MidSave) {
  const fs::path dir = temp_dir("kill");
  ParamStore a;
  declare(a, true);  // ~8.5 MB of parameters + 2x optimizer state
  fill(a, 3);
  CheckpointState st;
  st.step = 1;
  train::save_checkpoint(dir.string(), a, st);
  int killed = 0, torn = 0;
  for (int trial = 0; trial < 8; ++trial) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ParamStore b;
      declare(b, true);
      fill(b, 4);
      CheckpointState s2;
      s2.step = 2;
      const char go = 1;
      if (::write(ready[1], &go, 1) != 1) ::_exit(3);  // the save starts now
      train::save_checkpoint(dir.string(), b, s2);
      ::_exit(0);
    }
    ::close(ready[1]);
    char go = 0;
    ASSERT_EQ(::read(ready[0], &go, 1), 1);
    ::close(ready[0]);
    // Kill at a different moment of the save each trial (it takes tens of ms with its fsyncs).
    std::this_thread::sleep_for(std::chrono::microseconds(200 + 1200 * trial));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) ++killed;
    if (fs::exists(dir / ".step-000000002.tmp")) ++torn;  // killed with a partial save on disk
    expect_previous_survives(dir, a, 2);
    fs::remove_all(dir / "step-000000002");  // a save that did commit is taken back for the next trial
  }
  std::printf("%d of 8 saves killed, %d of them with a partial save on disk\n", killed, torn);
  EXPECT_GT(killed, 0) << "no trial killed the child before its save finished";
  fs::remove_all(dir);
}

TEST(Checkpoint, PreviousSurvivesAFullDisk) {
  const fs::path dir = temp_dir("full");
  ParamStore a;
  declare(a, true);
  fill(a, 6);
  CheckpointState st;
  st.step = 1;
  train::save_checkpoint(dir.string(), a, st);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Files may grow to 1 MiB only: the OS refuses the rest of the write (EFBIG), as a full disk would.
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{1 << 20, 1 << 20};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    ParamStore b;
    declare(b, true);
    fill(b, 7);
    CheckpointState s2;
    s2.step = 2;
    try {
      train::save_checkpoint(dir.string(), b, s2);
    } catch (const Error& e) {
      ::_exit(e.code() == ErrorCode::kIo ? 0 : 2);
    }
    ::_exit(1);  // the save claimed success
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the save did not fail; 2: it failed with another error code";
  EXPECT_FALSE(fs::exists(dir / "step-000000002"));
  expect_previous_survives(dir, a, 2);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace llmkit
