#!/usr/bin/env bash
# Enqueues one job of each type on a running service (./run.sh) and prints each
# result. Uses config/genq.example.toml unless GENQ_CONFIG says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export GENQ_CONFIG=${GENQ_CONFIG:-config/genq.example.toml}
cargo build -q --release --bin genq
genq=target/release/genq
photo=$(mktemp --suffix=.png)
trap 'rm -f "$photo"' EXIT
# a 256x192 test photo made by ffmpeg
ffmpeg -loglevel error -y -f lavfi -i testsrc=size=256x192 -frames:v 1 "$photo"
key=$("$genq" put-artifact "$photo" | sed -n 's/.*"key": "\(.*\)".*/\1/p')

run() {
  echo "== $1"
  "$genq" push "$1" "$2" --wait | sed -n '/"status"/p;/"result"/,/^  }/p;/"error":/p'
}
run generate_reply '{"persona_prompt":"You are Anna, a barista.","messages":[{"role":"user","content":"A flat white, please"}]}'
run generate_image_prompt '{"persona_look":"red scarf","messages":[{"role":"user","content":"we walk along the pier"}]}'
run generate_image '{"prompt":"a lighthouse at dusk","width":768,"height":512}'
run face_swap "{\"source\":\"$key\",\"target\":\"$key\"}"
run upscale "{\"image\":\"$key\",\"factor\":2}"
run generate_video '{"prompt":"waves on a beach","template":"ugc","seconds":5}'
run cleanup '{"max_age_hours":24}'
