# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on
# first use. torch is pinned to the CPU build through constraints.txt (an unpinned torch
# drags several GB of CUDA packages); tf-keras / legacy Keras are never installed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: env browser demo test test-all bench clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# These declare torchvision (no CPU wheel for the pinned torch); crosslens imports them
	# with a scoped stub where torchvision is missing (crosslens/translate/_torchvision.py).
	$(PIP) install -q -c constraints.txt --no-deps onnx2torch==1.5.15 zennit==0.5.1
	$(PY) -m crosslens.install_check
	touch $(STAMP)

# Debian's Chromium for the browser tests (inspection page, training visual log), installed
# when running as root (CI); elsewhere the browser tests are skipped and say how to install it.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  { apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } || \
	  echo "chromium is not installed: the browser tests will be skipped (apt-get install -y chromium)"

demo: $(STAMP)
	$(PY) -m crosslens demo --out out/demo

# The fast suite, then the translation of real architectures (Keras MobileNetV2 and
# ResNet50, the pretrained EfficientNet-Lite0), whose reports are printed. `make test-all`
# adds the VGG16 peak-memory check.
test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow"
	CROSSLENS_RUN_SLOW=1 $(PY) -m pytest -q -s tests/translate/test_translate_real.py -k "not vgg16"

test-all: $(STAMP)
	CROSSLENS_RUN_SLOW=1 $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out build src/*.egg-info
