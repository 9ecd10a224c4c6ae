# Two commands do all the set-up on a fresh machine:
#   make demo   installs valle2 and synthesizes new text with the zero-shot demo model shipped in the
#               package and the attested demo voice, watermarked, then checks the watermark
#   make test   installs valle2 with its test extras, Debian's chromium, espeak-ng, flite, festival and ffmpeg (the web,
#               synthetic-speech and channel tests use them) and runs the test suite (which
#               checks the layer contracts too: import-linter, tests/test_layers.py)
PYTHON ?= python3
PIP = $(PYTHON) -m pip
STAMP = .install.stamp

$(STAMP): pyproject.toml
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PYTHON) -m valle2 demo --out demo_out/demo.wav
	$(PYTHON) -m valle2 detect demo_out/demo.wav; rc=$$?; \
	if [ $$rc -ne 1 ]; then echo "valle2 detect did not find demo_out/demo.wav synthesized (exit $$rc, expected 1)" >&2; exit 1; fi

test: install
	bash scripts/install_browser.sh
	bash scripts/install_synthetic_voices.sh
	bash scripts/install_audio_tools.sh
	$(PYTHON) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

.PHONY: install demo test
