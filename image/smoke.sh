#!/bin/sh
# Inside a built image (`make image-smoke`): the `spec` of the Helm values on stdin
# (the chart's default spec) validates, deploys on an embedded Ray cluster through
# vLLM, and answers one greedy generation from its first model; then it drains and
# stops. The prompt is the trained tiers' task (docs/models.md): the answer is 4 8 2 1.
set -eu
work=$(mktemp -d)
python3 -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"], sys.stdout)' > "$work/spec.yaml"
shardline validate "$work/spec.yaml"
model=$(python3 -c 'import sys; from shardline.spec import load_spec; print(load_spec(sys.argv[1]).models[0].name)' "$work/spec.yaml")

shardline up "$work/spec.yaml" > "$work/up.log" 2>&1 &
up=$!
# `up` prints SERVING once every replica is healthy, or exits on failure.
until grep -q SERVING "$work/up.log"; do
    if ! kill -0 "$up" 2>/dev/null; then cat "$work/up.log"; exit 1; fi
    sleep 2
done
grep SERVING "$work/up.log"
shardline generate --model "$model" --max-tokens 8 --temperature 0 --timeout 120 \
    "The code of amber is 4 8 2 1 . boats sail out at dawn . The code of teal is 5 5 3 0 . Question : what is the code of amber ? Answer :"
kill -TERM "$up"
wait "$up"
tail -n 2 "$work/up.log"
