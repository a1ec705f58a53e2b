# Two entry points, both self-bootstrapping and idempotent on a fresh Debian machine:
#   make demo   run the main job on the built-in data
#   make test   run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the project needs (installed via apt-get only when missing).
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont festival festvox-kallpc16k espeak-ng wesnoth-1.16-music hedgewars-data ktuberling-data g++ chromium
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test install system-deps bench clean

# The main job: `svdx run` on the built-in demo corpus with the shipped detector and generator
# (saved_models/runs/): build the corpus (~2.5 min), prepare it, explain the detector over the
# demo grid, export the SavedModels, write the HTML report; then label one test track. Every
# stage skips finished work. `svdx run --config=configs/demo.toml --from_scratch` retrains both.
DEMO_TEST_TRACK = work/demo_corpus/audio/$$(head -n 1 work/demo_corpus/filelists/test)
demo: install
	$(BIN)/svdx run --config=configs/demo.toml
	$(BIN)/svdx predict --detector=saved_models/runs/detector --out=work/demo/predictions --plot \
	  $(DEMO_TEST_TRACK)
	@echo "report:      work/demo/report/index.html"
	@echo "tensorboard: $(BIN)/tensorboard --logdir work/demo --host 127.0.0.1"
	@echo "exports:     saved_models/ (models.config for TF-Serving)"

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python tools/bench_pipeline.py
	$(BIN)/python tools/bench_detector.py
	$(BIN)/python tools/bench_explain.py

install: system-deps $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' 2>&1 \
	  | { grep -v "^WARNING: Location '.*' is ignored" || true; }
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

clean:
	rm -rf work .pytest_cache
