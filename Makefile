# Two commands set everything up on a fresh station PC or CI box:
#   make demo   -- runs the station on the embedded demo line
#   make test   -- lint, architecture contract and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# No test, demo or benchmark may touch the network.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export QT_QPA_PLATFORM ?= offscreen

.PHONY: demo test test-fast lint bench clean

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch/torchvision come from the station image's local wheel store, never a CUDA download.
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[dev]'
	touch $(VENV)

lint: $(VENV)
	$(BIN)/ruff check inspector gui tests benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

test-fast: $(VENV)
	$(BIN)/pytest -q -m "not slow"

demo: $(VENV)
	$(BIN)/inspector predict fewshot_data/demo/test/*.png --config station_configs/demo.yaml --out out/demo

bench: $(VENV)
	$(BIN)/inspector bench --model ViT-B-16 --pretrained random --image-size 224 --shots 4 --device cpu --frames 30

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
