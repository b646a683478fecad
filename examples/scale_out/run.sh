#!/usr/bin/env bash
# Scale-out on one machine, on loopback: two vLLM replicas serving the rank1 demo model,
# vLLM's router (vllm-router) in front of them, rank1-server as a gateway (--upstream) in
# front of the router, and a LangChain ContextualCompressionRetriever whose CohereRerank
# points at the gateway (pipeline.py). Prints the ranking, the requests each replica
# served (its /metrics) and the wall time; then stops everything it started.
#
#   bash scripts/install_vllm.sh          # once: vLLM's CPU build in .venv-vllm
#   bash examples/scale_out/run.sh
#
# Environment: RANK1_VLLM_PYTHON (a Python with vLLM; default .venv-vllm/bin/python),
# VLLM_ROUTER (the vllm-router command, `pip install vllm-router==0.1.17`; default: the
# one beside $PYTHON, else on PATH), PYTHON (with rank1-server and langchain-cohere;
# default .venv/bin/python), MODEL (a Hugging Face model directory; default: the demo model, built by
# scripts/build_hf_demo_model.py), MAX_MODEL_LEN (default 512), QUERIES (default 6).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
VLLM_PYTHON=${RANK1_VLLM_PYTHON:-.venv-vllm/bin/python}
if [[ ! -x $VLLM_PYTHON ]]; then
  echo "no vLLM Python at $VLLM_PYTHON: run scripts/install_vllm.sh or set RANK1_VLLM_PYTHON" >&2
  exit 1
fi
# vllm-router: beside $PYTHON (the test extra installs it), else on PATH
VLLM_ROUTER=${VLLM_ROUTER:-$(command -v "$(dirname "$PYTHON")/vllm-router" || echo vllm-router)}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-512}
QUERIES=${QUERIES:-6}
MODEL=${MODEL:-$("$PYTHON" scripts/build_hf_demo_model.py | tail -n 1)}
NAME=rank1-demo
LOGS=$(mktemp -d -t rank1-scale-out.XXXXXX)

pids=()
cleanup() {
  # each service was started in its own session (setsid): stop its whole process group
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  echo "stopped everything; logs in $LOGS"
}
trap cleanup EXIT

port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {  # start NAME COMMAND...: in its own session, output to $LOGS/NAME.log
  local name=$1; shift
  echo "+ $*" | tee "$LOGS/$name.cmd"
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  pids+=("$!")
}

wait_for() {  # wait_for NAME URL SECONDS
  local name=$1 url=$2 limit=$3 start=$SECONDS
  until curl -sf -o /dev/null "$url"; do
    if (( SECONDS - start > limit )); then
      echo "$name did not answer $url within ${limit}s; its log:" >&2
      tail -n 30 "$LOGS/$name.log" >&2
      exit 1
    fi
    sleep 1
  done
  echo "$name ready at $url after $(( SECONDS - start ))s"
}

A=$(port); B=$(port); ROUTER=$(port); GATEWAY=$(port); SINGLE=$(port)
T0=$SECONDS
# Two replicas, each pinned to one core (on a GPU machine: one GPU each).
for replica in "a $A 0" "b $B 1"; do
  set -- $replica
  start "vllm-$1" env VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND="$3" \
    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=passive \
    "$VLLM_PYTHON" -m vllm.entrypoints.openai.api_server --host 127.0.0.1 --port "$2" \
    --model "$MODEL" --served-model-name "$NAME" --max-model-len "$MAX_MODEL_LEN" \
    --dtype float32
done
wait_for vllm-a "http://127.0.0.1:$A/v1/models" 900
wait_for vllm-b "http://127.0.0.1:$B/v1/models" 900
start router "$VLLM_ROUTER" --host 127.0.0.1 --port "$ROUTER" --policy round_robin \
  --worker-urls "http://127.0.0.1:$A" "http://127.0.0.1:$B" --prometheus-port "$(port)"
wait_for router "http://127.0.0.1:$ROUTER/v1/models" 120
start gateway "$(dirname "$PYTHON")/rank1-server" --upstream "http://127.0.0.1:$ROUTER/v1" \
  --upstream-model "$NAME" --host 127.0.0.1 --port "$GATEWAY" --max-reasoning-tokens 64 \
  --parallel 8
wait_for gateway "http://127.0.0.1:$GATEWAY/health" 120
# for comparison: a second gateway in front of replica a alone
start single "$(dirname "$PYTHON")/rank1-server" --upstream "http://127.0.0.1:$A/v1" \
  --upstream-model "$NAME" --host 127.0.0.1 --port "$SINGLE" --max-reasoning-tokens 64 \
  --parallel 8
wait_for single "http://127.0.0.1:$SINGLE/health" 120
echo "all up after $(( SECONDS - T0 ))s"

"$PYTHON" examples/scale_out/pipeline.py --gateway "http://127.0.0.1:$GATEWAY" \
  --model "$NAME" --queries "$QUERIES" --single "http://127.0.0.1:$SINGLE" \
  --replica "a=http://127.0.0.1:$A" --replica "b=http://127.0.0.1:$B"
