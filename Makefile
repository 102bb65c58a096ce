# Two commands do everything on a fresh machine with Python 3.11:
#   make test   create .venv if missing, install meena_jax[test,tpu], run the test suite
#   make demo   same install, then the main job on the embedded default
PYTHON3 ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo browser

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,tpu]'
	# TensorFlow (tf.data, TFDS, SeqIO) as its CPU build, as on TPU VMs: the default wheel's CUDA
	# stubs print cuInit errors on every command. tensorflow-text declares `tensorflow`, so the
	# build is swapped after the install (pip's resolver then notes that requirement as unmet).
	$(PY) -m pip uninstall --quiet -y tensorflow
	$(PY) -m pip install --quiet --no-deps --force-reinstall tensorflow-cpu==2.21.0
	touch $(STAMP)

# The SSA app's browser test drives Debian's Chromium; install it where we can (root + apt),
# otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    timeout 300 apt-get update -qq >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium \
	      chromium-driver >/dev/null 2>&1; } || \
	  echo "No Chromium here: the SSA browser test will skip."

test: $(STAMP) browser
	$(PY) -m pytest -n 2 --dist loadgroup tests

# The demo: train the tiny ET on chitchat for DEMO_STEPS (~10 minutes on 2 cores), evaluate
# validation perplexity next to the unigram model's, draw the curves, and answer a few prompts
# with sample-and-rank and beam search. It resumes from its last checkpoint: `rm -rf runs/demo`
# to start over.
DEMO_DIR ?= runs/demo
DEMO_STEPS ?= 300
DEMO_RUN := --gin_file=gin/runs/et_tiny_chitchat.gin

demo: $(STAMP)
	$(PY) -m meena_jax summary --gin_file=gin/models/meena_et_2.6b.gin
	$(PY) -m meena_jax train $(DEMO_RUN) --gin.MODEL_DIR=$(DEMO_DIR) \
	    --gin.TRAIN_STEPS=$(DEMO_STEPS) --gin.EVAL_EVERY=0
	$(PY) -m meena_jax eval $(DEMO_RUN) --gin.CHECKPOINT=$(DEMO_DIR) --unigram
	$(PY) -m meena_jax curves $(DEMO_DIR)
	$(PY) -m meena_jax chat $(DEMO_RUN) --gin_file=gin/decoding/chat.gin \
	    --gin.CHECKPOINT=$(DEMO_DIR) --prompt "Hi!" --prompt "What do you do for fun?" \
	    --prompt "I just got back from a trip to Japan."
