#!/usr/bin/env bash
# Pretrains a ~12M-parameter LLaMA-style model from scratch on the King James Bible as Debian's
# bible-kjv-text package ships it (public domain), with the SmolLM2 tokenizer, then samples from it.
#
#   tools/pretrain_kjv.sh [RUN_DIR] [STEPS]        (defaults: runs/kjv-12m, 1500)
#
# Steps: dump the text with `bible` (package bible-kjv), one document per chapter without verse
# numbers; random weights for data/pretrain/llama-12m.json (llmkit convert --random-init, seed 1);
# llmkit data prepare (5% of chapters for validation); llmkit train; llmkit run on a prompt.
# The loss curve is RUN_DIR/run/loss.svg (metrics in RUN_DIR/run/metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/kjv-12m}
STEPS=${2:-1500}
LLMKIT=${LLMKIT:-build/bin/llmkit}
if ! command -v bible >/dev/null; then
  echo "installing the KJV text (Debian packages bible-kjv, bible-kjv-text)" >&2
  apt-get install -y -q bible-kjv bible-kjv-text >/dev/null
fi
mkdir -p "$RUN"
# Chapters as documents: the "Book N" heading line starts one; verse numbers are dropped.
bible -l1000 "Ge1:1-Re22:21" | awk '
  /^[0-9]* ?[A-Z][a-z]+( of [A-Z][a-z]+)? [0-9]+$/ { if (n) print ""; n = 1; next }
  /^ *[0-9]+ / { sub(/^ *[0-9]+ /, ""); print; next }' > "$RUN/kjv.txt"
echo "corpus: $(wc -c < "$RUN/kjv.txt") bytes, $(grep -c '^$' "$RUN/kjv.txt") chapter breaks" >&2
rm -rf "$RUN/init.gguf" "$RUN/init"
"$LLMKIT" convert data/pretrain/llama-12m.json "$RUN/init.gguf" --random-init --seed 1 >/dev/null
"$LLMKIT" convert "$RUN/init.gguf" "$RUN/init" --type f32 >/dev/null
cp testdata/tokenizer/smollm2.tokenizer.json "$RUN/init/tokenizer.json"
cat > "$RUN/init/tokenizer_config.json" <<'JSON'
{"bos_token": null, "eos_token": "<|endoftext|>", "add_bos_token": false, "tokenizer_class": "GPT2Tokenizer"}
JSON
"$LLMKIT" data prepare -m "$RUN/init" -i "$RUN/kjv.txt" -o "$RUN/data" --val-fraction 0.05 --seed 1
"$LLMKIT" train --model "$RUN/init" --data "$RUN/data" --out "$RUN/run" --steps "$STEPS" --batch 8 --seq-len 256 \
  --lr 3e-3 --warmup 100 --min-lr-ratio 0.1 --weight-decay 0.1 --eval-every 100 --eval-batches 8 --save-every 250
"$LLMKIT" run -m "$RUN/run/export/model.gguf" -p "And God said" -n 60 --temp 0.7 --seed 1
