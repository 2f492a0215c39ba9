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

.PHONY: demo test test-fast lint bench clean system-packages

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

# Debian packages the real-component tests start (scripts/system-packages.txt).
system-packages:
	bash scripts/install-system-packages.sh

test: lint system-packages
	$(BIN)/pytest -q

test-fast: $(VENV)
	$(BIN)/pytest -q -m "not slow"

# The demo line: synthetic camera, ViT-B-16 with random weights, HDF5 audit log in out/demo-logs.
# With a display the operator GUI opens; without one, the terminal dashboard.
# Headless: the station on the demo line with its live dashboard, then the PLC side: the real station
# (`inspector run --trigger plc`) on one end of a virtual serial pair, the PLC simulator on the other,
# checking every reply over ASCII and Modbus RTU (docs/plant.md).
DEMO_RUN := $(BIN)/inspector run --config station_configs/demo.yaml --headless --frames 60 --log-dir out/demo-logs \
	&& $(BIN)/inspector log summary out/demo-logs \
	&& $(BIN)/inspector plc-sim --station station_configs/demo.yaml --station-log-dir out/demo-logs \
		--protocol ascii --parts 20 --rate 1 \
	&& $(BIN)/inspector plc-sim --station station_configs/demo.yaml --station-log-dir out/demo-logs \
		--protocol modbus --parts 20
# The GUI needs the real display, not the offscreen platform exported above for tests.
DEMO_GUI := env -u QT_QPA_PLATFORM $(BIN)/inspector gui --config station_configs/demo.yaml --log-dir out/demo-logs
demo: $(VENV)
ifeq ($(DISPLAY),)
	$(DEMO_RUN)
else
	$(DEMO_GUI)
endif

bench: $(VENV)
	$(BIN)/inspector bench --model ViT-B-16 --pretrained random --image-size 224 --shots 4 --device cpu --frames 30

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
