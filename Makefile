# attncomp — `make demo` and `make test` work from a fresh clone.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# torch 2.14.1 / torchvision 0.29.1 are the releases this project is tested with.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test fuzz bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p out
	$(VENV)/bin/attncomp-codec encode examples/kodim23.png out/kodim23.atc --quality 3 --force
	$(VENV)/bin/attncomp-codec decode out/kodim23.atc out/kodim23.png --force
	$(PY) examples/report.py examples/kodim23.png out/kodim23.atc out/kodim23.png

test: install
	$(PY) -m pytest

# the decoder's property tests with 20,000 examples each (make test runs 100); then see fuzz/atheris_decode.py
fuzz: install
	$(PY) -m pytest tests/test_robustness.py -k "random_bytes or random_headers or truncation or bit_flip or hostile" --hypothesis-profile fuzz

bench: install
	$(PY) benchmarks/train_throughput.py --config configs/lite.yaml
	$(PY) benchmarks/codec_speed.py
	$(PY) benchmarks/rate_overhead.py

clean:
	rm -rf out .pytest_cache
